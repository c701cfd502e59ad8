"""64-bit offsets where they can pass 2**31 elements, checked in the compiled kernels (sm_90 TTIR):
every address a kernel forms from a time-indexed tensor's base pointer (T x B x 3H can exceed
2**31) adds a 64-bit offset. The offsets within one step stay 32-bit, and the launcher refuses a
step larger than that."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tritongru.kernels.launch import PersistentConfig, check_step_size

TIME_INDEXED = {"fwd": ("p_gx", "p_y", "p_gates", "p_hbuf"), "bwd": ("p_dy", "p_hs", "p_gates", "p_dgx", "p_dgh")}

_SCRIPT = """
import dataclasses, sys, torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from tritongru import compile_report as report
kind = sys.argv[1]
config = report.planned_config(kind, 1024, 16, torch.bfloat16)
launch = report.planned_launch(kind, config, 1024, 16, torch.bfloat16)
# Per-row time indices: the general case.
launch = dataclasses.replace(launch, constexprs={**launch.constexprs, "REVERSE": True})
signature, constexprs, attrs = report.specialization(launch)
compiled = triton.compile(ASTSource(launch.kernel, signature, constexprs, attrs), target=GPUTarget("cuda", 90, 32),
                          options=config.compile_options())
print(compiled.asm["ttir"])
"""


@pytest.mark.parametrize("kernel", ["fwd", "bwd"])
def test_time_offsets_are_64_bit(kernel):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    ttir = subprocess.run([sys.executable, "-c", _SCRIPT, kernel], env=env, capture_output=True, text=True,
                          timeout=600, check=True).stdout
    for name in TIME_INDEXED[kernel]:
        # The base pointer itself, or its broadcast to a tile (tt.splat), is what an offset is added to.
        bases = {name} | set(re.findall(rf"%(\S+) = tt\.splat %{name} : !tt\.ptr", ttir))
        uses = [offset_type for base in bases
                for offset_type in re.findall(rf"= tt\.addptr %{base}, %\S+ : [^,]+, (\S+)", ttir)]
        assert uses, f"{name}: no address formed from it directly; the check lost track of the IR"
        assert all("i64" in offset_type for offset_type in uses), f"{name}: 32-bit offsets {uses}"


def test_step_larger_than_32_bit_offsets_is_refused():
    check_step_size(2**14, 2**14 // 3)
    with pytest.raises(ValueError, match=r"below 2\*\*31 elements per timestep, got 65536 x 1 x 3 x 16384"):
        check_step_size(65536, 16384)
    check_step_size(2**13, 2**14 // 3, directions=2)
    with pytest.raises(ValueError, match=r"got 32768 x 2 x 3 x 16384"):
        check_step_size(32768, 16384, directions=2)


def test_weights_past_32_bit_offsets_are_refused():
    config = PersistentConfig(block_b=16, block_h=256, block_k=64, num_programs=105, resident=False)
    config.validate(26752, 1)
    with pytest.raises(ValueError, match=r"fewer than 2\*\*31 elements .* got 3 x 26755 x 26755 = 2147490075"):
        config.validate(26755, 1)
