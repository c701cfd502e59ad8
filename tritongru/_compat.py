"""Differences between Triton and PyTorch versions, and facts about the running process, detected once.

The kernels are written against the Triton 3.6 language (the GPU image's version) and avoid what
later versions removed; this module holds the host-side differences.
"""

from __future__ import annotations

import torch

from .kernels.settings import INTERPRET

try:  # Linux wheels only: elsewhere (macOS, Windows) the package runs PyTorch's GRU operator
    import triton  # noqa: F401

    HAS_TRITON = True
except ImportError:
    HAS_TRITON = False


def fp32_dot_precision() -> str:
    """The ``tl.dot`` input precision for fp32 operands, following PyTorch's switch for matmuls.

    ``torch.backends.cuda.matmul.allow_tf32`` (equivalently ``torch.set_float32_matmul_precision``
    "high"/"medium") lets fp32 products run as TF32, as the cuBLAS GEMMs around the kernel do.
    Otherwise the kernel uses three TF32 products per dot ("tf32x3"), which is as accurate as fp32
    FMA on these sizes and still uses tensor cores.
    """
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "tf32x3"


def is_vmapped(tensor: torch.Tensor | None) -> bool:
    """Whether ``tensor`` is a torch.func.vmap batch (a private test, kept here: PyTorch's GRU
    operator has no batching rule, and this says when not to call it)."""
    is_batched = getattr(torch._C._functorch, "is_batchedtensor", None)
    return tensor is not None and is_batched is not None and is_batched(tensor)


def kernels_can_run(device: torch.device) -> tuple[bool, str]:
    """Whether the Triton kernels can run on tensors of ``device``, and if not, why."""
    if not HAS_TRITON:
        return False, "Triton is not installed (pip install triton; it ships Linux wheels)"
    if INTERPRET:
        if device.type == "cpu":
            return True, ""
        return False, f"TRITON_INTERPRET=1 runs kernels on CPU tensors only, got a tensor on {device}"
    if device.type != "cuda":
        return False, f"the Triton kernels need a CUDA device (or TRITON_INTERPRET=1 for CPU tensors), got {device}"
    if torch.version.hip is not None:
        return False, "the Triton kernels are written and checked for NVIDIA GPUs; this is a ROCm build of PyTorch"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        return False, (
            f"the Triton kernels need compute capability 8.0 or newer, "
            f"{torch.cuda.get_device_name(device)} has {major}.{minor}"
        )
    return True, ""
