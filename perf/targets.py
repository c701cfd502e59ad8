"""The performance targets, as data, and their check against measured rows.

The GPU targets are for an H200 at T=1024, bf16, one layer, one direction, tritongru vs cuDNN
(``torch.nn.GRU``). The CPU targets hold tritongru.GRU's CPU path to nn.GRU on the same CPU, in
the same run, on every case of the ``cpu`` sweep. See ``perf/NOTES.md``.
"""

from __future__ import annotations

import dataclasses
import operator

import pandas as pd


@dataclasses.dataclass(frozen=True)
class Target:
    description: str
    modes: tuple[str, ...]
    hiddens: tuple[int, ...]
    batches: tuple[int, ...]
    metric: str  # a column of the results
    op: str  # ">=" or "<"
    bound: float


TARGET_GPU = "H200"
TARGETS = (
    Target("inference >= 2x cuDNN, hidden 256/512/1024, batch 1/16/64", ("inference",), (256, 512, 1024), (1, 16, 64), "speedup_vs_cudnn", ">=", 2.0),
    Target("fwd+bwd >= 1.5x cuDNN, hidden 256/512/1024, batch 1/16/64", ("fwd_bwd",), (256, 512, 1024), (1, 16, 64), "speedup_vs_cudnn", ">=", 1.5),
    # "On par" read as within 10% of cuDNN.
    Target("hidden 64/128 on par with cuDNN (>= 0.9x)", ("inference", "fwd_bwd"), (64, 128), (1, 16, 64), "speedup_vs_cudnn", ">=", 0.9),
    Target("batch 256 >= 0.8x cuDNN", ("inference", "fwd_bwd"), (256, 512, 1024), (256,), "speedup_vs_cudnn", ">=", 0.8),
    Target("per-step latency < 2 us at batch 1, hidden 1024 (inference)", ("inference",), (1024,), (1,), "us_per_step", "<", 2.0),
)
_OPS = {">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclasses.dataclass(frozen=True)
class CPUTarget:
    description: str
    modes: tuple[str, ...]
    metric: str  # a ratio to nn.GRU's (perf/store.py)
    bound: float


CPU_TARGETS = (
    CPUTarget("CPU: inference and fwd+bwd within 1.2x of nn.GRU's time", ("inference", "fwd_bwd"), "time_vs_nn_gru", 1.2),
    CPUTarget("CPU: training memory (saved for the backward) within 1.5x of nn.GRU's", ("fwd_bwd",), "saved_vs_nn_gru", 1.5),
)


def evaluate(frame: pd.DataFrame) -> list[tuple[Target | CPUTarget, str, str]]:
    """``(target, verdict, detail)`` for each target: verdict ``met``, ``NOT met``, ``not measured``
    or ``not applicable`` (rows from another GPU than the targets', or no CPU rows)."""
    return _gpu_verdicts(frame) + _cpu_verdicts(frame)


def _verdict(values: pd.Series, op: str, bound: float, metric: str) -> tuple[str, str]:
    if values.empty:
        return "not measured", "no matching rows"
    worst = values.min() if op == ">=" else values.max()
    met = bool(_OPS[op](values, bound).all())
    return "met" if met else "NOT met", f"worst {metric} {worst:.3g} over {len(values)} rows"


def _cpu_verdicts(frame: pd.DataFrame) -> list[tuple[CPUTarget, str, str]]:
    rows = frame[(frame["provider"] == "tritongru-cpu") & (frame["status"] == "ok")]
    verdicts = []
    for target in CPU_TARGETS:
        if rows.empty:
            verdicts.append((target, "not applicable", "no CPU-path rows in these results"))
            continue
        values = pd.to_numeric(rows[rows["mode"].isin(target.modes)][target.metric]).dropna()
        verdicts.append((target, *_verdict(values, "<=", target.bound, target.metric)))
    return verdicts


def _gpu_verdicts(frame: pd.DataFrame) -> list[tuple[Target, str, str]]:
    rows = frame[
        (frame["provider"] == "tritongru") & (frame["status"] == "ok") & (frame["dtype"] == "bfloat16")
        & (frame["seq_len"] == 1024) & (frame["layers"] == 1) & (frame["directions"] == 1)
        & (frame["task"].fillna("") == "")
    ]
    verdicts = []
    for target in TARGETS:
        if not frame["gpu"].astype(str).str.contains(TARGET_GPU).any():
            verdicts.append((target, "not applicable", f"the targets are for an {TARGET_GPU}"))
            continue
        match = rows[rows["mode"].isin(target.modes) & rows["hidden"].isin(target.hiddens) & rows["batch"].isin(target.batches)]
        values = pd.to_numeric(match[target.metric]).dropna()
        verdicts.append((target, *_verdict(values, target.op, target.bound, target.metric)))
    return verdicts
