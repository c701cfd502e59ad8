"""What every row of a run records about where and on what source it was measured."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import subprocess
from pathlib import Path

import torch

from tritongru import environment
from tritongru.kernels import settings

REPO_ROOT = Path(__file__).resolve().parents[1]
CPU_INTERPRETER = "cpu-interpreter"
CPU_BANNER = (
    "CPU INTERPRETER TIMES (TRITON_INTERPRET=1), NOT GPU NUMBERS: they time the Triton interpreter "
    "running on NumPy and say nothing about performance on a GPU."
)
CPU_PATH_BANNER = (
    "CPU TIMES: tritongru.GRU on CPU tensors (PyTorch's GRU operator) beside torch.nn.GRU on this CPU, "
    "in one run; NOT GPU NUMBERS."
)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True).stdout




def source_revision() -> str:
    """The checkout's commit; with uncommitted changes to tracked files, ``<commit>+dirty.<hash>``
    where the hash is of the diff, so that resuming never mixes rows of different code.

    ``$TRITONGRU_SOURCE_REVISION`` overrides it, for copies of the tree without ``.git`` (a GPU
    machine that receives the working tree only).
    """
    if settings.source_revision():
        return settings.source_revision()
    try:
        commit = _git("rev-parse", "--short=12", "HEAD").strip()
        diff = _git("diff", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not diff:
        return commit
    return f"{commit}+dirty.{hashlib.sha1(diff.encode()).hexdigest()[:8]}"


def cudnn_runs_bf16_rnn(device: torch.device) -> bool | None:
    """Whether this PyTorch sends a bf16 ``nn.GRU`` to cuDNN (``aten::_cudnn_rnn``) rather than to
    its own per-step path, seen in the operators one small call records; None off CUDA. PyTorch
    gates bf16 RNNs on the cuDNN version, so a bf16 comparison means something else without it."""
    if device.type != "cuda" or not torch.backends.cudnn.is_available():
        return None
    gru = torch.nn.GRU(8, 8, device=device, dtype=torch.bfloat16)
    x = torch.randn(2, 1, 8, device=device, dtype=torch.bfloat16)
    with torch.no_grad(), torch.autograd.profiler.profile() as profile:
        gru(x)
    return any("cudnn_rnn" in event.name for event in profile.function_events)


def run_metadata(device: torch.device, cudnn_allow_tf32: bool, times_kernels: bool = True) -> dict:
    """Columns shared by every row of this run; ``times_kernels``: False for a run that times
    only PyTorch code (the CPU path), which the interpreter, if set, does not touch."""
    facts = environment.describe(device)
    interpreter = device.type == "cpu" and facts["interpreter"] and times_kernels
    gpu = facts["gpu"] or (CPU_INTERPRETER if interpreter else f"cpu {platform.machine()} {os.cpu_count()} cores")
    return {
        "gpu": gpu,
        "gpu_slug": environment.slug(gpu),
        "sm_count": facts["sm_count"],
        "capability": facts["capability"],
        "driver": facts["driver"],
        "cuda": facts["cuda"],
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "cudnn_bf16_rnn": cudnn_runs_bf16_rnn(device),
        "torch": facts["torch"],
        "triton": facts["triton"],
        "python": facts["python"],
        "commit": source_revision(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_interpreter": interpreter,
        "timing_note": CPU_BANNER if interpreter else CPU_PATH_BANNER if device.type == "cpu" else "",
        # Settings that change what a provider computes: part of the key a result is resumed under.
        "settings": (
            f"cudnn.allow_tf32={int(cudnn_allow_tf32)},"
            f"matmul.allow_tf32={int(torch.backends.cuda.matmul.allow_tf32)}"
        ),
    }
