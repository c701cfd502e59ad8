"""Hardware the kernels cannot run on gets a clear message and PyTorch's GRU operator, never a crash
inside Triton."""

from __future__ import annotations

import re

import pytest
import torch

from tritongru import _compat, functional


@pytest.fixture
def compiled_mode(monkeypatch):
    """_compat as it behaves outside the interpreter."""
    monkeypatch.setattr(_compat, "INTERPRET", False)


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda mp: mp.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5)), r"compute capability 8.0 or newer, .* has 7.5"),
        (lambda mp: mp.setattr(torch.version, "hip", "6.0"), "written and checked for NVIDIA GPUs"),
    ],
    ids=["pre-ampere", "rocm"],
)
def test_unsupported_gpu_is_explained_and_auto_falls_back(compiled_mode, monkeypatch, setup, match):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Old GPU")
    monkeypatch.setattr(torch.version, "hip", None)
    setup(monkeypatch)
    can_run, why = _compat.kernels_can_run(torch.device("cuda", 0))
    assert not can_run and re.search(match, why), why
    monkeypatch.setattr(functional, "_warned_fallback", set())
    with pytest.warns(RuntimeWarning, match="falls back to PyTorch's GRU operator"):
        assert functional.resolve_backend("auto", torch.device("cuda", 0)) == "torch"
    with pytest.raises(RuntimeError, match="backend='triton' cannot run here"):
        functional.resolve_backend("triton", torch.device("cuda", 0))


def test_non_cuda_device_is_refused_with_its_name(compiled_mode):
    can_run, why = _compat.kernels_can_run(torch.device("meta"))
    assert not can_run and "need a CUDA device" in why and "meta" in why


def test_interpreter_accepts_cpu_tensors_only():
    assert _compat.kernels_can_run(torch.device("cpu")) == (True, "")
    can_run, why = _compat.kernels_can_run(torch.device("cuda", 0))
    assert not can_run and "CPU tensors only" in why


def test_fp32_dot_precision_follows_torch(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    assert _compat.fp32_dot_precision() == "tf32"
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    assert _compat.fp32_dot_precision() == "tf32x3"


def test_environment_is_read_in_one_module_and_listed_in_the_readme():
    """Every variable tritongru reads is read by ``kernels/settings.py`` and documented in the
    README's table; no other module of the package, the kernels or the perf suite reads one."""
    from pathlib import Path

    from tritongru.kernels import settings

    root = Path(__file__).resolve().parents[1]
    reading = re.compile(r"os\.environ\.get|os\.getenv|os\.environ\[")
    readers = [path.relative_to(root).as_posix() for folder in ("tritongru", "kernels", "perf")
               for path in (root / folder).rglob("*.py") if reading.search(path.read_text(encoding="utf-8"))]
    assert readers == ["kernels/settings.py"]
    readme = (root / "README.md").read_text(encoding="utf-8")
    for name in settings.VARIABLES:
        assert f"| `{name}` |" in readme, name
