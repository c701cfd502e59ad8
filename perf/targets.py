"""The performance targets, as data, and their check against measured rows.

All targets are for an H200 at T=1024, bf16, one layer, one direction, tritongru vs cuDNN
(``torch.nn.GRU``). See ``perf/NOTES.md``.
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
_OPS = {">=": operator.ge, "<": operator.lt}


def evaluate(frame: pd.DataFrame) -> list[tuple[Target, str, str]]:
    """``(target, verdict, detail)`` for each target: verdict ``met``, ``NOT met``, ``not measured``
    or ``not applicable`` (rows from another GPU than the targets')."""
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
        if values.empty:
            verdicts.append((target, "not measured", "no matching rows"))
            continue
        worst = values.min() if target.op == ">=" else values.max()
        met = bool(_OPS[target.op](values, target.bound).all())
        verdicts.append((target, "met" if met else "NOT met", f"worst {target.metric} {worst:.3g} over {len(values)} rows"))
    return verdicts
