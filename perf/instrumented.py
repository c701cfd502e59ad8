"""Timing-only twins of the production forward kernel, with one stage of a step left out.

The production kernels carry no timing switches. To see what a stage costs, ``perf.breakdown``
times the kernel whole and a twin built here from the same source with one of the kernel's helpers
replaced: the kernel's code object compiled against globals where that helper's name means a
stand-in that skips the stage. Everything else (tiling, loads, stores, the time loop) is the
production code. The twins compute wrong results by design.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import types

import triton
import triton.language as tl

from tritongru.kernels.exchange import _poll
from tritongru.kernels.launch import Launch


@triton.jit
def _no_product(b_h, w_r, w_z, w_n, acc_r, acc_z, acc_n, PRECISION: tl.constexpr, ACC: tl.constexpr):
    """In place of ``gate_dots``: the accumulators unchanged (the state load feeding them goes too)."""
    return acc_r, acc_z, acc_n


@triton.jit
def _no_grid_barrier(p_sync, num_programs, timeout_us, ENABLED: tl.constexpr):
    """In place of ``grid_barrier``: only the CTA barrier that orders a program's own accesses."""
    tl.debug_barrier()


@triton.jit
def _one_poll(p_x, offs_b, stride_b, B, K, tag, p_error, timeout_us,
              NUM_K: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    """In place of ``wait_tagged_chunks``: one read of the words, whatever their tags."""
    chunks, _ = _poll(p_x, offs_b, stride_b, B, K, tag, NUM_K, BLOCK_K, SPLIT_K)
    return chunks


# What each twin leaves out: the helper of the forward kernel it replaces, and with what.
STAGES = {
    "matmul": ("gate_dots", _no_product),
    "barrier": ("grid_barrier", _no_grid_barrier),
    "wait": ("wait_tagged_chunks", _one_poll),
}


@functools.lru_cache(maxsize=None)
def forward_without(stage: str):
    """The forward kernel with ``stage`` (a key of :data:`STAGES`) left out."""
    name, stand_in = STAGES[stage]
    # The module, not the launcher of the same name that tritongru.kernels exports.
    kernel = importlib.import_module("tritongru.kernels.gru_forward").gru_fwd_persistent_kernel
    fn = kernel.fn
    clone = types.FunctionType(fn.__code__, {**fn.__globals__, name: stand_in}, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__qualname__, clone.__module__, clone.__doc__ = fn.__qualname__, fn.__module__, fn.__doc__
    # The interpreter's kernels keep no specialisation settings: it specialises nothing.
    return triton.jit(clone, do_not_specialize=getattr(kernel, "do_not_specialize", None))


def without(launch: Launch, stage: str) -> Launch:
    """``launch`` running the twin that leaves ``stage`` out."""
    return dataclasses.replace(launch, kernel=forward_without(stage))
