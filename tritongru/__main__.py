"""The ``tritongru`` command line: ``python -m tritongru {info,bench,tune,validate,compile-report,cost-report}``.

Exit codes: 0 success; 1 the command ran and found a failure (validation over tolerance, a provider
error in the benchmark); 2 the command cannot run here or was called wrongly (no GPU for ``tune``,
unknown sweep, missing perf dependencies).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from . import _compat

if not _compat.HAS_TRITON:  # every command compiles, times or describes the kernels
    sys.stderr.write("tritongru: its commands need Triton, which is not installed here (Triton ships Linux wheels); "
                     "tritongru.GRU and tritongru.gru run without it, on PyTorch's GRU operator\n")
    raise SystemExit(2)

from . import environment, tuned, tuning  # noqa: E402
from .accuracy import DTYPES, MODES  # noqa: E402
from .kernels import settings  # noqa: E402


class CLIError(Exception):
    """An error the CLI reports in one line, with exit code 2."""


# --------------------------------------------------------------------------------------------------
# info


def cmd_info(args: argparse.Namespace, argv: list[str]) -> int:
    device = environment.default_device()
    facts = environment.describe(device)
    print(f"tritongru {facts['tritongru']}")
    print(f"python {facts['python']}, torch {facts['torch']}, triton {facts['triton']}, numpy {facts['numpy']}, "
          f"CUDA (torch build) {facts['cuda']}")
    print(f"TRITON_INTERPRET: {'1 (kernels run on the CPU interpreter)' if facts['interpreter'] else 'unset'}")
    gpu_key = None
    if device.type == "cuda":
        shared = facts["shared_per_block_optin"]
        print(f"GPU: {facts['gpu']} ({device}), {facts['sm_count']} SMs, compute capability {facts['capability']}, "
              f"{shared // 1024 if shared else '?'} KiB shared memory per block (opt-in), {facts['memory_gib']} GiB, "
              f"driver {facts['driver']}")
        gpu_key = tuned.device_identity(device).key
    else:
        print(f"GPU: none (torch.cuda.is_available() is {torch.cuda.is_available()})")
    can_run, why = _compat.kernels_can_run(device)
    print(f"kernels on {device}: {'can run' if can_run else 'cannot run: ' + why}")
    print(f"tuning key: {gpu_key or 'n/a (no GPU)'}")
    applies = []
    for table in tuned.describe_tables(gpu_key):
        print(f"  {table['kind']} table {table['path']}: {table['status']}"
              + (f", {table['entries_here']} entries for this GPU" if gpu_key else ""))
        if table["entries_here"]:
            applies.append(str(table["path"]))
    if not tuned.shipped_tables():
        print("  shipped tables: none")
    print(f"tuned table that applies: {', '.join(applies) if applies else 'none (heuristic configurations)'}")
    print(f"{settings.AUTOTUNE_ENV}: {'1 (tunes on a miss)' if settings.autotune_enabled() else 'off'}")
    return 0


# --------------------------------------------------------------------------------------------------
# bench and validate (CPU: under the interpreter)


def _rerun_under_interpreter(argv: list[str]) -> int | None:
    """Without a GPU, kernels only run with TRITON_INTERPRET=1, which must be set before they are
    imported: run this command again in a child process that has it. None where not needed."""
    if _compat.INTERPRET or torch.cuda.is_available():
        return None
    print("no CUDA GPU here: running again with TRITON_INTERPRET=1 (Triton kernels on the CPU interpreter)",
          file=sys.stderr, flush=True)
    return subprocess.call([sys.executable, "-m", "tritongru", *argv], env={**os.environ, settings.INTERPRET_ENV: "1"})


def _load_perf():
    """``perf.bench`` from the source checkout: the suite is a tool of the repository, not of the package."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "perf" / "bench.py").is_file():
        raise CLIError(f"the perf suite lives in the source checkout's perf/ folder, and there is none at {root / 'perf'}; "
                       "run from a clone of the tritongru repository")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        bench = importlib.import_module("perf.bench")
    except ModuleNotFoundError as error:
        if error.name in ("pandas", "matplotlib", "tqdm"):
            raise CLIError(f"the perf suite needs pandas, matplotlib and tqdm ({error.name} is missing): "
                           "pip install 'tritongru[perf]'") from error
        raise
    found = Path(bench.__file__).resolve().parent
    if found != root / "perf":
        raise CLIError(f"imported perf.bench from {found}, expected the checkout's {root / 'perf'}; "
                       "another package named 'perf' is shadowing it")
    return bench


def cmd_bench(args: argparse.Namespace, argv: list[str]) -> int:
    bench = _load_perf()
    if args.list:
        print(bench.list_sweeps())
        return 0
    sweep = bench.SWEEPS.get(args.sweep or bench.default_sweep_name(environment.default_device()))
    rerun = _rerun_under_interpreter(argv) if sweep is not None and sweep.device == "interpreter" else None
    if rerun is not None:
        return rerun
    options = bench.BenchOptions(
        sweep=args.sweep, providers=args.provider, modes=args.mode, dtypes=args.dtype, hiddens=args.hidden,
        batches=args.batch, limit=args.limit, out=Path(args.out) if args.out else bench.DEFAULT_OUT,
        repeats=args.repeats, time_budget_s=args.time_budget, resume=not args.no_resume,
        cudnn_allow_tf32=bool(args.cudnn_tf32),
    )
    try:
        return bench.run(options)
    except bench.BenchUsageError as error:
        raise CLIError(str(error)) from error


def cmd_validate(args: argparse.Namespace, argv: list[str]) -> int:
    rerun = _rerun_under_interpreter(argv)
    if rerun is not None:
        return rerun
    from . import accuracy

    device = environment.default_device()
    cases = accuracy.GPU_CASES if device.type == "cuda" else accuracy.CPU_CASES
    if args.dtype:
        cases = tuple(case for case in cases if case.dtype_name in args.dtype)
        if not cases:
            raise CLIError(f"no validation case on {device} has dtype {args.dtype}")
    where = "Triton interpreter on the CPU, tiny shapes" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"validating tritongru.GRU against the float64 reference on {device} ({where}), forward and gradients")
    ok = accuracy.validate(device, cases)
    print("all cases within tolerance" if ok else "FAILED: some errors exceed their tolerance")
    return 0 if ok else 1


# --------------------------------------------------------------------------------------------------
# tune


def cmd_tune(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        device = tuning.require_gpu()
    except tuning.TuningUnavailableError as error:
        print(f"tritongru tune: error: {error}", file=sys.stderr)
        return 2
    problems = tuning.problem_set(
        hiddens=args.hidden or tuning.DEFAULT_HIDDENS,
        batches=args.batch or tuning.DEFAULT_BATCHES,
        dtypes=[getattr(torch, name) for name in (args.dtype or ["bfloat16"])],
        training=[mode == "training" for mode in (args.mode or ["inference", "training"])],
        directions=args.directions or [1],
    )
    path = Path(args.out) if args.out else settings.tuning_file()
    print(f"tuning {len(problems)} problems on {torch.cuda.get_device_name(device)} (T={args.seq_len}, "
          f"at most {args.max_configs} configs each) -> {path}")
    try:
        results = tuning.tune(problems, device, path=path, seq_len=args.seq_len, max_configs=args.max_configs,
                              time_budget_s=args.time_budget)
    except tuned.ForeignFileError as error:
        raise CLIError(str(error)) from error
    print(f"tuned {len(results)} of {len(problems)} problems; saved to {path}")
    return 0


# --------------------------------------------------------------------------------------------------
# compile-report


def cmd_report(module: str, argv: list[str]) -> int:
    """``compile-report`` and ``cost-report``: their options are the reports' own."""
    return int(importlib.import_module(f"tritongru.{module}").main(argv))


# --------------------------------------------------------------------------------------------------
# parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tritongru",
        description="tritongru: a persistent-RNN GRU in Triton. Inspect this machine, benchmark, tune, validate.",
        epilog="Exit codes: 0 success, 1 a check or benchmark found a failure, 2 cannot run here or bad arguments.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = commands.add_parser("info", help="GPU, SMs, shared memory, versions and the tuned table that applies (works without a GPU)")
    info.set_defaults(handler=cmd_info)

    bench = commands.add_parser(
        "bench", help="run the perf suite (on a machine without a GPU: the interpreter sweep, CPU times only)",
        description="Run a perf sweep, write results under OUT/<gpu-slug>/ (results.csv, runs/, PNG plots, SUMMARY.md). "
                    "Cases already measured for this GPU and commit are skipped. Without a GPU it runs the "
                    "'interpreter' sweep under TRITON_INTERPRET=1: CPU-interpreter times, not GPU numbers.",
    )
    bench.add_argument("--sweep", help="sweep name (default: 'default' on a GPU, 'interpreter' on the CPU); see --list")
    bench.add_argument("--list", action="store_true", help="list the sweeps and exit")
    bench.add_argument("--provider", nargs="+", action="extend", metavar="NAME",
                       help="providers to run (tritongru, cudnn, reference, compile); default: the sweep's")
    bench.add_argument("--mode", nargs="+", action="extend", choices=MODES, help="keep only these modes")
    bench.add_argument("--dtype", nargs="+", action="extend", choices=DTYPES, help="keep only these dtypes")
    bench.add_argument("--hidden", nargs="+", action="extend", type=_positive_int, metavar="H", help="keep only these hidden sizes")
    bench.add_argument("--batch", nargs="+", action="extend", type=_positive_int, metavar="B", help="keep only these batch sizes")
    bench.add_argument("--limit", type=_positive_int, metavar="N", help="run at most the first N selected cases")
    bench.add_argument("--out", metavar="DIR", help="results root (default: perf/results in the checkout)")
    bench.add_argument("--repeats", type=_positive_int, default=3, help="timed calls per provider on the CPU (default 3)")
    bench.add_argument("--time-budget", type=float, metavar="S", help="start no new case after S seconds; report what was measured")
    bench.add_argument("--no-resume", action="store_true", help="measure again cases already in results.csv for this GPU and commit")
    bench.add_argument("--cudnn-tf32", type=int, choices=(0, 1), default=0,
                       help="torch.backends.cudnn.allow_tf32 for the cudnn provider, recorded per row (default 0)")
    bench.set_defaults(handler=cmd_bench)

    tune = commands.add_parser(
        "tune", help="tune launch configurations on this GPU and save them (exit code 2 without a GPU)",
        description="Time pruned launch configurations per shape bucket on this GPU and save the fastest to the "
                    f"tuning file (${settings.TUNING_FILE_ENV}, ${settings.CACHE_DIR_ENV}/tuning.json or ~/.cache/tritongru/tuning.json).",
    )
    tune.add_argument("--hidden", nargs="+", action="extend", type=_positive_int, metavar="H", help=f"hidden sizes (default {' '.join(map(str, tuning.DEFAULT_HIDDENS))})")
    tune.add_argument("--batch", nargs="+", action="extend", type=_positive_int, metavar="B", help=f"batch sizes (default {' '.join(map(str, tuning.DEFAULT_BATCHES))})")
    tune.add_argument("--dtype", nargs="+", action="extend", choices=DTYPES, help="dtypes (default bfloat16)")
    tune.add_argument("--mode", nargs="+", action="extend", choices=("inference", "training"), help="default: both")
    tune.add_argument("--directions", nargs="+", action="extend", type=int, choices=(1, 2),
                      help="directions one launch runs (2: both of a bidirectional layer); default 1")
    tune.add_argument("--seq-len", type=_positive_int, default=128, help="time steps of the timed calls (default 128)")
    tune.add_argument("--max-configs", type=_positive_int, default=16, help="configurations timed per problem (default 16)")
    tune.add_argument("--time-budget", type=float, metavar="S", help="start no new problem after S seconds")
    tune.add_argument("--out", metavar="FILE", help="table to write (default: the user's tuning file)")
    tune.set_defaults(handler=cmd_tune)

    validate = commands.add_parser(
        "validate", help="check tritongru.GRU against the float64 reference here, forward and gradients",
        description="Run tritongru.GRU (Triton kernels only) against the float64 reference on this machine's device "
                    "and print the max relative errors. Without a GPU: tiny shapes under TRITON_INTERPRET=1.",
    )
    validate.add_argument("--dtype", nargs="+", action="extend", choices=DTYPES, help="keep only cases of these dtypes")
    validate.set_defaults(handler=cmd_validate)

    commands.add_parser("compile-report", add_help=False,
                        help="compile the planned kernels for a GPU without one and check they fit it (e.g. --gpu a100, --arch 89); "
                             "its own options: compile-report --help")
    commands.add_parser("cost-report", add_help=False,
                        help="model what a step and a call cost from the compiled kernels (model figures, no GPU); "
                             "its own options: cost-report --help")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] in (["compile-report"], ["cost-report"]):
            # Their options are the reports' own: hand them over unparsed.
            return cmd_report(argv[0].replace("-", "_"), argv[1:])
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help(sys.stderr)
            return 2
        return args.handler(args, argv)
    except CLIError as error:
        print(f"tritongru: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tritongru: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
