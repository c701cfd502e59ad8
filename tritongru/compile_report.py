"""Compile every kernel variant the dispatcher can choose for sm_90 (H100/H200), without a GPU.

For a grid of shapes, the dispatcher's configuration of the forward (inference and training) and
the backward is compiled ahead of time for the sm_90 target; ``cuobjdump`` (shipped in Triton's
wheel) reads registers, stack (spills) and shared memory from the cubin. The report fails (exit 1)
on a spill in a variant whose weights are meant to stay on chip, on shared memory over the
per-block limit, or on a barrier grid that cannot be co-resident on the H200's 132 SMs.

    python -m tritongru compile-report --arch 90
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton

from .dispatch import H200_SMS, Problem, heuristic_config
from .kernels import gru_bwd_persistent_kernel, gru_fwd_persistent_kernel
from .kernels.launch import EXCHANGES, SM90_LIMITS, PersistentConfig, launch_constexprs, programs_per_sm

HIDDEN = (64, 128, 256, 512, 768, 1024, 1536, 2048)
BATCH = (1, 16, 64, 256)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
SUBSET = dict(hidden=(64, 256, 1024), batch=(16,), dtypes=(torch.bfloat16,))

_TRITON_TYPE = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
_BY_NAME = {name: dtype for dtype, name in _TRITON_TYPE.items()}


@dataclasses.dataclass
class Row:
    kernel: str
    dtype: str
    hidden: int
    batch: int
    config: PersistentConfig
    regs: int
    spill_bytes: int
    shared: int
    per_sm: int
    grid: int
    resident: bool
    barrier: bool

    @property
    def problems(self) -> list[str]:
        found = []
        if self.resident and self.spill_bytes:
            found.append(f"spills {self.spill_bytes} B with resident weights")
        if self.shared > SM90_LIMITS["shared_per_block"]:
            found.append(f"shared memory {self.shared} B > {SM90_LIMITS['shared_per_block']} B")
        if self.barrier and self.grid > H200_SMS * self.per_sm:
            found.append(f"barrier grid {self.grid} > {H200_SMS} SMs x {self.per_sm} per SM")
        return found


def _signature(kernel, dtype: torch.dtype, constexprs: dict) -> dict:
    element = _TRITON_TYPE[dtype]
    accumulator = "fp64" if dtype == torch.float64 else "fp32"
    signature = {}
    for param in kernel.params:
        name = param.name
        if param.is_constexpr:
            signature[name] = "constexpr"
        elif name in ("p_len", "p_sync"):
            signature[name] = "*i32"
        elif name == "p_xbuf":
            # Tagged words with ready flags; otherwise the launcher passes the sync word.
            signature[name] = "*i64" if constexprs["FLAGS"] and dtype.itemsize == 4 else "*i32"
        elif name in ("p_state", "p_dstate"):
            signature[name] = f"*{accumulator}"
        elif name.startswith("p_"):
            signature[name] = f"*{element}"
        else:
            signature[name] = "i32"
    return signature


def _cuobjdump() -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def compile_ahead(kernel, dtype: torch.dtype, constexprs: dict, config: PersistentConfig, arch: int):
    """One variant compiled for ``sm_<arch>`` without a GPU (its ``asm`` holds the PTX and cubin)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    source = ASTSource(kernel, _signature(kernel, dtype, constexprs), constexprs)
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=config.compile_options())


def compile_variant(kernel, dtype: torch.dtype, constexprs: dict, config: PersistentConfig, arch: int) -> tuple[int, int, int]:
    """``(registers, spill bytes, shared bytes)`` of one variant compiled for ``sm_<arch>``."""
    compiled = compile_ahead(kernel, dtype, constexprs, config, arch)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run(
            [_cuobjdump(), "--dump-resource-usage", cubin.name], capture_output=True, text=True, check=True
        ).stdout
    match = re.search(r"REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", usage)
    if match is None:
        raise RuntimeError(f"cuobjdump printed no resource usage for {kernel.fn.__name__}:\n{usage}")
    regs, stack, local = (int(g) for g in match.groups())
    return regs, stack + local, compiled.metadata.shared


def _launch_constants(
    config: PersistentConfig, hidden: int, batch: int, dtype: torch.dtype, backward: bool, training: bool
):
    """The kernel and the constexprs its launcher passes for ``config`` (lengths on, forward direction).

    fp32 products compile as 3xTF32: the default at run time (TF32 not allowed), and the heavier of
    the two precisions (it keeps two TF32 copies of the resident weights)."""
    constexprs = launch_constexprs(
        config, hidden, batch, dtype, backward=backward, reverse=False, use_lengths=True, precision="tf32x3"
    )
    if backward:
        return gru_bwd_persistent_kernel, constexprs
    return gru_fwd_persistent_kernel, dict(constexprs, SAVE_GATES=training)


def variants(hidden: int, batch: int, dtype: torch.dtype, exchange: str = "barrier"):
    """``(kernel, constexprs, config, synchronised)`` for each launch the dispatcher plans for a
    shape, its forwards' resident slices exchanging their state with ``exchange``."""
    for backward, training in ((False, False), (False, True), (True, True)):
        config = heuristic_config(Problem(hidden, batch, dtype, training), H200_SMS, backward, exchange)
        barrier = config.grid_synchronised(hidden)
        kernel, constexprs = _launch_constants(config, hidden, batch, dtype, backward, training)
        yield kernel, constexprs, config, barrier


# The order in which search_tiles tries (num_warps, block_k, max_registers): more warps share a
# step's work, longer chunks mean fewer dots per step, and the default register budget before 255.
TILE_CANDIDATES = (
    (8, 128, None), (8, 128, 255), (8, 64, None), (8, 64, 255), (4, 128, None), (4, 64, None), (8, 32, 255), (4, 32, None)
)


def search_tiles(hidden=HIDDEN, dtypes=(torch.float32, torch.bfloat16), arch: int = 90, out=sys.stdout) -> dict:
    """For each dtype, hidden size and kernel, the first ``(num_warps, block_k, max_registers)`` of
    :data:`TILE_CANDIDATES` that compiles without spills: the source of ``dispatch._TILES`` (run
    with ``--search-tiles``; slow)."""
    found = {}
    for dtype in dtypes:
        for H in hidden:
            for name, backward, training in (("fwd-inf", False, False), ("fwd", False, True), ("bwd", True, True)):
                base = heuristic_config(Problem(H, 16, dtype, training), H200_SMS, backward)
                choice = None
                for num_warps, block_k, max_registers in TILE_CANDIDATES:
                    config = dataclasses.replace(base, num_warps=num_warps, block_k=block_k, max_registers=max_registers)
                    kernel, constexprs = _launch_constants(config, H, 16, dtype, backward, training)
                    regs, spill, shared = compile_variant(kernel, dtype, constexprs, config, arch)
                    if choice is None or spill < choice[3]:
                        choice = (num_warps, block_k, max_registers, spill)
                    if spill == 0 and shared <= SM90_LIMITS["shared_per_block"]:
                        break
                found[(_TRITON_TYPE[dtype], H, name)] = choice
                print(f"{_TRITON_TYPE[dtype]:<5} {H:>5} {name:<8} warps={choice[0]} block_k={choice[1]} "
                      f"max_registers={choice[2]} spill={choice[3]}",
                      file=out, flush=True)
    return found


def report(hidden=HIDDEN, batch=BATCH, dtypes=DTYPES, arch: int = 90, exchange: str = "barrier", out=sys.stdout) -> list[Row]:
    """Compile every planned variant over the shape grid and print one table row per variant."""
    rows, seen = [], {}
    header = f"{'kernel':<13} {'dtype':<5} {'H':>5} {'B':>4} {'block b/h/k':>12} {'warps':>5} {'regs':>4} {'spill':>5} {'smem':>7} {'/SM':>3} {'grid':>4} {'resident':>8}  status"
    print(header, file=out)
    for dtype in dtypes:
        for H in hidden:
            for B in batch:
                for kernel, constexprs, config, barrier in variants(H, B, dtype, exchange):
                    key = (kernel.fn.__name__, dtype, tuple(sorted((k, str(v)) for k, v in constexprs.items())), config.num_warps)
                    if key not in seen:
                        seen[key] = compile_variant(kernel, dtype, constexprs, config, arch)
                    regs, spill, shared = seen[key]
                    per_sm = programs_per_sm(regs, shared, config.num_warps)
                    row = Row(
                        "fwd" if kernel is gru_fwd_persistent_kernel else "bwd", _TRITON_TYPE[dtype], H, B, config,
                        regs, spill, shared, per_sm, config.num_programs, config.resident, barrier,
                    )
                    if kernel is gru_fwd_persistent_kernel and not constexprs["SAVE_GATES"]:
                        row.kernel = "fwd-inf"
                    if constexprs.get("FLAGS"):
                        row.kernel += "+flags"
                    rows.append(row)
                    tiles = f"{config.block_b}/{config.block_h}/{config.block_k}"
                    status = "; ".join(row.problems) or "ok"
                    print(
                        f"{row.kernel:<13} {row.dtype:<5} {H:>5} {B:>4} {tiles:>12} {config.num_warps:>5} {regs:>4} "
                        f"{spill:>5} {shared:>7} {per_sm:>3} {row.grid:>4} {str(row.resident):>8}  {status}",
                        file=out, flush=True,
                    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritongru compile-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability to compile for (default 90: H100/H200)")
    parser.add_argument("--subset", action="store_true", help="a representative subset (what the test suite runs)")
    parser.add_argument("--hidden", type=int, nargs="+", help=f"hidden sizes (default {' '.join(map(str, HIDDEN))})")
    parser.add_argument("--dtype", choices=sorted(_BY_NAME), nargs="+", help="dtypes (default all three)")
    parser.add_argument("--exchange", choices=EXCHANGES, default="barrier",
                        help="how the forwards' resident slices exchange their state (default barrier, what the "
                             "dispatcher plans; flags: the ready-flag twins the tuner may choose)")
    parser.add_argument("--search-tiles", action="store_true",
                        help="search the spill-free (warps, block_k) of every kernel instead (slow; feeds dispatch._TILES)")
    args = parser.parse_args(argv)
    if args.arch != 90:
        parser.error(f"only --arch 90 is checked (the limits are sm_90's), got {args.arch}")
    shapes = dict(SUBSET) if args.subset else {}
    if args.hidden:
        shapes["hidden"] = tuple(args.hidden)
    if args.dtype:
        shapes["dtypes"] = tuple(_BY_NAME[name] for name in args.dtype)
    if args.search_tiles:
        shapes.pop("batch", None)
        search_tiles(arch=args.arch, **shapes)
        return 0
    rows = report(arch=args.arch, exchange=args.exchange, **shapes)
    failed = [row for row in rows if row.problems]
    print(f"\n{len(rows)} planned launches, {len(failed)} with problems", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
