"""The modelled cost of every planned launch, read from its compiled code: ``tritongru cost-report``.

For each launch the compile report covers (the same shapes and options, compiled as the JIT
compiles them), it counts one step of the time loop in the SASS, reads the dots' layouts from the
TTGIR, and prices the step with one GPU's figures (:mod:`tritongru.cost_model`). Then it models
whole calls: one layer at T = 1024 for each shape, and the KernelBench GRU tasks. **Every time it
prints is a model figure, not a measurement.** A CSV of the rows goes to
``perf/results/model-<gpu>/`` when ``--out`` names that folder.

    python -m tritongru cost-report --gpu h200 --hidden 1024 --batch 1 16 --dtype bf16
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import sys
from pathlib import Path

import torch
import triton

from . import compile_report, dispatch, tuned
from .compiled_step import count_step, dot_layouts, parse_sass
from .cost_model import CallShape, call_cost, critical_round_trips, stack_call_cost, step_cost
from .dispatch import (
    KINDS, PLAN_FORMAT, Problem, Tiles, batch_class, default_tiles, heuristic_config, longest_chunk, plan_entries,
    plan_key, same_launch, stack_key,
)
from .hardware import GPUS, known_gpu
from .hardware import gpu as gpu_named
from .kernels.launch import Launch
from .kernels.limits import DeviceLimits


def exchange_of(launch: Launch) -> str:
    """How a launch's programs hand a step's state on: ``flags``, ``barrier`` or ``none``."""
    if launch.constexprs.get("FLAGS"):
        return "flags"
    return "barrier" if launch.synchronised else "none"


@dataclasses.dataclass
class CostRow:
    """One planned launch: its resources, what one step executes, and what the model makes of it."""

    kernel: str
    dtype: str
    hidden: int
    batch: int
    config: str
    regs: int
    spill_bytes: int
    shared_bytes: int
    exchange: str
    shared_read_kib: float  # per SM and step
    shared_written_kib: float
    shared_by_instruction: str  # "LDSM.16.M88.4:128;STS.128:32": KiB per SM and step of each kind
    mma_per_subpartition: int
    mma_chain: int
    replication: int  # the most warps any dot computes one output element with
    co_resident: bool  # a synchronised grid fits the GPU at the compiled resources
    cta_barriers: int
    global_load_kib: float
    global_store_kib: float
    round_trips: float
    tiles: int
    shared_us: float
    issue_us: float
    tensor_us: float
    l2_us: float
    cta_barrier_us: float
    exchange_us: float
    step_us: float
    bound: str


def cost_row(kind: str, launch: Launch, gpu_name: str) -> CostRow:
    """Compile ``launch`` for ``gpu_name``'s architecture and model one step of it there."""
    gpu = gpu_named(gpu_name)
    compiled = compile_report.compile_launch(launch, gpu.arch)
    # Streamed weights come in a loop over NUM_K chunks inside each step.
    counts = count_step(parse_sass(compiled.sass), product_trips=1 if launch.config.resident else launch.constexprs["NUM_K"])
    warps = compiled.num_warps
    exchange = exchange_of(launch)
    config = launch.config
    B, H = launch.arg("B"), launch.arg("H")
    tiles = max(1, -(-config.num_h_tiles(H) * config.num_b_tiles(B) // config.num_programs))
    cost = step_cost(counts, warps, exchange, gpu, tiles, launch.programs)
    layouts = dot_layouts(compiled.ttgir)
    return CostRow(
        kind, compile_report._TRITON_TYPE[launch.arg("p_w").dtype], H, B,
        config.label(), compiled.regs, compiled.spill_bytes, compiled.shared, exchange,
        counts.shared_read_bytes * warps / 1024, counts.shared_written_bytes * warps / 1024,
        ";".join(f"{op}:{moved * warps / 1024:g}" for op, moved in sorted((counts.shared_read + counts.shared_written).items())),
        counts.mma_instructions * -(-warps // 4), counts.mma_chain, max((d.replication for d in layouts), default=1),
        not launch.synchronised or launch.programs <= known_gpu(gpu_name).limits.co_resident(compiled.regs, compiled.shared, warps),
        counts.cta_barriers, counts.global_load_bytes * warps / 1024, counts.global_store_bytes * warps / 1024,
        critical_round_trips(exchange), tiles, cost.shared, cost.issue, cost.tensor, cost.l2, cost.cta_barriers, cost.exchange,
        cost.step, cost.bound,
    )


# --------------------------------------------------------------------------------------------------
# Whole calls


@dataclasses.dataclass(frozen=True)
class CallRow:
    """A whole call modelled from its launches' steps."""

    name: str
    dtype: str
    mode: str  # inference or fwd_bwd
    shape: CallShape
    step_us: float  # forward step (+ backward step in fwd_bwd)
    recurrence_us: float
    input_gemm_us: float
    launch_us: float
    host_sync_us: float
    total_us: float
    baseline: str = ""  # a published figure to read it against


# KernelBench level 3, tasks 39-42: nn.GRU with input 128, hidden 256, 6 layers, batch 10, T=512,
# fp32, uni- and bidirectional; cuDNN's published eager times (KernelBench results/timing).
KERNELBENCH = CallShape(seq_len=512, batch=10, input_size=128, hidden=256, layers=6, element_bytes=4)
KERNELBENCH_BASELINE = "cuDNN nn.GRU eager, task 39: 21.7 ms (H100 PCIe), 39.1 ms (H100 SXM); in a CUDA graph about 4-5.5x less"


def call_rows(rows: list[CostRow], gpu_name: str, seq_len: int = 1024) -> list[CallRow]:
    """One layer at ``seq_len`` for every shape the rows cover (inference, and forward + backward
    where the rows have both passes), with launches and no host sync."""
    gpu = gpu_named(gpu_name)
    by_shape = {(row.dtype, row.hidden, row.batch, row.kernel.split("+")[0]): row for row in rows}
    calls = []
    for (dtype, hidden, batch, kind), row in by_shape.items():
        element = 4 if dtype == "fp32" else 2
        shape = CallShape(seq_len, batch, hidden, hidden, element_bytes=element)
        if kind == "fwd-inf":
            cost = call_cost(shape, row.step_us, gpu)
            calls.append(_call_row("one layer", dtype, "inference", shape, row.step_us, cost))
        backward = by_shape.get((dtype, hidden, batch, "bwd"))
        if kind == "fwd" and backward is not None:
            cost = call_cost(shape, row.step_us, gpu, backward_step_us=backward.step_us)
            calls.append(_call_row("one layer", dtype, "fwd_bwd", shape, row.step_us + backward.step_us, cost))
    return calls


def kernelbench_rows(gpu_name: str) -> list[CallRow]:
    """The KernelBench GRU tasks' forward calls (what KernelBench times), uni- and bidirectional."""
    rows = []
    for directions, tasks in ((1, "39/40"), (2, "41/42")):
        shape = dataclasses.replace(KERNELBENCH, directions=directions)
        step = _planned_step("fwd-inf", shape.hidden, shape.batch, torch.float32, gpu_name, directions)
        cost = call_cost(shape, step, gpu_named(gpu_name))
        rows.append(_call_row(f"KernelBench L3 {tasks}", "fp32", "inference", shape, step, cost, KERNELBENCH_BASELINE))
    stacked = stack_row("KernelBench L3 39/40, one launch", KERNELBENCH, torch.float32, gpu_name, KERNELBENCH_BASELINE)
    return rows + ([stacked] if stacked is not None else [])


def stack_rows(hidden: int, batch: int, dtype: torch.dtype, layers: int, seq_len: int, gpu_name: str) -> list[CallRow]:
    """A unidirectional stack's calls, inference and forward + backward, both ways: every layer in
    one launch (where its plan keeps the weights on chip at one program per SM) and one launch per
    layer."""
    shape = CallShape(seq_len, batch, hidden, hidden, layers=layers, element_bytes=4 if dtype == torch.float32 else 2)
    rows = []
    for mode in ("inference", "fwd_bwd"):
        stacked = stack_row("stack, all layers in one launch", shape, dtype, gpu_name, mode=mode)
        if stacked is not None:
            rows.append(stacked)
        rows.append(layer_by_layer_row(shape, dtype, gpu_name, mode))
    return rows


def layer_by_layer_row(shape: CallShape, dtype: torch.dtype, gpu_name: str, mode: str) -> CallRow:
    """The call of ``shape``'s stack one launch per layer and pass (``mode`` as :func:`stack_row`)."""
    forward = _planned_step("fwd-inf" if mode == "inference" else "fwd", shape.hidden, shape.batch, dtype, gpu_name, 1)
    backward = _planned_step("bwd", shape.hidden, shape.batch, dtype, gpu_name, 1) if mode == "fwd_bwd" else None
    return _call_row("stack, one launch per layer", compile_report._TRITON_TYPE[dtype], mode, shape,
                     forward + (backward or 0.0), call_cost(shape, forward, gpu_named(gpu_name), backward_step_us=backward))


def stack_row(name: str, shape: CallShape, dtype: torch.dtype, gpu_name: str, baseline: str = "",
              mode: str = "inference", slice_width: int | None = None, product: str | None = None) -> CallRow | None:
    """The call of ``shape``'s stack in one launch each way (``mode``: ``inference`` or
    ``fwd_bwd``; slices as wide as the plan table says, or ``slice_width``; the backward's
    ``W_hh`` by the table's ``product`` or this one), or None where no such launch runs: its
    weights do not stay on chip at one program per SM, or a compiled kernel does not fit."""
    limits = known_gpu(gpu_name).limits
    kinds = ("fwd-inf",) if mode == "inference" else ("fwd", "bwd")
    steps = []
    for kind in kinds:
        launch, _ = compile_report.fitted_stack_launch(kind, shape.hidden, shape.batch, dtype, shape.layers, gpu_name,
                                                       seq_len=shape.seq_len, slice_width=slice_width,
                                                       product=product if kind == "bwd" else None)
        if launch is None:
            return None
        row = cost_row(f"stack-{kind}", launch, gpu_name)
        if row.spill_bytes or row.shared_bytes > limits.shared_per_block or not row.co_resident:
            return None  # it runs, spilling: the model does not price local memory
        steps.append(row.step_us)
    cost = stack_call_cost(shape, steps[0], gpu_named(gpu_name), backward_step_us=steps[1] if len(steps) > 1 else None)
    return _call_row(name, compile_report._TRITON_TYPE[dtype], mode, shape, sum(steps), cost, baseline)


def _planned_step(kind: str, hidden: int, batch: int, dtype: torch.dtype, gpu_name: str, directions: int) -> float:
    launch, _ = compile_report.fitted_launch(kind, hidden, batch, dtype, gpu_name, directions=directions)
    return cost_row(kind, launch, gpu_name).step_us


def _call_row(name, dtype, mode, shape, step_us, cost, baseline="") -> CallRow:
    return CallRow(name, dtype, mode, shape, step_us, cost.recurrence, cost.input_gemms, cost.launches, cost.host_syncs,
                   cost.total, baseline)


# --------------------------------------------------------------------------------------------------
# The report


def report(hidden, batch, dtypes, gpu_name: str, exchange: str | None = None, out=sys.stdout) -> list[CostRow]:
    """Model every planned launch over the shape grid, one printed row each (model figures)."""
    print(f"MODEL figures for {GPUS[gpu_name].name} (tritongru/hardware.py), not measurements: one step of each planned "
          "launch, per SM", file=out)
    print(f"{'kernel':<13} {'dtype':<5} {'H':>5} {'B':>4} {'read':>6} {'write':>6} {'mma/sp':>6} {'chain':>5} {'rep':>3} "
          f"{'bars':>4} {'regs':>4} {'spill':>5}  {'shared':>6} {'issue':>6} {'tensor':>6} {'l2':>6} {'cta':>6} {'exch':>6} "
          f"{'step us':>7}  bound", file=out)
    rows = []
    for dtype in dtypes:
        for H in hidden:
            for B in batch:
                for kind, launch, _ in compile_report.variants(H, B, dtype, gpu_name, exchange):
                    row = cost_row(compile_report.kind_name(kind, launch), launch, gpu_name)
                    rows.append(row)
                    print(f"{row.kernel:<13} {row.dtype:<5} {H:>5} {B:>4} {row.shared_read_kib:>5.0f}K "
                          f"{row.shared_written_kib:>5.0f}K {row.mma_per_subpartition:>6} {row.mma_chain:>5} "
                          f"{row.replication:>3} {row.cta_barriers:>4} {row.regs:>4} {row.spill_bytes:>5}  "
                          f"{row.shared_us:>6.2f} {row.issue_us:>6.2f} {row.tensor_us:>6.2f} {row.l2_us:>6.2f} {row.cta_barrier_us:>6.2f} "
                          f"{row.exchange_us:>6.2f} {row.step_us:>7.2f}  {row.bound}", file=out, flush=True)
    return rows


def print_calls(calls: list[CallRow], out=sys.stdout) -> None:
    print("\nMODEL figures per call (one launch per layer and pass unless named, no host sync):", file=out)
    for call in calls:
        s = call.shape
        print(f"  {call.name:<34} {call.dtype:<5} {call.mode:<9} T={s.seq_len} B={s.batch} H={s.hidden} layers={s.layers} "
              f"directions={s.directions}: {call.total_us / 1e3:8.3f} ms (recurrence {call.recurrence_us / 1e3:.3f}, "
              f"input GEMMs {call.input_gemm_us / 1e3:.3f}, launches {call.launch_us / 1e3:.3f})"
              + (f"  [{call.baseline}]" if call.baseline else ""), file=out)


def write_csv(path: Path, rows: list) -> None:
    """Rows of one dataclass type as CSV (nested shapes flattened into their fields)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = [_flatten(dataclasses.asdict(row)) for row in rows]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)


def _flatten(record: dict) -> dict:
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update({f"{key}_{inner}": v for inner, v in value.items()})
        else:
            flat[key] = value
    return flat


def model_targets(rows: list[CostRow]) -> list[tuple[str, str, str]]:
    """``(target, verdict, detail)`` for the cost model's own targets (bf16) over these rows:
    ``met``, ``NOT met`` or ``not modelled`` (no row of that shape in the report)."""

    def pick(kernels: tuple[str, ...], hidden: int, batch: int | None = None) -> list[CostRow]:
        return [r for r in rows if r.kernel.split("+")[0] in kernels and r.hidden == hidden and r.dtype == "bf16"
                and (batch is None or r.batch == batch)]

    def verdict(description: str, values: list[float], bound: float, unit: str) -> tuple[str, str, str]:
        if not values:
            return description, "not modelled", "no row of that shape in this report"
        return description, "met" if max(values) <= bound else "NOT met", f"worst {max(values):.3g} {unit} over {len(values)} rows"

    resident = [r for r in rows if "/resident/" in r.config]
    verdicts = [(
        "no planned launch repeats a warp's work or spills its resident weights",
        "met" if all(r.replication == 1 for r in rows) and not any(r.spill_bytes for r in resident) else "NOT met",
        f"replication at most {max((r.replication for r in rows), default=0)}, spills in "
        f"{sum(r.spill_bytes > 0 for r in resident)} of {len(resident)} resident launches",
    )]
    # Per 16-row batch tile (B <= 16), the tile the replicated kernel read 1048 / 1548 KiB for; a
    # 32-row tile reads twice the state for twice the rows.
    for name, kernels, hidden, bound in (("forward", ("fwd-inf", "fwd"), 1024, 256), ("backward", ("bwd",), 1024, 384),
                                         ("forward", ("fwd-inf", "fwd"), 2048, 448), ("backward", ("bwd",), 2048, 640)):
        verdicts.append(verdict(f"{name} shared memory read per SM and step at H={hidden}, B <= 16 <= {bound} KiB",
                                [r.shared_read_kib for r in pick(kernels, hidden) if r.batch <= 16], bound, "KiB"))
    verdicts.append(verdict("inference step at B=1, H=1024 <= 1.5 us",
                            [r.step_us for r in pick(("fwd-inf",), 1024, 1)], 1.5, "us"))
    steps = [r.step_us for r in pick(("fwd",), 1024, 1) + pick(("bwd",), 1024, 1)]
    verdicts.append(verdict("forward + backward step at B=1, H=1024 <= 3.5 us", [sum(steps)] if len(steps) == 2 else [],
                            3.5, "us"))
    return verdicts


def write_summary(path: Path, rows: list[CostRow], calls: list[CallRow], gpu_name: str) -> None:
    """``SUMMARY.md`` beside the CSVs: the model's targets, the target shapes' steps and the calls."""
    from .environment import describe, source_commit

    commit = source_commit()
    lines = [
        f"# Cost model: {GPUS[gpu_name].name}", "",
        f"> **MODEL FIGURES, NOT MEASUREMENTS**: the compiled kernels' SASS priced with the figures of "
        f"`tritongru/hardware.py`. Commit `{commit}`, Triton {triton.__version__}, torch {describe(torch.device('cpu'))['torch']}.",
        "", "## The model's targets", "", "| target | verdict | detail |", "|---|---|---|",
        *(f"| {t} | {v} | {d} |" for t, v, d in model_targets(rows)), "",
        "## One step of each planned launch (per SM)", "",
        "| kernel | dtype | H | B | config | read KiB | written KiB | mma/sub-partition | chain | CTA barriers | step us | bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(f"| {r.kernel} | {r.dtype} | {r.hidden} | {r.batch} | {r.config} | {r.shared_read_kib:.0f} | "
          f"{r.shared_written_kib:.0f} | {r.mma_per_subpartition} | {r.mma_chain} | {r.cta_barriers} | {r.step_us:.2f} | {r.bound} |"
          for r in rows), "",
        "## Calls", "", "| call | dtype | mode | T | B | H | layers | directions | total ms | recurrence ms | baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(f"| {c.name} | {c.dtype} | {c.mode} | {c.shape.seq_len} | {c.shape.batch} | {c.shape.hidden} | {c.shape.layers} | "
          f"{c.shape.directions} | {c.total_us / 1e3:.3f} | {c.recurrence_us / 1e3:.3f} | {c.baseline} |" for c in calls), "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritongru cost-report", description=__doc__.split("\n\n")[0])
    compile_report.shape_options(parser)
    parser.add_argument("--gpu", choices=sorted(GPUS), default="h200", help="whose figures price the step (default h200)")
    parser.add_argument("--kernelbench", action="store_true", help="also model the KernelBench GRU tasks 39-42")
    parser.add_argument("--out", type=Path, help="folder for cost.csv and calls.csv (e.g. perf/results/model-h200)")
    parser.add_argument("--search", type=Path, metavar="PLAN",
                        help="instead, choose every plan entry's tiles by modelled cost and merge them into the table "
                             "PLAN (tritongru/plans/sm<arch>.json is the one the planner reads on a GPU of that architecture; "
                             "slow)")
    parser.add_argument("--kind", choices=KINDS, nargs="+", help="with --search: only these kernels (default all)")
    parser.add_argument("--table-gain", type=Path, metavar="PLAN",
                        help="instead, print how much the plan table PLAN's choices beat the default tiles, in the model "
                             "that ranked them")
    parser.add_argument("--layers", type=int, default=1,
                        help="model a unidirectional stack of this many layers instead: the call as the plan runs it "
                             "(all layers in one launch where it fits) beside one launch per layer; with --search, "
                             "choose its slice width (or one launch per layer) per shape")
    parser.add_argument("--seq-len", type=int, default=1024, help="with --layers: the sequence length (default 1024)")
    args = parser.parse_args(argv)
    shapes = compile_report.shapes_from(args)
    if args.table_gain:
        print(table_gain(dispatch.parse_plan(args.table_gain.read_text(), str(args.table_gain))))
        return 0
    if args.search and args.layers > 1:
        try:
            search_stacks(args.layers, shapes.get("hidden", (256, 512, 1024)), shapes.get("batch", (1, 16, 64)),
                          shapes.get("dtypes", (torch.bfloat16, torch.float32)), args.gpu, args.search, args.seq_len)
        except UnsearchedTable as error:
            parser.error(str(error))
        return 0
    if args.layers > 1:
        calls = [row for dtype in shapes.get("dtypes", (torch.bfloat16, torch.float32))
                 for H in shapes.get("hidden", (256, 512, 1024)) for B in shapes.get("batch", (1, 16, 64))
                 for row in stack_rows(H, B, dtype, args.layers, args.seq_len, args.gpu)]
        print_calls(calls)
        if args.out:
            write_csv(args.out / f"stack-l{args.layers}-t{args.seq_len}.csv", calls)
        return 0
    if args.search:
        search(gpu_name=args.gpu, plan=args.search, kinds=args.kind, **{
            "hidden": compile_report.HIDDEN, "batch": compile_report.BATCH, "dtypes": (torch.bfloat16, torch.float32),
            **shapes,
        })
        return 0
    rows = report(gpu_name=args.gpu, exchange=args.exchange, **{
        "hidden": compile_report.HIDDEN, "batch": compile_report.BATCH, "dtypes": compile_report.DTYPES, **shapes,
    })
    calls = call_rows(rows, args.gpu)
    if args.kernelbench:
        calls += kernelbench_rows(args.gpu)
    print_calls(calls)
    print("\nThe model's targets:")
    for target, verdict, detail in model_targets(rows):
        print(f"  {verdict:<12} {target}: {detail}")
    if args.out:
        write_csv(args.out / "cost.csv", rows)
        write_csv(args.out / "calls.csv", calls)
        write_summary(args.out / "SUMMARY.md", rows, calls, args.gpu)
        print(f"\nwrote {args.out / 'cost.csv'}, {args.out / 'calls.csv'} and {args.out / 'SUMMARY.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# --------------------------------------------------------------------------------------------------
# The plan table: tiles chosen by modelled cost


SEARCH_WARPS = (8, 4)


def tile_candidates(kind: str, hidden: int, batch: int, dtype: torch.dtype, shorter: int = 0) -> list[Tiles]:
    """The tiles the search models for one plan entry: every split of 4 or 8 warps into parts of
    the product, over the longest reduction chunk that compiles spill-free (fewer chunks mean
    fewer staging rounds and CTA barriers per step; at H=1024, B=1 a 256-deep chunk modelled
    dearer with every split, ``perf/NOTES.md``) and, where that chunk does not divide the
    reduction, the longest that does (a padded chunk multiplies zeros: H=768 in one 1024-deep
    chunk costs what H=1024 costs). The caller adds ready flags and wider batch tiles."""
    longest = max(16, longest_chunk(hidden, dtype.itemsize, kind) >> shorter)
    reduction = 3 * hidden if kind == "bwd" else hidden
    dividing = min(longest, reduction & -reduction)  # the largest power of two dividing it
    chunks = sorted({longest, dividing} if dividing >= 16 else {longest}, reverse=True)
    return [Tiles(warps, block_k, warps // split_n, split_n) for warps in SEARCH_WARPS for split_n in (1, 2, 4, 8)
            for block_k in chunks if split_n <= warps]


def _fits(row: CostRow, limits: DeviceLimits) -> bool:
    return row.spill_bytes == 0 and row.shared_bytes <= limits.shared_per_block and row.replication == 1 and row.co_resident


def _modelled(kind: str, tiles: Tiles, hidden: int, batch: int, dtype: torch.dtype, gpu_name: str) -> tuple[Tiles, CostRow] | None:
    """The planned launch with ``tiles`` (with a 255-register cap when it spills without one) and
    its modelled row; ``None`` where the planned work split does not take these tiles as they
    are, or the launch does not fit (spills, shared memory, repeated warps, co-residency)."""
    problem = Problem(hidden, batch, dtype, kind != "fwd-inf")
    limits = known_gpu(gpu_name).limits
    config = heuristic_config(problem, limits, kind == "bwd", tiles=tiles)
    taken = (config.split_k, config.split_n, config.block_k, config.block_b) == (tiles.split_k, tiles.split_n, tiles.block_k, tiles.block_b)
    exchanges = config.resident and config.grid_synchronised(hidden)
    if not taken or (tiles.exchange == "flags" and not exchanges):
        return None  # another candidate covers what the work split made of these tiles
    launch = compile_report.planned_launch(kind, config, hidden, batch, dtype)
    row = cost_row(compile_report.kind_name(kind, launch), launch, gpu_name)
    if row.spill_bytes and tiles.max_registers is None:
        return _modelled(kind, dataclasses.replace(tiles, max_registers=255), hidden, batch, dtype, gpu_name)
    return (tiles, row) if _fits(row, limits) else None


def search_entry(kind: str, hidden: int, batch: int, dtype: torch.dtype, gpu_name: str, log=print) -> list[tuple[Tiles, CostRow]]:
    """Every candidate of one plan entry that fits, cheapest modelled step first (shorter chunks
    only where nothing longer fits)."""
    problem = Problem(hidden, batch, dtype, kind != "fwd-inf")
    modelled = []
    for shorter in range(3):
        modelled = _search_tiles(kind, hidden, batch, dtype, gpu_name, problem, shorter, log)
        if modelled:
            break
    return sorted(modelled, key=lambda pair: pair[1].step_us)


def _search_tiles(kind, hidden, batch, dtype, gpu_name, problem, shorter, log) -> list[tuple[Tiles, CostRow]]:
    modelled = []
    for tiles in tile_candidates(kind, hidden, batch, dtype, shorter):
        variants = [tiles]
        if dtype.itemsize <= 4:
            variants.append(dataclasses.replace(tiles, exchange="flags"))
        # Wider batch tiles can only pay where hidden slices run several batch tiles per program;
        # a program holding all of W_hh runs one tile and there are as many programs as tiles.
        sliced = heuristic_config(problem, known_gpu(gpu_name).limits, kind == "bwd", tiles=tiles).num_h_tiles(hidden) > 1
        if batch > 16 and sliced:
            variants += [dataclasses.replace(v, block_b=32) for v in list(variants)]
        for variant in variants:
            found = _modelled(kind, variant, hidden, batch, dtype, gpu_name)
            if found is not None:
                modelled.append(found)
                log(f"  {kind:<8} h{hidden} b{batch} {found[1].config:<48} {found[1].step_us:6.2f} us ({found[1].bound})")
    return modelled


# The slice widths a stack's search compares (wider ones leave too few programs a layer to pay).
STACK_WIDTHS = (16, 32, 64)


class UnsearchedTable(ValueError):
    """A stack search asked for on an architecture whose one-layer plan table has no entries yet."""


def search_stacks(layers: int, hidden, batch, dtypes, gpu_name: str, plan: Path, seq_len: int = 1024,
                  log=print) -> dict:
    """For every stack of ``layers`` layers over the shape grid, inference and training, the slice
    width (and in training the backward's product, by columns or rows of ``W_hh``) whose call in
    one launch the model ranks cheapest, or 0 where one launch per layer is cheaper, merged into
    the table at ``plan`` under ``"stacks"`` (what :func:`dispatch.planned_stack` reads), with every
    candidate's modelled call (microseconds, model figures) at ``seq_len`` steps."""
    limits = known_gpu(gpu_name).limits
    if not dispatch.plan_table(limits.arch):
        # Both sides of each verdict take the one-layer tiles the planner reads (the shipped table):
        # without them one launch per layer, and the stack, would be priced with the default tiles.
        raise UnsearchedTable(
            f"a stack search prices its launches and one launch per layer with the tiles of "
            f"tritongru/plans/sm{limits.arch}.json, which has no entries: search that table first "
            f"(cost-report --search tritongru/plans/sm{limits.arch}.json --gpu {gpu_name})")
    header = {"stacks_made_by": f"python -m tritongru cost-report --search --layers (model figures at T={seq_len}, "
                                f"{gpu_name}, tritongru/cost_model.py)"}
    document = _merged(plan, header, "stacks", {})
    provenance = _provenance()
    for dtype in dtypes:
        for H in hidden:
            for B in sorted({batch_class(b) for b in batch}):
                for mode in ("inference", "fwd_bwd"):
                    problem = Problem(H, B, dtype, mode != "inference", layers=layers)
                    shape = CallShape(seq_len, B, H, H, layers=layers, element_bytes=dtype.itemsize)
                    ranked = []
                    for width in STACK_WIDTHS:
                        config = heuristic_config(problem, limits, slice_width=width)
                        if config.block_h != width or config.num_h_tiles(H) < 2:
                            continue  # fewer SMs a layer than slices, or all of W_hh in one program
                        for product in _backward_products(mode, H, B, dtype, layers, gpu_name, width):
                            row = stack_row("stack", shape, dtype, gpu_name, mode=mode, slice_width=width,
                                            product=product)
                            if row is not None:
                                ranked.append((row.total_us, width, product))
                    # Where no width fits spill-free (nor co-resides), the layers run one launch each:
                    # recorded, so that the planner does not take a smaller batch's width instead.
                    layer_by_layer = layer_by_layer_row(shape, dtype, gpu_name, mode).total_us
                    best_us, best, best_product = min(ranked, default=(float("inf"), 0, None))
                    key = stack_key(dtype.itemsize, mode != "inference", layers, H, B)
                    chosen = {"block_h": best if best_us < layer_by_layer else 0}
                    if best_product is not None and best_us < layer_by_layer:
                        chosen["backward_product"] = best_product
                    ranked.sort(key=lambda candidate: candidate[:2])
                    document = _merged(plan, header, "stacks", {key: {
                        **chosen,
                        "modelled_call_us": round(min(best_us, layer_by_layer), 1),
                        "layer_by_layer_us": round(layer_by_layer, 1),
                        "ranked": [{"block_h": w, **({"backward_product": p} if p else {}), "modelled_call_us": round(us, 1)}
                                   for us, w, p in ranked],
                        **provenance,
                    }})
                    log(f"{key}: " + (", ".join(f"{w}-unit slices{f' ({p})' if p else ''} {us / 1e3:.2f} ms"
                                                for us, w, p in ranked)
                                      or "no slice width keeps both matrices on chip, fits and spills nothing")
                        + f"; one launch per layer {layer_by_layer / 1e3:.2f} ms (model)")
    return document


def _backward_products(mode: str, hidden: int, batch: int, dtype: torch.dtype, layers: int, gpu_name: str,
                        width: int) -> tuple[str | None, ...]:
    """The backward products a stack's search compares at ``width``: none in inference; by columns,
    and by rows where some plan by rows fits (where none does, the fitting falls back to columns,
    which the search prices already)."""
    if mode == "inference":
        return (None,)
    launch, _ = compile_report.fitted_stack_launch("bwd", hidden, batch, dtype, layers, gpu_name, slice_width=width,
                                                   product="rows")
    rows = launch is not None and launch.config.product == "rows"
    return ("columns", "rows") if rows else ("columns",)


def _merged(plan: Path, header: dict, section: str, entries: dict) -> dict:
    """The table at ``plan`` with ``header`` and ``entries`` (key -> entry) under ``section``,
    written back. It is re-read under its lock for every entry, so that searches of different
    shapes writing one table at once (one process per dtype, say) keep each other's entries."""
    with tuned.exclusive(plan):
        document = json.loads(plan.read_text()) if plan.exists() else {"format": PLAN_FORMAT, "version": 1, "entries": {}}
        document.update(header)
        document.setdefault(section, {}).update(entries)
        tuned.write_document(plan, document)
    return document


def _provenance() -> dict:
    """What a plan table records of the code and day that made it (a stack's entries each: they are
    searched a few shapes at a time)."""
    from .environment import source_commit
    return {"commit": source_commit(), "date": datetime.date.today().isoformat()}


@dataclasses.dataclass(frozen=True)
class TableGain:
    """How much a plan table's choices beat the default tiles in the model that ranked them."""

    entries: int
    compared: int  # entries whose ranking holds the default tiles' launch (elsewhere it did not fit)
    median: float  # the default tiles' modelled step over the chosen one's
    largest: float
    largest_key: str
    above_10_percent: int

    def __str__(self) -> str:
        return (f"{self.entries} entries; the default tiles' launch fits in {self.compared}, where the chosen tiles' "
                f"modelled step is {self.median:.2f}x shorter at the median, {self.largest:.2f}x at most "
                f"({self.largest_key}), more than 1.1x in {self.above_10_percent} (model figures)")


def table_gain(document: dict) -> TableGain:
    """The plan table ``document``'s modelled gain over :func:`dispatch.default_tiles`, the tiles
    a shape takes where no table covers it: per entry, the default tiles' launch's modelled step
    (from the entry's own ranking, which holds every candidate that fit) over the chosen one's, on
    the GPU whose figures ranked them (``"model"``)."""
    limits = known_gpu(document["model"]).limits
    ratios = []
    for key, ranked in plan_entries(document).items():
        size, kind, hidden, batch = key.split("/")
        problem = Problem(int(hidden[1:]), int(batch[1:]), torch.bfloat16 if size == "2B" else torch.float32,
                          kind != "fwd-inf")
        backward = kind == "bwd"
        default = heuristic_config(problem, limits, backward,
                                   tiles=default_tiles(problem.hidden, problem.dtype.itemsize, kind))
        steps = [us for tiles, us in ranked.items() if same_launch(heuristic_config(problem, limits, backward, tiles=tiles), default)]
        if steps:
            ratios.append((min(steps) / next(iter(ranked.values())), key))
    ratios.sort()
    if not ratios:
        raise ValueError("no entry of the table ranks the default tiles' launch")
    return TableGain(len(document["entries"]), len(ratios), ratios[len(ratios) // 2][0], ratios[-1][0], ratios[-1][1],
                     sum(ratio > 1.1 for ratio, _ in ratios))


def search(hidden, batch, dtypes, gpu_name: str, plan: Path, kinds=None, log=print) -> dict:
    """Search every plan entry of the shape grid and merge the choices into the table at ``plan``
    (entry by entry, so that a search cut short keeps what it found). Each entry records its
    choice, the modelled step of every candidate that fit (the tuner's order), and how it was made."""
    kinds = kinds or KINDS
    header = dict(arch=gpu_named(gpu_name).arch, model=gpu_name, triton=triton.__version__, **_provenance(),
                  made_by="python -m tritongru cost-report --search (model figures, tritongru/cost_model.py)")
    document = _merged(plan, header, "entries", {})
    for dtype in dtypes:
        for H in hidden:
            for B in sorted({batch_class(b) for b in batch}):
                for kind in kinds:
                    ranked = search_entry(kind, H, B, dtype, gpu_name, log)
                    if not ranked:
                        log(f"  {kind} h{H} b{B} {dtype}: no candidate fits; the default tiles stay")
                        continue
                    best, row = ranked[0]
                    document = _merged(plan, header, "entries", {plan_key(dtype.itemsize, kind, H, B): {
                        **dataclasses.asdict(best), "modelled_step_us": round(row.step_us, 3), "bound": row.bound,
                        "ranked": [{**dataclasses.asdict(t), "modelled_step_us": round(r.step_us, 3)} for t, r in ranked],
                    }})
                    log(f"{plan_key(dtype.itemsize, kind, H, B)}: {row.config} {row.step_us:.2f} us (model)")
    log(f"against the default tiles: {table_gain(document)}")
    return document
