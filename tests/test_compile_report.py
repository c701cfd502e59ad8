"""The sm_90 compile report on a representative subset: every planned variant compiles for the
H200, keeps its resident weights without spills, fits shared memory and a co-resident grid."""

from __future__ import annotations

import os
import subprocess
import sys


from tritongru import compile_report
from tritongru.kernels.launch import programs_per_sm


def test_subset_is_clean():
    # The compiler needs the real @triton.jit kernels: run without the interpreter.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "tritongru", "compile-report", "--arch", "90", "--subset"],
                            env=env, capture_output=True, text=True, timeout=600)
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith(("fwd", "bwd"))]
    expected = 3 * len(compile_report.SUBSET["hidden"]) * len(compile_report.SUBSET["batch"])
    assert len(lines) == expected, result.stdout + result.stderr
    assert {line[0] for line in lines} == {"fwd", "fwd-inf", "bwd"}
    # Both work splits: whole weights in one program (H=64) and barrier slices (H=1024).
    grids = {int(line[2]): int(line[10]) for line in lines}
    assert grids[64] == 1 and grids[1024] > 1
    assert all(line[-1] == "ok" for line in lines), result.stdout
    assert result.returncode == 0 and "0 with problems" in result.stdout


def test_ready_flag_twins_compile_clean_where_registers_allow():
    """The forwards with ready flags hold a whole step's tagged words in registers: clean at H 256
    and 512 (bf16); from H=768 they spill a few bytes (perf/NOTES.md), which the tuner may accept
    on measured merit but the dispatcher never plans."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "tritongru", "compile-report", "--arch", "90", "--subset",
                             "--hidden", "256", "512", "--exchange", "flags"],
                            env=env, capture_output=True, text=True, timeout=600)
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith(("fwd", "bwd"))]
    assert {line[0] for line in lines} == {"fwd+flags", "fwd-inf+flags", "bwd"}, result.stdout + result.stderr
    assert all(line[-1] == "ok" for line in lines), result.stdout
    assert result.returncode == 0


# Compiles the forward's ready-flag twin at H=256 and prints what its PTX says about the wait.
_FLAGS_PTX = """
import dataclasses, re, torch
from tritongru.compile_report import H200_SMS, _launch_constants, compile_ahead
from tritongru.dispatch import Problem, heuristic_config
H, dtype = 256, torch.bfloat16
config = dataclasses.replace(heuristic_config(Problem(H, 16, dtype, False), H200_SMS), exchange="flags")
kernel, constexprs = _launch_constants(config, H, 16, dtype, False, False)
ptx = compile_ahead(kernel, dtype, constexprs, config, 90).asm["ptx"]
loop = ptx[ptx.index("%globaltimer"):]
print("polls_in_loop", loop.count("ld.volatile.global"))
print("arrivals", len(re.findall(r"atom[.a-z]*\\.add", ptx)))
"""


def test_ready_flag_wait_polls_inside_its_loop_and_never_arrives_at_a_barrier():
    """The poll's loads must stay in the loop (volatile: never hoisted, never served from L1), and a
    forward with ready flags must not contain the barrier's arrival atomics."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", _FLAGS_PTX], env=env, capture_output=True, text=True, timeout=600)
    found = dict(line.split() for line in result.stdout.splitlines())
    assert result.returncode == 0, result.stderr
    # H=256 in chunks of 128, a batch tile of 16: every thread's share of two (16, 128) chunks.
    assert int(found["polls_in_loop"]) >= 16 and int(found["arrivals"]) == 0, found


def test_problems_are_reported():
    row = compile_report.Row("fwd", "bf16", 2048, 16, None, 255, 64, 240_000, 0, 128, True, True)
    assert len(row.problems) == 3


def test_programs_per_sm():
    assert programs_per_sm(n_regs=128, shared=100_000, num_warps=8) == 2
    assert programs_per_sm(n_regs=255, shared=1024, num_warps=8) == 1
    assert programs_per_sm(n_regs=64, shared=300_000, num_warps=4) == 0
