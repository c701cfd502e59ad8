"""Every environment variable tritongru reads, read here and nowhere else (the README's table lists
:data:`VARIABLES`). It lives with the kernels because they read some of them and import nothing
from the package above them."""

from __future__ import annotations

import os
from pathlib import Path

INTERPRET_ENV = "TRITON_INTERPRET"
BARRIER_TIMEOUT_ENV = "TRITONGRU_BARRIER_TIMEOUT_MS"
STALL_CHECK_ENV = "TRITONGRU_STALL_CHECK"
TUNING_FILE_ENV = "TRITONGRU_TUNING_FILE"
CACHE_DIR_ENV = "TRITONGRU_CACHE_DIR"
AUTOTUNE_ENV = "TRITONGRU_AUTOTUNE"
SOURCE_REVISION_ENV = "TRITONGRU_SOURCE_REVISION"

VARIABLES = (INTERPRET_ENV, BARRIER_TIMEOUT_ENV, STALL_CHECK_ENV, TUNING_FILE_ENV, CACHE_DIR_ENV, AUTOTUNE_ENV,
             SOURCE_REVISION_ENV)
STALL_CHECK_MODES = ("async", "eager", "0")

# @triton.jit reads TRITON_INTERPRET when a kernel is decorated: it must be set before import.
INTERPRET = os.environ.get(INTERPRET_ENV, "0") == "1"


def barrier_timeout_us() -> int:
    """How long one wait may spin before the launch fails, in microseconds: an int32 kernel
    argument that the JIT does not specialise, so changing it recompiles nothing."""
    text = os.environ.get(BARRIER_TIMEOUT_ENV, "2000")
    timeout = int(float(text) * 1e3)
    if not 0 < timeout < 2**31:
        raise ValueError(f"{BARRIER_TIMEOUT_ENV} must lie in (0, 2147483] milliseconds, got {text}")
    return timeout


def stall_check_mode() -> str:
    mode = os.environ.get(STALL_CHECK_ENV, "async")
    if mode == "1":
        return "async"
    if mode not in STALL_CHECK_MODES:
        raise ValueError(f"{STALL_CHECK_ENV} must be one of {STALL_CHECK_MODES}, got {mode!r}")
    return mode


def tuning_file() -> Path:
    """The user's tuning file: ``$TRITONGRU_TUNING_FILE``, else ``$TRITONGRU_CACHE_DIR/tuning.json``,
    else ``tritongru/tuning.json`` under ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    explicit = os.environ.get(TUNING_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache_dir = os.environ.get(CACHE_DIR_ENV)
    if cache_dir:
        return Path(cache_dir).expanduser() / "tuning.json"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tritongru" / "tuning.json"


def autotune_enabled() -> bool:
    return os.environ.get(AUTOTUNE_ENV, "0") == "1"


def source_revision() -> str | None:
    return os.environ.get(SOURCE_REVISION_ENV) or None
