"""The sm_90 compile report on a representative subset, compiled as the JIT compiles at launch:
every planned variant compiles for the H200, keeps its resident weights without spills, fits
shared memory and a co-resident grid; the report's specialisation is the JIT's own."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from tritongru import compile_report
from tritongru.dispatch import H200
from tritongru.hardware import known_gpu
from tritongru.kernels.launch import PersistentConfig

# The compiler and the JIT's binder need the real @triton.jit kernels: run without the interpreter.
COMPILER_ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


def test_subset_is_clean():
    result = subprocess.run([sys.executable, "-m", "tritongru", "compile-report", "--gpu", "h200", "--subset"],
                            env=COMPILER_ENV, capture_output=True, text=True, timeout=900)
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith(("fwd", "bwd"))]
    subset = compile_report.SUBSET
    assert len(lines) == 3 * len(subset["hidden"]) * len(subset["batch"]), result.stdout + result.stderr
    assert {line[0].split("+")[0] for line in lines} == {"fwd", "fwd-inf", "bwd"}
    # Both work splits: whole weights in one program (H=64) and synchronised slices (H=1024).
    grids = {int(line[2]): int(line[10]) for line in lines}
    assert grids[64] == 1 and grids[1024] > 1
    assert all(line[-1] == "ok" for line in lines), result.stdout
    assert result.returncode == 0 and "0 with problems" in result.stdout


# One GPU of every other architecture the kernels support, on a small grid: the one slice size
# that stays resident on every GPU and one that streams where shared memory is 99 KiB.
@pytest.mark.parametrize("gpu", ["a100", "a10", "l4", "b200", "rtx5090"])
def test_every_architecture_compiles_plans_that_fit(gpu):
    result = subprocess.run([sys.executable, "-m", "tritongru", "compile-report", "--gpu", gpu, "--hidden", "256", "1024",
                             "--batch", "16", "--dtype", "bf16"], env=COMPILER_ENV, capture_output=True, text=True, timeout=900)
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith(("fwd", "bwd"))]
    assert len(lines) == 6 and result.returncode == 0 and "0 with problems" in result.stdout, result.stdout + result.stderr
    limits = known_gpu(gpu).limits
    assert all(int(line[8]) <= limits.shared_per_block for line in lines)
    resident = {(line[0].split("+")[0], int(line[2])): line[11] == "True" for line in lines}  # "fwd-inf+flags": the kernel
    assert resident[("fwd-inf", 1024)] is (limits.shared_per_block > 150 * 1024)


# Where the planned tiles spill resident weights on one architecture: compiled, the plan that runs
# there is another register setting of the same work split, and the report names what it refused.
SPILLING_PLANS = {
    "b200-fp32-h512-fwd": ["b200", "fwd", 512, 1, "float32"],
}
_FITTED = """
import dataclasses, json, sys, torch
from tritongru import compile_report as report
from tritongru.hardware import known_gpu
gpu, kind, H, B, dtype = json.loads(sys.argv[1])
dtype, arch = getattr(torch, dtype), known_gpu(gpu).limits.arch
planned = report.planned_config(kind, H, B, dtype, gpu)
launch, refused = report.fitted_launch(kind, H, B, dtype, gpu)
print(json.dumps(dict(
    planned=planned.label(), fitted=launch.config.label(), refused=list(refused), resident=launch.config.resident,
    planned_spills=report.compile_launch(report.planned_launch(kind, planned, H, B, dtype), arch).spill_bytes,
    fitted_spills=report.compile_launch(launch, arch).spill_bytes,
    same_split=dataclasses.replace(launch.config, max_registers=None) == dataclasses.replace(planned, max_registers=None),
)))
"""


@pytest.mark.parametrize("case", list(SPILLING_PLANS.values()), ids=list(SPILLING_PLANS))
def test_a_plan_that_spills_resident_weights_is_replaced_by_one_that_does_not(case):
    result = subprocess.run([sys.executable, "-c", _FITTED, json.dumps(case)], env=COMPILER_ENV, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["planned_spills"] > 0 and found["fitted_spills"] == 0 and found["resident"], found
    assert found["same_split"] and found["fitted"] != found["planned"], found
    assert found["refused"][0] == f"{found['planned']} spills {found['planned_spills']} B", found


# For one case, the report's specialisation of a launch built on CPU tensors, the JIT binder's for
# the same arguments, and what the report's says.
_SPECIALISE = """
import dataclasses, json, sys, torch
from triton.backends.compiler import GPUTarget
from triton.compiler.compiler import make_backend
from triton.runtime.jit import create_function_from_signature
from tritongru import compile_report as report


def jit_binding(launch):
    kernel = launch.kernel
    backend = make_backend(GPUTarget("cuda", 90, 32))
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    kwargs = dict(launch.constexprs, **launch.config.compile_options())
    bound, specialization, options = binder(*launch.args, **kwargs)
    _, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    # The JIT lists every argument it looked at, with no attribute where none applies.
    return signature, {kernel.arg_names[path[0]]: value for path, value in constexprs.items()}, {
        path: attr for path, attr in attrs.items() if attr
    }


kind, H, B, T, D, view = json.loads(sys.argv[1])
config = report.planned_config(kind, H, B, torch.bfloat16)
launch = report.planned_launch(kind, config, H, B, torch.bfloat16, seq_len=T, directions=D, device="cpu")
if view:
    # The reverse direction's weights as the functional layer passes them: a view into the stack.
    index = launch.kernel.arg_names.index("p_w")
    launch = dataclasses.replace(launch, args=launch.args[:index] + (launch.args[index][1:],) + launch.args[index + 1:])
ours, theirs = report.specialization(launch), jit_binding(launch)
names = launch.kernel.arg_names
print(json.dumps({
    "same": ours == theirs, "ours": repr(ours), "theirs": repr(theirs),
    "constants": {k: v for k, v in ours[1].items() if k in ("B", "T")},
    "divisible": sorted(names[path[0]] for path in ours[2]),
}))
"""

# (kind, H, B, T, directions, second direction's view): B = 1 and T = 1 turn into constants;
# 16-divisible sizes and 16-aligned pointers carry divisibility, the view of a second direction's
# weights at H = 33 does not; the timeout never does.
SPECIALISATION_CASES = {
    "fwd-B1": ("fwd-inf", 64, 1, 16, 1, False), "fwd-B16": ("fwd", 256, 16, 32, 1, False),
    "bwd-B16": ("bwd", 256, 16, 32, 1, False), "fwd-T1-odd": ("fwd", 33, 3, 1, 1, False),
    "bwd-odd": ("bwd", 40, 5, 7, 1, False), "fwd-second-direction-view": ("fwd-inf", 33, 2, 4, 2, True),
}


@pytest.mark.parametrize("case", list(SPECIALISATION_CASES), ids=list(SPECIALISATION_CASES))
def test_specialisation_is_what_the_jit_builds_at_launch(case):
    kind, H, B, T, D, view = SPECIALISATION_CASES[case]
    result = subprocess.run([sys.executable, "-c", _SPECIALISE, json.dumps([kind, H, B, T, D, view])],
                            env=COMPILER_ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["same"], f"report {found['ours']}\nJIT    {found['theirs']}"
    assert found["constants"] == {**({"B": 1} if B == 1 else {}), **({"T": 1} if T == 1 else {})}
    divisible = set(found["divisible"])
    assert "timeout_us" not in divisible and ("H" in divisible) == (H % 16 == 0)
    assert ("p_w" in divisible) == (not view)


# Compiles the forward's ready-flag twin at H=256 and prints what its PTX says about the wait.
_FLAGS_PTX = """
import re, torch
from tritongru import compile_report as report
H, dtype = 256, torch.bfloat16
config = report.planned_config("fwd-inf", H, 16, dtype, exchange="flags")
ptx = report.compile_launch(report.planned_launch("fwd-inf", config, H, 16, dtype)).ptx
loop = ptx[ptx.index("%globaltimer"):]
print("polls_in_loop", loop.count("ld.volatile.global"))
print("arrivals", len(re.findall(r"atom[.a-z]*\\\\.add", ptx)))
"""


def test_ready_flag_wait_polls_inside_its_loop_and_never_arrives_at_a_barrier():
    """The poll's loads must stay in the loop (volatile: never hoisted, never served from L1), and a
    forward with ready flags must not contain the barrier's arrival atomics."""
    result = subprocess.run([sys.executable, "-c", _FLAGS_PTX], env=COMPILER_ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    found = dict(line.split() for line in result.stdout.splitlines())
    # H=256, a batch tile of 16: each thread's share of the 16 x 256 tagged words, in its loads.
    assert int(found["polls_in_loop"]) >= 2 and int(found["arrivals"]) == 0, found


def test_problems_are_reported():
    row = compile_report.Row("fwd", "bf16", 2048, 16, None, 255, 64, 240_000, 0, 128, True, True, H200)
    assert len(row.problems) == 3
    # The same kernel fits an A10's smaller shared memory only when it is small enough.
    a10 = known_gpu("a10").limits
    fits = compile_report.Row("fwd", "bf16", 512, 16, None, 128, 0, 99 * 1024, 1, 32, True, True, a10)
    assert fits.problems == []
    assert "shared memory 102400 B > 101376 B" in dataclasses.replace(fits, shared=100 * 1024).problems[0]


def test_programs_per_sm():
    assert H200.programs_per_sm(n_regs=128, shared=100_000, num_warps=8) == 2
    assert H200.programs_per_sm(n_regs=255, shared=1024, num_warps=8) == 1
    assert H200.programs_per_sm(n_regs=64, shared=300_000, num_warps=4) == 0
    # sm_86 keeps 1536 threads and 16 blocks per SM: six 8-warp programs would need 1536 threads.
    a10 = known_gpu("a10").limits
    assert a10.programs_per_sm(n_regs=32, shared=1024, num_warps=8) == 6
    assert a10.programs_per_sm(n_regs=32, shared=1024, num_warps=1) == 16
    assert a10.co_resident(n_regs=255, shared=90_000, num_warps=4) == 72


def test_unsplit_product_is_still_a_valid_configuration():
    """Fewer parts than warps is allowed (the extra warps repeat work; the planner never picks it),
    a part thinner than the tensor cores' tile is not."""
    PersistentConfig(block_b=16, block_h=16, block_k=64, num_programs=4, num_warps=8).validate(64, 16)
    with pytest.raises(ValueError, match=r"block_k / split_k .* must be >= 16 \(tl.dot\), got 64 / 8"):
        PersistentConfig(block_b=16, block_h=16, block_k=64, num_programs=4, num_warps=8, split_k=8).validate(64, 16)


def test_a_stack_in_one_launch_compiles_for_other_architectures():
    """``--layers 2``, bf16 H=256, B=16: both weight matrices of both layers stay on chip on an A10
    (99 KiB a block) and on a B200, and each pass compiles as one co-resident, spill-free launch."""
    result = subprocess.run([sys.executable, "-m", "tritongru", "compile-report", "--gpu", "a10", "b200", "--layers", "2",
                             "--hidden", "256", "--batch", "16", "--dtype", "bf16"], env=COMPILER_ENV,
                            capture_output=True, text=True, timeout=900)
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith("stack-")]
    assert [line[0] for line in lines] == ["stack-fwd-inf", "stack-fwd", "stack-bwd"] * 2, result.stdout + result.stderr
    assert all(line[-1] == "ok" and line[11] == "True" for line in lines), result.stdout
    assert result.returncode == 0 and result.stdout.count("3 planned launches, 0 with problems") == 2
