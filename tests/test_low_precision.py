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

from tritongru.kernels import tiles
from tritongru.kernels.launch import PersistentConfig

from helpers import check_kernels_against_float64

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU interpreter; test_gpu.py covers a GPU")

# max |x - ref| / max |ref| against float64 on the same (rounded) parameters and inputs: a few
# roundings of the state per step at 8 (bf16) or 11 (fp16) bits of mantissa.
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 2e-3}

CONFIGS = {
    "whole": PersistentConfig(block_b=16, block_h=64, block_k=64, num_programs=1, num_warps=4, split_k=2, split_n=2),
    "sliced-streamed": PersistentConfig(block_b=16, block_h=16, block_k=32, num_programs=1, resident=False, num_warps=2,
                                        split_k=2),
}


@pytest.mark.parametrize("split", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=["bf16", "fp16"])
def test_low_precision_matches_float64(dtype, split):
    check_kernels_against_float64(1, 40 if split.startswith("sliced") else 36, 3, 4, dtype, TOLERANCE[dtype], seed=21,
                                  config=CONFIGS[split])


@pytest.fixture
def patient_waits(monkeypatch):
    """Interpreted programs sharing two cores take seconds per step: a GPU's 2 s wait is too short."""
    monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "120000")


@pytest.mark.parametrize("exchange", ["barrier", "flags"])
def test_bf16_synchronised_grid_matches_float64(exchange, patient_waits):
    """Three resident slices, one program each, meeting at the barrier or polling ready flags."""
    config = PersistentConfig(block_b=16, block_h=16, block_k=32, num_programs=3, num_warps=2, split_k=2,
                              exchange=exchange)
    check_kernels_against_float64(1, 40, 2, 4, torch.bfloat16, TOLERANCE[torch.bfloat16], seed=21, concurrent=True,
                                  config=config)


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
