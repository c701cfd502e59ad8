"""What the kernels need to know about the running Triton, detected once at import."""

from __future__ import annotations

import os

# @triton.jit reads TRITON_INTERPRET when a kernel is decorated: it must be set before import.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
