"""The README's usage snippets run as written: the CPU one here, in a fresh process without the
interpreter (as a user's machine runs it); the GPU one where there is a GPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _snippet_after(marker: str) -> str:
    start = README.index(marker)
    match = re.compile(r"```python\n(.*?)```", re.S).search(README, start)
    assert match is not None, f"no python block after {marker!r}"
    return match.group(1)


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_cpu_usage_runs_as_written():
    result = _run(_snippet_after("On a CPU, the same module"))
    assert result.returncode == 0, result.stderr


def test_export_snippet_runs_after_the_cpu_one(tmp_path):
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript (make test installs it)")
    code = _snippet_after("On a CPU, the same module") + _snippet_after("### Export and deployment")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "gru.onnx").stat().st_size > 0


def test_gpu_usage_is_valid_python():
    compile(_snippet_after("On a GPU (compute capability"), "README", "exec")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_usage_runs_as_written():
    result = _run(_snippet_after("On a GPU (compute capability"))
    assert result.returncode == 0, result.stderr
