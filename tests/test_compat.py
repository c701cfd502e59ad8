"""Hardware the kernels cannot run on gets a clear message and PyTorch's GRU operator, never a crash
inside Triton."""

from __future__ import annotations

import json
import re
import subprocess
import sys

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


def test_fp32_dot_precision_follows_torch():
    # Set and restored by hand: the switch is a module __getattr__, which newer pytest's
    # monkeypatch, looking attributes up statically, deletes instead of restoring.
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    try:
        matmul.allow_tf32 = True
        assert _compat.fp32_dot_precision() == "tf32"
        matmul.allow_tf32 = False
        assert _compat.fp32_dot_precision() == "tf32x3"
    finally:
        matmul.allow_tf32 = saved


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


# As on a machine where Triton has no wheel (macOS, Windows): ``import triton`` fails.
_WITHOUT_TRITON = """
import json, sys
sys.modules["triton"] = None
import torch
import tritongru
from tritongru import PlanError, StallError, _compat

torch.manual_seed(0)
reference = torch.nn.GRU(8, 16, num_layers=2, batch_first=True).double()
model = tritongru.GRU(8, 16, num_layers=2, batch_first=True).double()
model.load_state_dict(reference.state_dict())
x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
h0 = torch.randn(2, 3, 16, dtype=torch.float64)
results = []
for gru in (reference, model):
    x.grad = None
    gru.zero_grad()
    out, h_n = gru(x, h0)
    (out.square().sum() + h_n.sum()).backward()
    results.append([out, h_n, x.grad, *(p.grad for p in gru.parameters())])
try:
    tritongru.gru(x, h0, list(model.parameters()), num_layers=2, bidirectional=False, batch_first=True, backend="triton")
    refusal = None
except RuntimeError as error:
    refusal = str(error)
print(json.dumps(dict(
    has_triton=_compat.HAS_TRITON,
    same=all(torch.equal(a, b) for a, b in zip(*results)),
    compared=len(results[1]),
    refusal=refusal,
    errors=[issubclass(PlanError, RuntimeError), issubclass(StallError, RuntimeError)],
    loaded=sorted(name for name, module in sys.modules.items() if module is not None and name.split(".")[0] == "triton"),
)))
"""


def test_without_triton_the_module_runs_pytorchs_operator_and_says_why_the_kernels_cannot():
    result = subprocess.run([sys.executable, "-c", _WITHOUT_TRITON], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["has_triton"] is False and found["loaded"] == [], found
    assert found["same"] and found["compared"] == 2 + 1 + 2 * 4, found  # out, h_n, dx, 4 tensors a layer
    assert found["refusal"] and "Triton is not installed" in found["refusal"], found
    assert found["errors"] == [True, True], found


def test_without_triton_the_command_line_says_what_it_needs():
    command = 'import runpy, sys; sys.modules["triton"] = None; sys.argv = ["tritongru", "info"]; runpy.run_module("tritongru", run_name="__main__")'
    result = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "need Triton, which is not installed here" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
