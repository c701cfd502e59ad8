"""Facts about this machine and its software, for ``tritongru info`` and the rows of the perf suite."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import numpy
import torch
import triton

from . import __version__, _compat


def default_device() -> torch.device:
    """Where the kernels run here: the GPU, or the CPU under ``TRITON_INTERPRET=1`` (or without one)."""
    if _compat.INTERPRET or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def source_commit() -> str:
    """The package checkout's commit (12 hex digits), or ``"unknown"`` outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=20,
                                cwd=Path(__file__).resolve().parents[1], check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def slug(text: str) -> str:
    """A folder-safe lower-case name: ``"NVIDIA H200"`` -> ``"nvidia-h200"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def driver_version() -> str:
    """The NVIDIA driver's version (NVML, else nvidia-smi), or ``"unknown"``."""
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # noqa: BLE001 - NVML is optional and fails in many ways; fall through to nvidia-smi
        pass
    if shutil.which("nvidia-smi") is None:
        return "unknown"
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else "unknown"


def describe(device: torch.device) -> dict:
    """Versions, and the GPU's name, SM count, compute capability and memory when ``device`` is one."""
    facts = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "numpy": numpy.__version__,
        "tritongru": __version__,
        "cuda": torch.version.cuda or "none",
        "interpreter": _compat.INTERPRET,
        "device": str(device),
        "gpu": None,
        "sm_count": None,
        "capability": None,
        "shared_per_block_optin": None,
        "memory_gib": None,
        "driver": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            gpu=props.name,
            sm_count=props.multi_processor_count,
            capability=f"{props.major}.{props.minor}",
            shared_per_block_optin=getattr(props, "shared_memory_per_block_optin", None),
            memory_gib=round(props.total_memory / 2**30, 1),
            driver=driver_version(),
        )
    return facts
