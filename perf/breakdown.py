"""Where a forward step's time goes: the recurrence kernel timed whole and with one stage left out,
and with the other way of handing the state between hidden slices.

For each shape, ``full`` is the persistent forward kernel as the dispatcher configures it;
``no-matmul`` leaves out the recurrent product (and the read of ``h_{t-1}`` that feeds it);
``no-barrier`` leaves out the grid barrier (only matters for sliced configurations);
``eager-stall-check`` reads the stall word back after every launch (a host sync; the default
reads it asynchronously). Where the slices are resident and the dtype allows, ``flags`` is the
same tiling exchanging the state through ready flags, and ``flags-no-wait`` the same without
waiting for the flags. Where both grids fit, ``two-directions-two-launches`` runs a
bidirectional layer's forward as one launch per direction and ``two-directions-one-launch`` as one
launch for both (its microseconds are per step of both directions). The stages are left out by
timing-only twins of the production kernel (``perf/instrumented.py``), which compute wrong
results by design. Per-step microseconds of each, and ``saved_us_per_step`` (the time of the
variant named in ``vs`` minus this one: what the left-out stage costs, or what flags save), go to
``perf/results/<gpu>/breakdown.csv``, beside the cost model's figure for the same launch where the
plan table has one (``model_us_per_step``, a model figure).

    python -m perf.breakdown                 # the target shapes (bf16, T=1024, B 1/16/64, H 256-1024)
    python -m perf.breakdown --hidden 1024 --batch 1 --seq-len 256
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from unittest import mock

import pandas as pd
import torch

from tritongru import _compat, environment
from tritongru.dispatch import Problem, limits_of, modelled_step_us, plan_launch, plan_layer
from tritongru.kernels.gru_forward import forward_launch
from tritongru.kernels.launch import launch_persistent
from tritongru.kernels.settings import STALL_CHECK_ENV

from . import instrumented, machine
from .measure import time_call


@dataclasses.dataclass(frozen=True)
class Variant:
    """One timed form of the forward: how its slices exchange the state, which stage it leaves out,
    whether the stall word is read back, and how many directions it runs in how many launches."""

    exchange: str = "barrier"
    without: str = ""  # the stage left out (perf/instrumented.py)
    stall_check: str = "async"
    vs: str | None = "full"  # the variant whose time this one's saving is measured against
    directions: int = 1
    launches: int = 1


VARIANTS = {
    "full": Variant(vs=None),
    "no-matmul": Variant(without="matmul"),
    "no-barrier": Variant(without="barrier"),
    "eager-stall-check": Variant(stall_check="eager"),
    "flags": Variant(exchange="flags"),
    "flags-no-wait": Variant(exchange="flags", without="wait", vs="flags"),
    "two-directions-two-launches": Variant(vs=None, directions=2, launches=2),
    "two-directions-one-launch": Variant(vs="two-directions-two-launches", directions=2),
}
KEY = ["gpu", "commit", "dtype", "seq_len", "batch", "hidden", "variant"]


def variants_for(config, hidden: int, directions_fit: bool) -> dict[str, Variant]:
    """The variants that apply: ready flags need resident hidden slices, one launch for two
    directions needs both grids to fit (``directions_fit``)."""
    flags = config.resident and dataclasses.replace(config, exchange="flags").uses_ready_flags(hidden)
    return {
        name: variant for name, variant in VARIANTS.items()
        if (variant.exchange == "barrier" or flags) and (variant.directions == 1 or directions_fit)
    }


def measure(hidden: int, batch: int, seq_len: int, dtype: torch.dtype, device: torch.device, rep_ms: int) -> list[dict]:
    """One row per applicable variant for one shape."""
    torch.manual_seed(0)
    gx = torch.randn(seq_len, batch, 2, 3 * hidden, device=device, dtype=dtype)
    w_hh = torch.randn(2, 3 * hidden, hidden, device=device, dtype=dtype) / hidden**0.5
    b_hn = torch.randn(2, hidden, device=device, dtype=dtype)
    h0 = torch.randn(2, batch, hidden, device=device, dtype=dtype)
    # Each direction's operands alone, and both stacked as one launch takes them.
    forward_only = (gx[:, :, 0].contiguous(), w_hh[:1], b_hn[:1], h0[:1])
    reverse_only = (gx[:, :, 1].contiguous(), w_hh[1:], b_hn[1:], h0[1:])
    both = (gx.flatten(2), w_hh, b_hn, h0)
    launches_of = {
        (1, 1): [(forward_only, False)],
        (2, 2): [(forward_only, False), (reverse_only, True)],
        (2, 1): [(both, False)],
    }
    chosen = plan_launch(Problem(hidden, batch, dtype, False), device).forward
    fit = plan_layer(hidden, batch, dtype, False, True, device).problem.directions == 2
    chosen_both = plan_launch(Problem(hidden, batch, dtype, False, directions=2), device).forward
    precision = _compat.fp32_dot_precision()
    rows = {}
    for name, variant in variants_for(chosen, hidden, fit).items():
        shared_launch = variant.directions == 2 and variant.launches == 1
        config = dataclasses.replace(chosen_both if shared_launch else chosen, exchange=variant.exchange)

        def run(config=config, stage=variant.without, launches=launches_of[(variant.directions, variant.launches)]):
            for operands, reverse in launches:
                launch, _ = forward_launch(*operands, None, reverse, False, config, precision)
                launch_persistent(instrumented.without(launch, stage) if stage else launch)

        with mock.patch.dict(os.environ, {STALL_CHECK_ENV: variant.stall_check}):
            (p50, p20, p80), timer = time_call(run, device, repeats=3, warmup_ms=25, rep_ms=rep_ms, graphable=False)
        rows[name] = dict(
            dtype=str(dtype).removeprefix("torch."), seq_len=seq_len, batch=batch, hidden=hidden, variant=name,
            p50_ms=p50, p20_ms=p20, p80_ms=p80, us_per_step=p50 * 1e3 / seq_len, timer=timer,
            config=config.label(), model_us_per_step=_model(variant, hidden, batch, dtype, config, device),
        )
    for name, row in rows.items():
        vs = VARIANTS[name].vs
        row["vs"] = vs or ""
        row["saved_us_per_step"] = rows[vs]["us_per_step"] - row["us_per_step"] if vs else float("nan")
    return list(rows.values())


def _model(variant: Variant, hidden: int, batch: int, dtype: torch.dtype, config, device: torch.device) -> float:
    """The cost model's figure for the launch this variant times (NaN for the twins, which the
    model does not price, and for launches the plan table did not rank)."""
    if variant.without or variant.stall_check != "async" or variant.directions != 1:
        return float("nan")
    modelled = modelled_step_us(Problem(hidden, batch, dtype, False), config, limits_of(device))
    return float("nan") if modelled is None else modelled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 512, 256])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument("--rep-ms", type=int, default=100)
    parser.add_argument("--out", type=Path, default=machine.REPO_ROOT / "perf" / "results")
    args = parser.parse_args(argv)
    device = environment.default_device()
    can_run, why = _compat.kernels_can_run(device)
    if not can_run:
        print(f"perf.breakdown: the kernels cannot run here: {why}", file=sys.stderr)
        return 2
    meta = machine.run_metadata(device, cudnn_allow_tf32=False)
    if meta["cpu_interpreter"]:
        print(machine.CPU_BANNER, flush=True)
    path = args.out / meta["gpu_slug"] / "breakdown.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    for hidden in args.hidden:
        for batch in args.batch:
            rows = [{**meta, **row} for row in measure(hidden, batch, args.seq_len, getattr(torch, args.dtype), device, args.rep_ms)]
            for row in rows:
                print(f"H={hidden:5d} B={batch:4d} {row['variant']:<14} {row['us_per_step']:9.3f} us/step", flush=True)
            # Written shape by shape: a session cut short by its time limit keeps what it measured.
            _merge(path, pd.DataFrame(rows))
    print(f"wrote {path}")
    return 0


def _merge(path: Path, frame: pd.DataFrame) -> None:
    """Add ``frame``'s rows to the CSV at ``path``, replacing rows with the same key."""
    if path.exists():
        old = pd.read_csv(path)
        merged_keys = frame[KEY].astype(str).agg("|".join, axis=1)
        old = old[~old[KEY].astype(str).agg("|".join, axis=1).isin(set(merged_keys))]
        frame = pd.concat([old, frame], ignore_index=True)
    frame.to_csv(path, index=False)

if __name__ == "__main__":
    sys.exit(main())
