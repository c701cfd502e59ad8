"""Tile helpers shared by the forward and backward persistent kernels.

The recurrent product is a loop over ``NUM_K`` chunks of ``BLOCK_K`` along the reduction dimension,
unrolled at compile time. A resident weight slice is a tuple of ``NUM_K`` chunk tiles loaded once,
before the time loop; the compiler places each in shared memory and each step's dots read them
from there. One tile over the whole reduction dimension would instead be held in registers around
the loop and spill at any useful size (checked by compiling for sm_90).
"""

import triton
import triton.language as tl


@triton.jit
def load_weight_chunk(p_w, offs_n, c, stride_k, stride_n, K, N, BLOCK_K: tl.constexpr):
    """Chunk ``c`` of a weight matrix ``w[k, n] = p_w[k * stride_k + n * stride_n]``: ``(BLOCK_K, len(offs_n))``."""
    offs_k = c * BLOCK_K + tl.arange(0, BLOCK_K)
    mask = (offs_k < K)[:, None] & (offs_n < N)[None, :]
    return tl.load(p_w + offs_k[:, None] * stride_k + offs_n[None, :] * stride_n, mask=mask, other=0.0)


@triton.jit
def load_weight_chunks(p_w, offs_n, stride_k, stride_n, K, N, NUM_K: tl.constexpr, BLOCK_K: tl.constexpr):
    """All ``NUM_K`` chunks of a weight slice, as a tuple (kept on chip by the caller's time loop)."""
    chunks = ()
    for c in tl.static_range(NUM_K):
        chunks = chunks + (load_weight_chunk(p_w, offs_n, c, stride_k, stride_n, K, N, BLOCK_K),)
    return chunks


@triton.jit
def load_row_chunk(p_a, offs_b, c, stride_b, B, K, BLOCK_K: tl.constexpr):
    """Chunk ``c`` of rows ``a[b, k] = p_a[b * stride_b + k]``: ``(len(offs_b), BLOCK_K)``.

    These rows were written by other programs in the previous step: ``.cg`` reads them from L2, so
    the load is neither served stale from L1 nor hoisted out of the time loop.
    """
    offs_k = c * BLOCK_K + tl.arange(0, BLOCK_K)
    mask = (offs_b < B)[:, None] & (offs_k < K)[None, :]
    return tl.load(p_a + offs_b[:, None] * stride_b + offs_k[None, :], mask=mask, other=0.0, cache_modifier=".cg")


@triton.jit
def row_time(p_len, offs_b, mask_b, step, T, reverse, USE_LENGTHS: tl.constexpr):
    """Time index each row reads and writes at ``step``, and whether the row is still running.

    A row of length L runs steps ``0 .. L-1``; in ``reverse`` (a runtime flag: the two directions of
    one launch share the code) it starts at its own last element, ``t = L - 1 - step``. Once a row
    has finished, it is mapped to ``t = step``, a padded position (``step >= L``), where outputs and
    input gradients are written as zeros.
    """
    if USE_LENGTHS:
        length = tl.load(p_len + offs_b, mask=mask_b, other=0)
    else:
        length = tl.full(offs_b.shape, 0, tl.int32) + T
    valid = (step < length) & mask_b
    t = tl.where(valid & reverse, length - 1 - step, step)
    return t.to(tl.int64), valid


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    # No tl.tanh in Triton, and libdevice is unavailable in the interpreter.
    return 2.0 * sigmoid(2.0 * x) - 1.0
