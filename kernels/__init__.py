"""Triton kernels of tritongru: the persistent GRU forward (of a layer, or of a whole stack) and backward, and
their launchers."""

from .gru_backward import gru_backward, gru_bwd_persistent_kernel, gru_stack_backward
from .gru_forward import gru_forward, gru_fwd_persistent_kernel, gru_stack_forward
from .launch import PersistentConfig
from .limits import DeviceLimits, arch_limits, device_limits

__all__ = [
    "DeviceLimits",
    "PersistentConfig",
    "arch_limits",
    "device_limits",
    "gru_backward",
    "gru_bwd_persistent_kernel",
    "gru_stack_backward",
    "gru_forward",
    "gru_fwd_persistent_kernel",
    "gru_stack_forward",
]
