"""Running a sweep: select cases, skip what was already measured, measure, merge, report.

Entry point: ``python -m tritongru bench`` (which builds :class:`BenchOptions` and calls :func:`run`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from tritongru import environment

from . import machine, report, store
from .measure import measure_case
from .providers import PROVIDERS
from .sweeps import SWEEPS, Case, Sweep

DEFAULT_OUT = machine.REPO_ROOT / "perf" / "results"


class BenchUsageError(ValueError):
    """The options ask for something this machine or these sweeps cannot do."""


@dataclasses.dataclass
class BenchOptions:
    """What ``tritongru bench`` runs; ``None`` filters keep everything."""

    sweep: str | None = None
    providers: Sequence[str] | None = None
    modes: Sequence[str] | None = None
    dtypes: Sequence[str] | None = None
    hiddens: Sequence[int] | None = None
    batches: Sequence[int] | None = None
    limit: int | None = None
    out: Path = DEFAULT_OUT
    repeats: int = 3
    warmup_ms: int = 25
    rep_ms: int = 100
    time_budget_s: float | None = None
    resume: bool = True
    cudnn_allow_tf32: bool = False


def list_sweeps() -> str:
    return "\n".join(
        f"{sweep.name:<12} {len(sweep.cases):>3} cases, {sweep.device:<4} providers {','.join(sweep.providers)}: {sweep.description}"
        for sweep in SWEEPS.values()
    )


def default_sweep_name(device: torch.device) -> str:
    """``default`` on a GPU; on a CPU, ``cpu``: tritongru's CPU path against nn.GRU."""
    return "default" if device.type == "cuda" else "cpu"


def choose_sweep(name: str | None, device: torch.device) -> Sweep:
    """The named sweep, or :func:`default_sweep_name`'s."""
    name = name or default_sweep_name(device)
    if name not in SWEEPS:
        raise BenchUsageError(f"unknown sweep {name!r}; the sweeps are {', '.join(SWEEPS)}")
    sweep = SWEEPS[name]
    if device.type == "cpu" and sweep.device == "cuda":
        raise BenchUsageError(
            f"sweep {name!r} holds GPU shapes, which the CPU interpreter would run for hours; "
            "on a machine without a GPU use --sweep cpu (the CPU path against nn.GRU) or --sweep interpreter"
        )
    return sweep


def select_cases(sweep: Sweep, options: BenchOptions) -> list[Case]:
    filters = {"mode": options.modes, "dtype": options.dtypes, "hidden": options.hiddens, "batch": options.batches}
    cases = [case for case in sweep.cases if all(values is None or getattr(case, name) in values for name, values in filters.items())]
    if not cases:
        active = ", ".join(f"{name} in {list(values)}" for name, values in filters.items() if values is not None)
        raise BenchUsageError(f"no case of sweep {sweep.name!r} matches {active}")
    return cases[: options.limit] if options.limit is not None else cases


def select_providers(sweep: Sweep, names: Sequence[str] | None):
    names = list(names) if names else list(sweep.providers)
    unknown = [name for name in names if name not in PROVIDERS]
    if unknown:
        raise BenchUsageError(f"unknown provider(s) {unknown}; the providers are {', '.join(PROVIDERS)}")
    return [PROVIDERS[name] for name in names]


def _case_columns(case: Case) -> dict:
    return {**dataclasses.asdict(case), "case_id": case.case_id}


def run(options: BenchOptions, log: Callable[[str], None] = print) -> int:
    """Run the sweep; return 0, or 1 when a provider failed on some case (recorded in the CSV)."""
    device = environment.default_device()
    sweep = choose_sweep(options.sweep, device)
    cases = select_cases(sweep, options)
    providers = select_providers(sweep, options.providers)
    previous_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = options.cudnn_allow_tf32
    try:
        return _run_sweep(sweep, cases, providers, device, options, log)
    finally:
        torch.backends.cudnn.allow_tf32 = previous_tf32


def _run_sweep(sweep: Sweep, cases: list[Case], providers, device: torch.device, options: BenchOptions, log) -> int:
    meta = machine.run_metadata(device, options.cudnn_allow_tf32, times_kernels=sweep.device != "cpu")
    out_dir = Path(options.out) / meta["gpu_slug"]
    results_path = out_dir / "results.csv"
    run_path = out_dir / "runs" / f"{meta['date'].replace(':', '').replace('+0000', 'Z')}-{meta['commit']}.csv"
    if meta["timing_note"]:
        log(f"*** {meta['timing_note']} ***")
    log(f"sweep {sweep.name}: {len(cases)} cases x {len(providers)} providers on {meta['gpu']} -> {out_dir}")
    done = store.done_cases(store.load(results_path), meta["gpu"], meta["commit"], meta["settings"]) if options.resume else set()
    run_rows: list[dict] = []
    skipped = failures = 0
    start = time.monotonic()
    progress = tqdm(cases, unit="case", file=sys.stderr, dynamic_ncols=True, desc=sweep.name)
    for case in progress:
        progress.set_postfix_str(case.case_id)
        todo = [provider for provider in providers if (case.case_id, provider.name) not in done]
        if not todo:
            skipped += 1
            continue
        if options.time_budget_s is not None and time.monotonic() - start > options.time_budget_s:
            log(f"time budget of {options.time_budget_s:.0f} s spent; the remaining cases are left for a later run")
            break
        rows = [
            {**meta, **_case_columns(case), **row}
            for row in measure_case(case, todo, device, repeats=options.repeats, warmup_ms=options.warmup_ms, rep_ms=options.rep_ms)
        ]
        failures += sum(row["status"] == "error" for row in rows)
        for row in rows:
            if row["status"] == "error":
                progress.write(f"error: {case.case_id} {row['provider']}: {row['note']}")
        run_rows += rows
        # After every case, so an interrupted run keeps what it measured and a rerun resumes.
        store.write_run(run_path, run_rows)
        store.merge(results_path, rows)
    progress.close()
    merged = store.load(results_path)
    if skipped:
        log(f"{skipped} cases were already measured for {meta['gpu']} at commit {meta['commit']} (resumed; --no-resume measures again)")
    files = report.write_report(merged, meta, out_dir) if not merged.empty else []
    log(f"results: {results_path}" + (f" (this run: {run_path})" if run_rows else ""))
    for path in files:
        log(f"wrote {path}")
    if meta["timing_note"]:
        log(f"*** {meta['timing_note']} ***")
    return 1 if failures else 0
