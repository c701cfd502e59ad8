"""Result files: one long-format CSV per run, merged into ``<out>/<gpu-slug>/results.csv``.

Long format: one row per (case, provider). A merge replaces only rows with the same key
(:data:`KEY_COLUMNS`) and keeps everything else, other GPUs' and other commits' rows included.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .sweeps import CPU_PROVIDERS, CUDNN_PROVIDERS

KEY_COLUMNS = ["gpu", "commit", "settings", "case_id", "provider"]
# Rows that need no new measurement on resume; errors are measured again.
DONE_STATUSES = ("ok", "skipped")
COLUMNS = [
    *KEY_COLUMNS, "status", "note",
    "task", "mode", "dtype", "batch", "hidden", "input_size", "seq_len", "layers", "directions", "returns",
    "p50_ms", "p20_ms", "p80_ms", "us_per_step", "tflops", "speedup_vs_cudnn", "cudnn_baseline", "out_err", "grad_err",
    "peak_mem_mib", "saved_mib", "time_vs_nn_gru", "saved_vs_nn_gru", "timer", "config", "config_source", "model_us_per_step",
    "gpu_slug", "sm_count", "capability", "driver", "cuda", "cudnn", "cudnn_bf16_rnn", "torch", "triton", "python",
    "date", "cpu_interpreter", "timing_note",
]

# Read back as text: a commit of digits only, or a capability "9.0", must not turn into numbers.
TEXT_COLUMNS = [*KEY_COLUMNS, "status", "note", "task", "mode", "dtype", "returns", "timer", "config", "config_source",
                "cudnn_baseline", "gpu_slug", "capability", "driver", "cuda", "cudnn", "torch", "triton", "python", "date",
                "timing_note"]


def load(path: Path) -> pd.DataFrame:
    """The rows at ``path``, or an empty frame with the standard columns."""
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path, dtype={column: str for column in TEXT_COLUMNS}, keep_default_na=False, na_values=[""])


def done_cases(frame: pd.DataFrame, gpu: str, commit: str, settings: str) -> set[tuple[str, str]]:
    """``(case_id, provider)`` pairs already measured (or skipped) for this GPU, commit and settings."""
    mine = frame[(frame["gpu"] == gpu) & (frame["commit"] == commit) & (frame["settings"] == settings)]
    mine = mine[mine["status"].isin(DONE_STATUSES)]
    return set(zip(mine["case_id"], mine["provider"]))


def with_speedup(frame: pd.DataFrame) -> pd.DataFrame:
    """``speedup_vs_cudnn`` = the faster cuDNN's p50 / this row's p50 within each (GPU, commit,
    settings, case): eager ``cudnn`` or ``cudnn-graph``, whichever was faster there, named in
    ``cudnn_baseline``. On a CPU, ``time_vs_nn_gru`` and ``saved_vs_nn_gru``: this row's p50 and
    memory saved for the backward over nn.GRU's on the same CPU, in the same run."""
    frame = frame.copy()
    group = ["gpu", "commit", "settings", "case_id"]
    ok = frame[frame["status"] == "ok"]
    cudnn = ok[ok["provider"].isin(CUDNN_PROVIDERS)][[*group, "provider", "p50_ms"]]
    cudnn = cudnn.assign(p50_ms=pd.to_numeric(cudnn["p50_ms"])).sort_values("p50_ms").drop_duplicates(group, keep="first")
    cudnn = cudnn.rename(columns={"p50_ms": "_cudnn_p50", "provider": "_baseline"})
    nn_gru = ok[ok["provider"] == CPU_PROVIDERS[1]].reindex(columns=[*group, "p50_ms", "saved_mib"])
    nn_gru = nn_gru.drop_duplicates(group).rename(columns={"p50_ms": "_nn_p50", "saved_mib": "_nn_saved"})
    derived = ["speedup_vs_cudnn", "cudnn_baseline", "time_vs_nn_gru", "saved_vs_nn_gru"]
    frame = frame.drop(columns=derived, errors="ignore").merge(cudnn, on=group, how="left").merge(nn_gru, on=group, how="left")
    frame["speedup_vs_cudnn"] = pd.to_numeric(frame["_cudnn_p50"]) / pd.to_numeric(frame["p50_ms"])
    frame["cudnn_baseline"] = frame["_baseline"]
    frame["time_vs_nn_gru"] = pd.to_numeric(frame["p50_ms"]) / pd.to_numeric(frame["_nn_p50"])
    frame["saved_vs_nn_gru"] = pd.to_numeric(frame["saved_mib"]) / pd.to_numeric(frame["_nn_saved"])
    return frame.drop(columns=["_cudnn_p50", "_baseline", "_nn_p50", "_nn_saved"])


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    extra = [column for column in frame.columns if column not in COLUMNS]
    return frame.reindex(columns=COLUMNS + extra)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically (a temporary file, then a rename): an interrupted run never truncates results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        _ordered(frame).to_csv(temporary, index=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_run(path: Path, rows: Iterable[dict]) -> None:
    """This run's own CSV (every row it measured), next to the merged results."""
    write_csv(with_speedup(_ordered(pd.DataFrame(list(rows)))), path)


def merge(path: Path, rows: Iterable[dict]) -> pd.DataFrame:
    """Merge ``rows`` into the CSV at ``path`` (replacing rows with the same key) and return it all."""
    new = pd.DataFrame(list(rows))
    existing = load(path)
    if not new.empty and not existing.empty:
        replaced = existing.set_index(KEY_COLUMNS).index.isin(new.set_index(KEY_COLUMNS).index)
        existing = existing[~replaced]
    frames = [frame for frame in (existing, new) if not frame.empty]
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    merged = with_speedup(_ordered(merged))
    write_csv(merged, path)
    return merged
