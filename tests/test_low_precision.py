"""bf16 and fp16 through the kernels on the CPU: forward and every gradient against float64, in
both work splits and with the programs of a synchronised grid in threads of their own.

Triton's interpreter computes a bf16 ``tl.dot`` wrongly; under the interpreter only, the kernels
widen bf16 dot operands to fp32 first (``kernels/tiles.py``), which makes every product exact and
the sums the GPU's up to their order. The compiled kernels keep their bf16 dots."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import tritongru
from tritongru.dispatch import force_config
from tritongru.kernels import PersistentConfig, tiles
from tritongru.reference import gru_reference

from concurrent_interpreter import concurrent_programs

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU interpreter; test_gpu.py covers a GPU")

# max |x - ref| / max |ref| against float64 on the same (rounded) parameters and inputs: a few
# roundings of the state per step at 8 (bf16) or 11 (fp16) bits of mantissa.
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 2e-3}

CONFIGS = {
    "whole": PersistentConfig(block_b=16, block_h=64, block_k=64, num_programs=1, num_warps=4, split_k=2, split_n=2),
    "sliced-streamed": PersistentConfig(block_b=16, block_h=16, block_k=32, num_programs=1, resident=False, num_warps=2,
                                        split_k=2),
}


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected).abs().max() / expected.abs().max()).item()


def _check(dtype, config, H, B, concurrent=False):
    torch.manual_seed(21)
    T, inputs = 4, 5
    gru = torch.nn.GRU(inputs, H, dtype=dtype)
    params = [p.detach().requires_grad_() for p in gru._flat_weights]
    x = torch.randn(T, B, inputs, dtype=dtype, requires_grad=True)
    h0 = torch.randn(1, B, H, dtype=dtype, requires_grad=True)
    with force_config(config), (concurrent_programs() if concurrent else _nothing()):
        y, h_n = tritongru.gru(x, h0, params, num_layers=1, bidirectional=False, backend="triton")
    exact = [t.detach().double().requires_grad_() for t in (x, h0, *params)]
    y_ref, h_ref = gru_reference(exact[0], exact[1], exact[2:], num_layers=1, bidirectional=False)
    # The same cotangents for both, drawn in float64.
    cotangents = [torch.randn(y_ref.shape, dtype=torch.float64), torch.randn(h_ref.shape, dtype=torch.float64)]
    with force_config(config), (concurrent_programs() if concurrent else _nothing()):
        ours = torch.autograd.grad([y, h_n], [x, h0, *params], [c.to(dtype) for c in cotangents])
    theirs = torch.autograd.grad([y_ref, h_ref], exact, cotangents)
    tolerance = TOLERANCE[dtype]
    assert _relative(y, y_ref) < tolerance and _relative(h_n, h_ref) < tolerance
    for name, a, b in zip(["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"], ours, theirs):
        assert a.dtype == dtype and _relative(a, b) < tolerance, f"d{name}: {_relative(a, b):.2e}"


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("split", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=["bf16", "fp16"])
def test_low_precision_matches_float64(dtype, split):
    _check(dtype, CONFIGS[split], H=40 if split.startswith("sliced") else 36, B=3)


@pytest.fixture
def patient_waits(monkeypatch):
    """Interpreted programs sharing two cores take seconds per step: a GPU's 2 s wait is too short."""
    monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "120000")


@pytest.mark.parametrize("exchange", ["barrier", "flags"])
def test_bf16_synchronised_grid_matches_float64(exchange, patient_waits):
    """Three resident slices, one program each, meeting at the barrier or polling ready flags."""
    config = PersistentConfig(block_b=16, block_h=16, block_k=32, num_programs=3, num_warps=2, split_k=2,
                              exchange=exchange)
    _check(torch.bfloat16, config, H=40, B=2, concurrent=True)


_COMPILED_DOTS = """
import re, torch
from tritongru import compile_report as report
from tritongru.kernels import tiles
config = report.planned_config("fwd-inf", 256, 16, torch.bfloat16)
ttgir = report.compile_launch(report.planned_launch("fwd-inf", config, 256, 16, torch.bfloat16)).ttgir
print(bool(tiles.WIDEN_BF16_DOTS), sorted(set(re.findall(r"tt\\.dot .*?: tensor<[0-9x]+x(\\w+),", ttgir))))
"""


def test_widening_is_the_interpreters_alone():
    assert tiles.WIDEN_BF16_DOTS, "this test process runs the kernels under the interpreter"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", _COMPILED_DOTS], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(None, 1) == ["False", "['bf16']\n"]
