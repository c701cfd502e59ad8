"""Tile helpers shared by the forward and backward persistent kernels.

The recurrent product is computed with the K (reduction) dimension split into ``NUM_K`` chunks of
``BLOCK_K`` and laid out as a batch dimension of a 3-D ``tl.dot``: operands of shape
``(NUM_K, BLOCK_B, BLOCK_K) @ (NUM_K, BLOCK_K, BLOCK_N)``, then a sum over the chunks. A single 2-D
dot over the whole hidden size keeps a ``BLOCK_B x H`` operand live at once and spills at large H;
the chunked form keeps every dot small while the whole weight slice is still one tensor, loaded
once before the time loop and left in shared memory by the compiler.
"""

import triton
import triton.language as tl


@triton.jit
def load_weight_chunks(p_w, offs_n, stride_k, stride_n, K, N, NUM_K: tl.constexpr, BLOCK_K: tl.constexpr):
    """Load ``w[k, n] = p_w[k * stride_k + n * stride_n]`` as ``(NUM_K, BLOCK_K, len(offs_n))``."""
    offs_k = tl.arange(0, NUM_K)[:, None, None] * BLOCK_K + tl.arange(0, BLOCK_K)[None, :, None]
    offs_n = offs_n[None, None, :]
    mask = (offs_k < K) & (offs_n < N)
    return tl.load(p_w + offs_k * stride_k + offs_n * stride_n, mask=mask, other=0.0)


@triton.jit
def load_row_chunks(p_a, offs_b, stride_b, B, K, NUM_K: tl.constexpr, BLOCK_K: tl.constexpr):
    """Load rows ``a[b, k] = p_a[b * stride_b + k]`` as ``(NUM_K, len(offs_b), BLOCK_K)``.

    These rows were written by other programs in the previous step: ``.cg`` reads them from L2, so
    the load is neither served stale from L1 nor hoisted out of the time loop.
    """
    offs_k = tl.arange(0, NUM_K)[:, None, None] * BLOCK_K + tl.arange(0, BLOCK_K)[None, None, :]
    offs_b = offs_b[None, :, None]
    mask = (offs_b < B) & (offs_k < K)
    return tl.load(p_a + offs_b * stride_b + offs_k, mask=mask, other=0.0, cache_modifier=".cg")


@triton.jit
def chunked_dot(b_a, b_w, PRECISION: tl.constexpr, ACC: tl.constexpr):
    """``sum_k a[:, k] w[k, :]`` over K chunks, accumulated in ``ACC``."""
    return tl.sum(tl.dot(b_a, b_w, input_precision=PRECISION, out_dtype=ACC), axis=0)


@triton.jit
def row_time(p_len, offs_b, mask_b, step, T, REVERSE: tl.constexpr, USE_LENGTHS: tl.constexpr):
    """Time index each row reads and writes at ``step``, and whether the row is still running.

    A row of length L runs steps ``0 .. L-1``; the reverse direction starts at its own last element,
    ``t = L - 1 - step``. Once a row has finished, it is mapped to ``t = step``, a padded position
    (``step >= L``), where outputs and input gradients are written as zeros.
    """
    if USE_LENGTHS:
        length = tl.load(p_len + offs_b, mask=mask_b, other=0)
    else:
        length = tl.full(offs_b.shape, 0, tl.int32) + T
    valid = (step < length) & mask_b
    if REVERSE:
        t = tl.where(valid, length - 1 - step, step)
    else:
        t = tl.full(offs_b.shape, 0, tl.int32) + step
    return t.to(tl.int64), valid


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    # No tl.tanh in Triton, and libdevice is unavailable in the interpreter.
    return 2.0 * sigmoid(2.0 * x) - 1.0
