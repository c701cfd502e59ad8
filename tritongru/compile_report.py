"""Compile every kernel variant the dispatcher plans for a GPU, without the GPU, exactly as the
JIT compiles it at launch.

For a grid of shapes, the launches the dispatcher plans (the inference forward, the training
forward and the backward) are built by the kernels' own launchers on meta tensors of the planned
shape (T = 1024, lengths given, the forward direction), specialised the way Triton's JIT
specialises them at run time (:func:`specialization`: integer arguments equal to 1 become
constants, integers divisible by 16 and 16-byte-aligned pointers carry ``tt.divisibility = 16``)
and compiled ahead of time for the GPU's architecture. The plan is the one the dispatcher makes on
that GPU: its SM count and shared memory (``tritongru/hardware.py``'s table of known GPUs) decide
the work split, its architecture's plan table the tiles. ``cuobjdump`` (shipped in Triton's wheel)
reads registers, stack (spills) and shared memory from the cubin. The report fails (exit 1) on a
spill in a variant whose weights are meant to stay on chip, on shared memory over the GPU's
per-block limit, or on a synchronised grid that cannot be co-resident on its SMs.

    python -m tritongru compile-report --gpu h200      # or --arch 89: every known GPU of sm_89
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton

from .dispatch import PlanError, Problem, first_fitting, heuristic_config, plan_ahead
from .hardware import KNOWN_GPUS, gpus_of_arch, known_gpu
from .kernels.gru_backward import backward_launch, stack_backward_launch
from .kernels.gru_forward import forward_launch, stack_forward_launch
from .kernels.launch import EXCHANGES, Launch, PersistentConfig, check_fits
from .kernels.limits import DeviceLimits

HIDDEN = (64, 128, 256, 512, 768, 1024, 1536, 2048)
BATCH = (1, 16, 64, 256)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
SUBSET = dict(hidden=(64, 256, 1024), batch=(1, 16), dtypes=(torch.bfloat16,))
# The sequence length the planned launches are compiled at: divisible by 16, as a long sequence
# usually is (T = 1 compiles as a constant, like B = 1).
SEQ_LEN = 1024
KINDS = ("fwd-inf", "fwd", "bwd")

_TRITON_TYPE = {
    torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64",
    torch.int32: "i32", torch.int64: "i64",
}
_BY_NAME = {name: dtype for dtype, name in _TRITON_TYPE.items() if dtype.is_floating_point and dtype != torch.float64}


# --------------------------------------------------------------------------------------------------
# The launches the dispatcher plans, and how the JIT specialises them


def planned_launch(kind: str, config: PersistentConfig, hidden: int, batch: int, dtype: torch.dtype,
                   directions: int = 1, seq_len: int = SEQ_LEN, device: str = "meta") -> Launch:
    """The launch of ``kind`` (``fwd-inf``, ``fwd`` or ``bwd``) that the launchers build for
    ``config`` at this shape, on tensors of ``device`` (meta: nothing is allocated)."""
    T, B, H, D = seq_len, batch, hidden, directions

    def empty(*shape, dtype=dtype):
        return torch.empty(shape, dtype=dtype, device=device)

    lengths = torch.full((B,), T, dtype=torch.int32, device=device)
    w_hh = empty(D, 3 * H, H)
    if kind == "bwd":
        launch, _ = backward_launch(
            empty(T, B, D * H), empty(D, B, H), w_hh, empty(D, T + 1, B, H), empty(D, T, B, 4, H), lengths, False,
            config, "tf32x3",
        )
        return launch
    launch, _ = forward_launch(
        empty(T, B, D * 3 * H), w_hh, empty(D, H), empty(D, B, H), lengths, False, kind == "fwd", config, "tf32x3"
    )
    return launch


def planned_stack_launch(kind: str, config: PersistentConfig, hidden: int, batch: int, dtype: torch.dtype, layers: int,
                         seq_len: int = SEQ_LEN, device: str = "meta") -> Launch:
    """The one launch of ``kind`` (``fwd-inf``, ``fwd`` or ``bwd``) that runs every layer of a
    unidirectional stack at this shape, as the launchers build it for ``config`` (on meta
    tensors: nothing is allocated)."""
    T, B, H, L = seq_len, batch, hidden, layers

    def empty(*shape, dtype=dtype):
        return torch.empty(shape, dtype=dtype, device=device)

    lengths = torch.full((B,), T, dtype=torch.int32, device=device)
    if kind == "bwd":
        launch, _ = stack_backward_launch(
            empty(T, B, H), empty(L, B, H), empty(L - 1, 3 * H, H), empty(L, 3 * H, H), empty(L, T + 1, B, H),
            empty(L, T, B, 4, H), lengths, None, config, "tf32x3",
        )
        return launch
    launch, _ = stack_forward_launch(
        empty(T, B, 3 * H), empty(L - 1, 3 * H, H), empty(L - 1, 3 * H), empty(L, 3 * H, H), empty(L, H),
        empty(L, B, H), lengths, None, kind == "fwd", config, "tf32x3",
    )
    return launch


def specialization(launch: Launch) -> tuple[dict, dict, dict]:
    """``(signature, constexprs, attrs)`` of ``launch`` as Triton's JIT builds them at launch, for
    :class:`triton.compiler.ASTSource`: an integer argument equal to 1 becomes a constant, one
    divisible by 16 and a pointer aligned to 16 bytes get ``tt.divisibility = 16``, except where
    the kernel asks for no specialisation (``do_not_specialize``)."""
    kernel = launch.kernel
    signature, constexprs, attrs = {}, {}, {}
    values = iter(launch.args)
    for index, param in enumerate(kernel.params):
        name = param.name
        if param.is_constexpr:
            signature[name] = "constexpr"
            constexprs[name] = launch.constexprs[name]
            continue
        value = next(values)
        if isinstance(value, torch.Tensor):
            signature[name] = "*" + _TRITON_TYPE[value.dtype]
            aligned = value.data_ptr() % 16 == 0 and not param.do_not_specialize_on_alignment
        elif isinstance(value, bool):
            signature[name], aligned = "u1", False
        elif isinstance(value, int):
            if value == 1 and not param.do_not_specialize:
                signature[name] = "constexpr"
                constexprs[name] = 1
                continue
            signature[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
            aligned = value % 16 == 0 and not param.do_not_specialize
        else:
            raise TypeError(f"{name}: cannot specialise an argument of type {type(value).__name__}")
        if aligned:
            attrs[(index,)] = [["tt.divisibility", 16]]
    return signature, constexprs, attrs


# --------------------------------------------------------------------------------------------------
# Compiling ahead of time


@dataclasses.dataclass(frozen=True)
class Compiled:
    """One variant compiled for a GPU target: what the report and the cost model read."""

    regs: int
    spill_bytes: int
    shared: int
    num_warps: int
    ttgir: str
    ptx: str
    sass: str


def _tool(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _launch_key(launch: Launch) -> tuple:
    signature, constexprs, attrs = specialization(launch)
    return (
        launch.kernel.fn.__name__, tuple(signature.items()), tuple(sorted((k, str(v)) for k, v in constexprs.items())),
        tuple(sorted(attrs)), tuple(sorted(launch.config.compile_options().items())),
    )


_compiled: dict[tuple, Compiled] = {}


def compile_launch(launch: Launch, arch: int = 90) -> Compiled:
    """``launch`` compiled for ``sm_<arch>`` as the JIT would compile it (cached per variant)."""
    key = (arch, *_launch_key(launch))
    if key not in _compiled:
        _compiled[key] = _compile(launch, arch)
    return _compiled[key]


def _compile(launch: Launch, arch: int) -> Compiled:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, constexprs, attrs = specialization(launch)
    options = launch.config.compile_options()
    compiled = triton.compile(
        ASTSource(launch.kernel, signature, constexprs, attrs), target=GPUTarget("cuda", arch, 32), options=options
    )
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", cubin.name],
                               capture_output=True, text=True, check=True).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", cubin.name], capture_output=True, text=True, check=True).stdout
    match = re.search(r"REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", usage)
    if match is None:
        raise RuntimeError(f"cuobjdump printed no resource usage for {launch.kernel.fn.__name__}:\n{usage}")
    regs, stack, local = (int(g) for g in match.groups())
    return Compiled(regs, stack + local, compiled.metadata.shared, options["num_warps"],
                    compiled.asm["ttgir"], compiled.asm["ptx"], sass)


# --------------------------------------------------------------------------------------------------
# The report


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
    limits: DeviceLimits
    refused: tuple[str, ...] = ()  # plans whose compiled kernel did not fit, before this one

    @property
    def problems(self) -> list[str]:
        found = []
        if self.resident and self.spill_bytes:
            found.append(f"spills {self.spill_bytes} B with resident weights")
        if self.shared > self.limits.shared_per_block:
            found.append(f"shared memory {self.shared} B > {self.limits.shared_per_block} B")
        if self.barrier and self.grid > self.limits.sms * self.per_sm:
            found.append(f"synchronised grid {self.grid} > {self.limits.sms} SMs x {self.per_sm} per SM")
        return found


def planned_config(kind: str, hidden: int, batch: int, dtype: torch.dtype, gpu_name: str = "h200",
                   exchange: str | None = None, directions: int = 1) -> PersistentConfig:
    """The dispatcher's configuration for ``kind`` at this shape on the known GPU ``gpu_name``
    (:func:`tritongru.dispatch.plan_ahead`); ``exchange`` forces how resident slices hand on a
    step's state (default: as planned)."""
    problem = Problem(hidden, batch, dtype, kind != "fwd-inf", directions)
    return plan_ahead(problem, known_gpu(gpu_name).limits, exchange).config(kind == "bwd")


def fitted_launch(kind: str, hidden: int, batch: int, dtype: torch.dtype, gpu_name: str = "h200",
                  exchange: str | None = None, directions: int = 1) -> tuple[Launch, tuple[str, ...]]:
    """The launch of ``kind`` that runs at this shape on ``gpu_name``: the planned one or, where its
    compiled kernel does not fit the GPU's shared memory or spills its resident weights, the plan
    :func:`tritongru.dispatch.first_fitting` takes instead (what the op chooses at run time); with
    the plans refused on the way. Where nothing fits, the last plan tried (its row reports the
    shared memory it lacks)."""
    problem = Problem(hidden, batch, dtype, kind != "fwd-inf", directions)
    planned = planned_config(kind, hidden, batch, dtype, gpu_name, exchange, directions)
    launch, refused = _fitted(kind, problem, planned, gpu_name,
                              lambda config: planned_launch(kind, config, hidden, batch, dtype, directions))
    return launch, refused or ()


def fitted_stack_launch(kind: str, hidden: int, batch: int, dtype: torch.dtype, layers: int, gpu_name: str = "h200",
                        seq_len: int = SEQ_LEN, slice_width: int | None = None, product: str | None = None,
                        ) -> tuple[Launch | None, tuple[str, ...]]:
    """The one launch of ``kind`` running every layer of a unidirectional stack that the op takes
    on ``gpu_name`` (:func:`fitted_launch`'s choice among plans that keep the weights on chip),
    with the plans refused on the way; None where it keeps the stack layer by layer: no resident
    plan co-resides or fits. ``slice_width`` and the backward's ``product`` override the plan
    table's (what the table's search compares)."""
    problem = Problem(hidden, batch, dtype, kind != "fwd-inf", layers=layers)
    planned = heuristic_config(problem, known_gpu(gpu_name).limits, kind == "bwd", slice_width=slice_width,
                               product=product)
    if not planned.resident or layers * planned.num_programs > known_gpu(gpu_name).limits.sms:
        return None, ()
    launch, refused = _fitted(kind, problem, planned, gpu_name, lambda config: planned_stack_launch(
        kind, config, hidden, batch, dtype, layers, seq_len=seq_len))
    return (launch, refused) if refused is not None else (None, ())


def _fitted(kind: str, problem: Problem, planned: PersistentConfig, gpu_name: str, build):
    """``(launch, refused)``: the launch ``build`` makes of the plan :func:`first_fitting` takes for
    ``problem`` on ``gpu_name``, compiled, with the plans it refused (short form); where none fits,
    the last launch tried (None if none was) and None."""
    known = known_gpu(gpu_name)
    limits = known.limits
    tried = []

    def attempt(config: PersistentConfig) -> Launch:
        launch = build(config)
        tried.append(launch)
        compiled = compile_launch(launch, limits.arch)
        check_fits(launch, compiled.shared, compiled.spill_bytes, limits.shared_per_block, known.name)
        return launch

    try:
        _, launch, refused = first_fitting(problem, limits, kind == "bwd", planned, attempt, known.name)
    except PlanError:
        return (tried[-1] if tried else None), None
    return launch, tuple(error.short() for error in refused)


def variants(hidden: int, batch: int, dtype: torch.dtype, gpu_name: str = "h200", exchange: str | None = None,
             layers: int = 1):
    """``(kind, launch, refused)`` for each launch the dispatcher runs for a shape on ``gpu_name``
    (:func:`fitted_launch`), or with ``layers`` for each launch running every layer of that stack
    (:func:`fitted_stack_launch`; ``launch`` None where the stack runs layer by layer)."""
    for kind in KINDS:
        if layers > 1:
            yield f"stack-{kind}", *fitted_stack_launch(kind, hidden, batch, dtype, layers, gpu_name)
        else:
            yield kind, *fitted_launch(kind, hidden, batch, dtype, gpu_name, exchange)


def kind_name(kind: str, launch: Launch) -> str:
    return kind + ("+flags" if launch.constexprs.get("FLAGS") else "")


def stack_kind_name(kind: str, launch: Launch) -> str:
    """A stack's launches all exchange by flags; its backward may take ``W_hh`` by rows."""
    return kind + ("+rows" if launch.config.product == "rows" else "")


def report(hidden=HIDDEN, batch=BATCH, dtypes=DTYPES, gpu_name: str = "h200", exchange: str | None = None,
           out=sys.stdout, layers: int = 1) -> list[Row]:
    """Compile every variant planned for ``gpu_name`` over the shape grid (of one layer, or with
    ``layers`` of a stack in one launch), one table row each."""
    known = known_gpu(gpu_name)
    limits = known.limits
    print(f"# {known.name}: {limits.describe()} ({known.limits_source()})", file=out)
    rows = []
    width = 14 if layers > 1 else 13  # stack-bwd+rows
    header = f"{'kernel':<{width}} {'dtype':<5} {'H':>5} {'B':>4} {'block b/h/k':>12} {'warps':>5} {'regs':>4} {'spill':>5} {'smem':>7} {'/SM':>3} {'grid':>4} {'resident':>8}  status"
    print(header, file=out)
    for dtype in dtypes:
        for H in hidden:
            for B in batch:
                for kind, launch, refused in variants(H, B, dtype, gpu_name, exchange, layers):
                    if launch is None:
                        print(f"{kind:<{width}} {_TRITON_TYPE[dtype]:<5} {H:>5} {B:>4}  runs layer by layer: no plan keeps "
                              f"both weight matrices of {layers} layers on chip at one program per SM", file=out)
                        continue
                    config = launch.config
                    compiled = compile_launch(launch, limits.arch)
                    per_sm = limits.programs_per_sm(compiled.regs, compiled.shared, config.num_warps)
                    row = Row(
                        stack_kind_name(kind, launch) if layers > 1 else kind_name(kind, launch), _TRITON_TYPE[dtype], H, B, config, compiled.regs,
                        compiled.spill_bytes, compiled.shared, per_sm, launch.programs, config.resident,
                        launch.synchronised, limits, refused,
                    )
                    rows.append(row)
                    tiles = f"{config.block_b}/{config.block_h}/{config.block_k}"
                    status = "; ".join(row.problems) or "ok"
                    if refused:
                        status += f" (re-planned: {'; '.join(refused)})"
                    print(
                        f"{row.kernel:<{width}} {row.dtype:<5} {H:>5} {B:>4} {tiles:>12} {config.num_warps:>5} {row.regs:>4} "
                        f"{row.spill_bytes:>5} {row.shared:>7} {per_sm:>3} {row.grid:>4} {str(row.resident):>8}  {status}",
                        file=out, flush=True,
                    )
    return rows


def shape_options(parser: argparse.ArgumentParser) -> None:
    """The shape options the compile report and the cost report share."""
    parser.add_argument("--subset", action="store_true", help="a representative subset (what the test suite runs)")
    parser.add_argument("--hidden", type=int, nargs="+", help=f"hidden sizes (default {' '.join(map(str, HIDDEN))})")
    parser.add_argument("--batch", type=int, nargs="+", help=f"batch sizes (default {' '.join(map(str, BATCH))})")
    parser.add_argument("--dtype", choices=sorted(_BY_NAME), nargs="+", help="dtypes (default all three)")
    parser.add_argument("--exchange", choices=EXCHANGES,
                        help="force how resident slices hand on a step's state (default: as the planner chose)")


def shapes_from(args: argparse.Namespace) -> dict:
    shapes = dict(SUBSET) if args.subset else {}
    if args.hidden:
        shapes["hidden"] = tuple(args.hidden)
    if args.batch:
        shapes["batch"] = tuple(args.batch)
    if args.dtype:
        shapes["dtypes"] = tuple(_BY_NAME[name] for name in args.dtype)
    return shapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tritongru compile-report", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--gpu", choices=list(KNOWN_GPUS), nargs="+", help="the GPUs to plan and check for (default h200)")
    which.add_argument("--arch", type=int, help="every known GPU of this compute capability (e.g. 90, 89, 80)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="also write each GPU's report to DIR/compile-<gpu>/report.txt (e.g. perf/results)")
    parser.add_argument("--layers", type=int, default=1,
                        help="the launches running every layer of a unidirectional stack of this many layers in one "
                             "(written to report-l<L>.txt with --out)")
    shape_options(parser)
    args = parser.parse_args(argv)
    try:
        gpus = gpus_of_arch(args.arch) if args.arch is not None else (args.gpu or ["h200"])
    except ValueError as error:
        parser.error(str(error))
    # The commit of the code that compiles, read before anything is compiled.
    provenance = {gpu_name: _provenance(gpu_name, argv) for gpu_name in gpus}
    failed = 0
    for gpu_name in gpus:
        text = io.StringIO()
        rows = report(gpu_name=gpu_name, exchange=args.exchange, out=_Tee(text), layers=args.layers,
                      **shapes_from(args))
        problems = [row for row in rows if row.problems]
        summary = f"{len(rows)} planned launches, {len(problems)} with problems"
        print(f"\n{summary}\n", flush=True)
        failed += bool(problems)
        if args.out:
            name = "report.txt" if args.layers == 1 else f"report-l{args.layers}.txt"
            path = args.out / f"compile-{gpu_name}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(provenance[gpu_name] + text.getvalue() + f"\n{summary}\n", encoding="utf-8")
            print(f"wrote {path}\n")
    return 1 if failed else 0


class _Tee(io.TextIOBase):
    """Prints what it is written while keeping a copy."""

    def __init__(self, copy: io.StringIO):
        self.copy = copy

    def write(self, text: str) -> int:
        sys.stdout.write(text)
        return self.copy.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _provenance(gpu_name: str, argv: list[str] | None) -> str:
    import datetime

    from .environment import source_commit

    commit = source_commit()
    command = " ".join(["python -m tritongru compile-report", *(sys.argv[1:] if argv is None else argv)])
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    return (f"# {known_gpu(gpu_name).name} compile report (compiled ahead of time on a CPU-only machine; no GPU involved)\n"
            f"# command: {command}   (fp32 compiled as 3xTF32, the default precision)\n"
            f"# commit: {commit}  date: {date}  triton: {triton.__version__}  torch: {torch.__version__}\n")


if __name__ == "__main__":
    sys.exit(main())
