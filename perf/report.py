"""Plots (PNG) and the markdown summary of one GPU's results."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on GPU machines or in CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from . import targets  # noqa: E402
from .measure import ELEMENTWISE_FLOPS  # noqa: E402

PLOT_MODES = ("inference", "train_fwd", "fwd_bwd")


def plot_group(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows plotted together: one layer, one direction, not a named task, and the (T, dtype)
    with the most rows, so every line of a plot varies in batch or hidden alone."""
    rows = frame[(frame["status"] == "ok") & (frame["layers"] == 1) & (frame["directions"] == 1) & (frame["task"].fillna("") == "")]
    if rows.empty:
        return rows, ""
    seq_len, dtype = rows.groupby(["seq_len", "dtype"]).size().idxmax()
    return rows[(rows["seq_len"] == seq_len) & (rows["dtype"] == dtype)], f"T={seq_len}, {dtype}, 1 layer, 1 direction"


def _lines(frame: pd.DataFrame, x: str, y: str, series: list[str], path: Path, title: str, ylabel: str, log_y: bool) -> Path | None:
    modes = [mode for mode in PLOT_MODES if mode in set(frame["mode"])]
    frame = frame.dropna(subset=[y])
    if frame.empty or not modes:
        return None
    figure, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4.2), squeeze=False)
    for axis, mode in zip(axes[0], modes):
        for key, group in frame[frame["mode"] == mode].groupby(series):
            group = group.sort_values(x)
            label = ", ".join(f"{name}={value}" for name, value in zip(series, key if isinstance(key, tuple) else (key,)))
            axis.plot(group[x], group[y], marker="o", label=label)
        axis.set_xscale("log", base=2)
        if log_y:
            axis.set_yscale("log")
        axis.set_title(mode)
        axis.set_xlabel(x)
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_plots(frame: pd.DataFrame, out_dir: Path, banner: str) -> list[Path]:
    rows, group = plot_group(frame)
    if rows.empty:
        return []
    prefix = f"{banner}\n" if banner else ""
    plots = [
        _lines(rows, "batch", "us_per_step", ["provider", "hidden"], out_dir / "latency_per_step.png",
               f"{prefix}latency per step (us), {group}", "us per step", True),
    ]
    speedups = rows[rows["provider"] == "tritongru"]
    plots += [
        _lines(speedups, "batch", "speedup_vs_cudnn", ["hidden"], out_dir / "speedup_vs_batch.png",
               f"{prefix}tritongru speedup over the faster cuDNN (eager or CUDA graph) vs batch, {group}",
               "speedup over cuDNN", False),
        _lines(speedups, "hidden", "speedup_vs_cudnn", ["batch"], out_dir / "speedup_vs_hidden.png",
               f"{prefix}tritongru speedup over the faster cuDNN (eager or CUDA graph) vs hidden, {group}",
               "speedup over cuDNN", False),
    ]
    return [plot for plot in plots if plot is not None]


def _cell(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return "" if value is None else str(value).replace("|", "/")


def markdown_table(frame: pd.DataFrame, columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in frame[columns].itertuples(index=False)]
    return "\n".join(lines)


def write_summary(rows: pd.DataFrame, meta: dict, out_dir: Path, plots: list[Path]) -> Path:
    """``SUMMARY.md`` of ``rows`` (one GPU, commit and settings): environment, targets, results,
    skips, plots."""
    lines = [f"# tritongru perf results: {meta['gpu']}", ""]
    if meta["timing_note"]:
        lines += [f"> **{meta['timing_note']}**", ""]
    fact = {key: "n/a" if value is None else value for key, value in meta.items()}
    lines += [
        f"- commit `{meta['commit']}`, written {meta['date']}",
        f"- GPU {meta['gpu']}, SMs {fact['sm_count']}, compute capability {fact['capability']}, driver {fact['driver']}",
        f"- torch {meta['torch']}, Triton {meta['triton']}, CUDA {meta['cuda']}, cuDNN {fact.get('cudnn', 'n/a')} "
        f"(bf16 nn.GRU runs in cuDNN: {fact.get('cudnn_bf16_rnn', 'n/a')}), Python {meta['python']}",
        "- `speedup_vs_cudnn`: over the faster of eager `cudnn` and `cudnn-graph` (nn.GRU captured in a CUDA graph) "
        "for the same case, named in `cudnn_baseline`; `model_us_per_step`: the cost model's step for tritongru's "
        "launch (a model figure, tritongru/cost_model.py)",
        f"- settings: {meta['settings']}",
        "- times: median (p50) of the call; `us/step` = p50 / (T x layers x directions); errors: "
        "max |x - ref| / max |ref| against the float64 reference (gradients of input, h0 and all weights)",
        f"- FLOPs per layer, direction and step: 2*B*3H*(I+H) + {ELEMENTWISE_FLOPS}*B*H forward; "
        "fwd_bwd counts 3x the forward",
        "",
        "## Targets",
        "",
        "| target | verdict | detail |",
        "|---|---|---|",
        *(f"| {target.description} | {verdict} | {detail} |" for target, verdict, detail in targets.evaluate(rows)),
        "",
    ]
    measured = rows[rows["status"] == "ok"].sort_values(["mode", "task", "dtype", "seq_len", "hidden", "batch", "provider"])
    columns = ["case_id", "provider", "p50_ms", "us_per_step", "model_us_per_step", "tflops", "speedup_vs_cudnn",
               "cudnn_baseline", "time_vs_nn_gru", "out_err", "grad_err", "peak_mem_mib", "saved_mib", "saved_vs_nn_gru",
               "timer", "config"]
    for mode, group in measured.groupby("mode", sort=False):
        # Columns no row of this run fills (cuDNN's on a CPU, nn.GRU-on-CPU ratios on a GPU) are left out.
        filled = [column for column in columns if group[column].replace("", pd.NA).notna().any()]
        lines += [f"## {mode}", "", markdown_table(group, filled), ""]
    others = rows[rows["status"] != "ok"]
    if not others.empty:
        lines += ["## Skipped and failed", "", markdown_table(others, ["case_id", "provider", "status", "note"]), ""]
    lines += breakdown_section(out_dir, meta)
    lines += ["## Plots", ""]
    lines += [f"![{plot.stem}]({plot.name})" for plot in plots] or ["(no rows to plot)"]
    if not rows["provider"].isin(["cudnn", "cudnn-graph"]).any():
        lines += ["", "No cuDNN rows in this run, so no speedup plots."]
    path = out_dir / "SUMMARY.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def breakdown_section(out_dir: Path, meta: dict) -> list[str]:
    """"Where a step's time goes": this GPU and commit's rows of ``breakdown.csv`` (written by
    ``python -m perf.breakdown`` into the same folder), microseconds per step of each variant side
    by side; nothing when there are none."""
    path = out_dir / "breakdown.csv"
    if not path.exists():
        return []
    frame = pd.read_csv(path)
    frame = frame[(frame["gpu"] == meta["gpu"]) & (frame["commit"] == meta["commit"])]
    if frame.empty:
        return []
    shape = ["dtype", "seq_len", "hidden", "batch"]
    table = frame.pivot_table(index=shape, columns="variant", values="us_per_step", sort=False).reset_index()
    variants = [variant for variant in frame["variant"].drop_duplicates() if variant in table.columns]
    return [
        "## Where a step's time goes (perf/breakdown.py)", "",
        "Microseconds per step of the forward kernel as configured (`full`, with the barrier), with one stage "
        "left out (`no-matmul`, `no-barrier`, `eager-stall-check`), and exchanging the state through ready flags "
        "(`flags`, `flags-no-wait`) where the slices are resident; a bidirectional layer's forward as one "
        "launch per direction and as one launch for both (`two-directions-*`, per step of both directions).", "",
        markdown_table(table, shape + variants), "",
    ]


def write_report(frame: pd.DataFrame, meta: dict, out_dir: Path) -> list[Path]:
    """Plots and summary of this run's GPU, commit and settings; returns the files written."""
    mine = frame[(frame["gpu"] == meta["gpu"]) & (frame["commit"] == meta["commit"]) & (frame["settings"] == meta["settings"])]
    banner = "CPU INTERPRETER TIMES - NOT GPU NUMBERS" if meta["cpu_interpreter"] else ""
    plots = write_plots(mine, out_dir, banner)
    return [*plots, write_summary(mine, meta, out_dir, plots)]
