"""Where a forward step's time goes: the recurrence kernel timed whole and with one stage left out.

For each shape, ``full`` is the persistent forward kernel as the dispatcher configures it;
``no-matmul`` leaves out the recurrent product (and the read of ``h_{t-1}`` that feeds it);
``no-barrier`` leaves out the grid barrier (only matters for sliced configurations);
``no-stall-check`` runs the full kernel without reading the barrier's stall word back (one host
sync per barrier launch). The ablated kernels compute wrong results by design: timing only. Per-step microseconds of each,
and the differences (what a stage costs), go to ``perf/results/<gpu>/breakdown.csv``.

    python -m perf.breakdown                 # the target shapes (bf16, T=1024, B 1/16/64, H 256-1024)
    python -m perf.breakdown --hidden 1024 --batch 1 --seq-len 256
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from unittest import mock

import pandas as pd
import torch

from tritongru import _compat, environment
from tritongru.dispatch import Problem, choose_config
from tritongru.kernels import gru_forward

from . import machine
from .measure import time_call

# variant -> (kernel ablation, TRITONGRU_STALL_CHECK)
VARIANTS = {"full": ("", "1"), "no-matmul": ("matmul", "1"), "no-barrier": ("barrier", "1"), "no-stall-check": ("", "0")}
STALL_CHECK_ENV = "TRITONGRU_STALL_CHECK"
KEY = ["gpu", "commit", "dtype", "seq_len", "batch", "hidden", "variant"]


def measure(hidden: int, batch: int, seq_len: int, dtype: torch.dtype, device: torch.device, rep_ms: int) -> list[dict]:
    """One row per variant for one shape."""
    torch.manual_seed(0)
    gx = torch.randn(seq_len, batch, 3 * hidden, device=device, dtype=dtype)
    w_hh = torch.randn(3 * hidden, hidden, device=device, dtype=dtype) / hidden**0.5
    b_hn = torch.randn(hidden, device=device, dtype=dtype)
    h0 = torch.randn(batch, hidden, device=device, dtype=dtype)
    config = choose_config(Problem(hidden, batch, dtype, False), device)
    precision = _compat.fp32_dot_precision()
    rows = []
    for variant, (ablate, stall_check) in VARIANTS.items():
        def run(ablate=ablate):
            return gru_forward(gx, w_hh, b_hn, h0, None, False, False, config, precision, ablate=ablate)

        with mock.patch.dict(os.environ, {STALL_CHECK_ENV: stall_check}):
            (p50, p20, p80), timer = time_call(run, device, repeats=3, warmup_ms=25, rep_ms=rep_ms, graphable=False)
        rows.append(dict(
            dtype=str(dtype).removeprefix("torch."), seq_len=seq_len, batch=batch, hidden=hidden, variant=variant,
            p50_ms=p50, p20_ms=p20, p80_ms=p80, us_per_step=p50 * 1e3 / seq_len, timer=timer,
            config=str(config),
        ))
    full = rows[0]["us_per_step"]
    for row in rows:
        row["stage_us_per_step"] = full - row["us_per_step"] if row["variant"] != "full" else float("nan")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.breakdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 512, 1024])
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
    rows = []
    for hidden in args.hidden:
        for batch in args.batch:
            for row in measure(hidden, batch, args.seq_len, getattr(torch, args.dtype), device, args.rep_ms):
                rows.append({**meta, **row})
                print(f"H={hidden:5d} B={batch:4d} {row['variant']:<11} {row['us_per_step']:9.3f} us/step", flush=True)
    path = args.out / meta["gpu_slug"] / "breakdown.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    if path.exists():
        old = pd.read_csv(path)
        merged_keys = frame[KEY].astype(str).agg("|".join, axis=1)
        old = old[~old[KEY].astype(str).agg("|".join, axis=1).isin(set(merged_keys))]
        frame = pd.concat([old, frame], ignore_index=True)
    frame.to_csv(path, index=False)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
