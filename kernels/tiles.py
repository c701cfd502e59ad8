"""Tile helpers shared by the forward and backward persistent kernels: the split recurrent product.

A step's recurrent product is ``(BLOCK_B, K) @ (K, BLOCK_N)`` for each gate, with a small batch tile
(16 rows) and, in a hidden slice, a narrow ``BLOCK_N`` (16 units). Written as one 2-D ``tl.dot``,
Triton gives every warp the whole 16 x 16 output (a small M puts all warps on M, and dots that share
an operand keep them there), so each warp repeats the step: all its tensor-core instructions and all
its weight reads from shared memory.

Here the product is a rank-3 ``tl.dot`` whose batch dimension is the warps' share of the work:
``S = SPLIT_K x SPLIT_N`` parts, ``S == num_warps``, so Triton puts one part on each warp.

* ``SPLIT_K`` splits the reduction: part ``s`` holds ``BLOCK_K / SPLIT_K`` of each chunk's rows of K;
  the partial products are summed across parts (:func:`split_sum`, through shared memory).
* ``SPLIT_N`` splits the output columns: part ``s`` holds ``BLOCK_N / SPLIT_N`` of them and the
  whole reduction, so nothing is summed, but every part reads the whole state tile.

Splitting K pays where K is long and the slice narrow (hidden slices), splitting N where K is short
and the slice wide (one program holding all of W_hh); the cost model compares them
(:mod:`tritongru.cost_model`). A resident weight slice is a tuple of ``NUM_K`` chunk tiles
``(S, BLOCK_K / SPLIT_K, BLOCK_N / SPLIT_N)`` loaded once, before the time loop; the compiler places
each in shared memory and each step's dots read them from there (one tile over the whole reduction
would be held in registers and spill, checked by compiling for sm_90).

The results of a product are ``(SPLIT_N, BLOCK_B, BLOCK_N / SPLIT_N)`` tiles: the elementwise code of
both kernels works in that shape, with :func:`column_offsets` giving each element's hidden unit.
"""

import triton
import triton.language as tl

from .settings import INTERPRET

# Triton's interpreter (3.6 and 3.9 alike) computes a tl.dot of bf16 operands wrongly: a 16 x 16
# product is off by ~1e10. Widened to fp32 first, every product of two bf16 values is exact and the
# sum is the GPU's up to its order, so the bf16 kernels are checked on the CPU too. Compiled
# kernels never take this branch (a constant False).
WIDEN_BF16_DOTS: tl.constexpr = tl.constexpr(INTERPRET)


@triton.jit
def mma(a, b, acc, PRECISION: tl.constexpr, ACC: tl.constexpr):
    """``acc + a @ b`` on the tensor cores (batched for rank-3 operands), accumulated in ``ACC``."""
    if WIDEN_BF16_DOTS and a.dtype == tl.bfloat16:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, out_dtype=ACC)
    else:
        acc = tl.dot(a, b, acc, input_precision=PRECISION, out_dtype=ACC)
    return acc


@triton.jit
def split_k_offsets(c, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    """``(SPLIT_K, BLOCK_K / SPLIT_K)``: the reduction indices of chunk ``c``, part by part."""
    KS: tl.constexpr = BLOCK_K // SPLIT_K
    return c * BLOCK_K + tl.arange(0, SPLIT_K)[:, None] * KS + tl.arange(0, KS)[None, :]


@triton.jit
def column_offsets(n0, BLOCK_N: tl.constexpr, SPLIT_N: tl.constexpr):
    """``(SPLIT_N, 1, BLOCK_N / SPLIT_N)``: the columns ``n0 .. n0 + BLOCK_N`` in the product's shape."""
    NS: tl.constexpr = BLOCK_N // SPLIT_N
    return n0 + tl.arange(0, SPLIT_N)[:, None, None] * NS + tl.arange(0, NS)[None, None, :]


@triton.jit
def load_weight_chunk(
    p_w, n0, c, stride_k, stride_n, K, N,
    BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr, SPLIT_N: tl.constexpr,
):
    """Chunk ``c`` of the columns ``n0 .. n0 + BLOCK_N`` of ``w[k, n] = p_w[k * stride_k + n * stride_n]``,
    split into the warps' parts: ``(S, BLOCK_K / SPLIT_K, BLOCK_N / SPLIT_N)``."""
    KS: tl.constexpr = BLOCK_K // SPLIT_K
    NS: tl.constexpr = BLOCK_N // SPLIT_N
    part = tl.arange(0, SPLIT_K * SPLIT_N)
    offs_k = c * BLOCK_K + (part // SPLIT_N)[:, None, None] * KS + tl.arange(0, KS)[None, :, None]
    offs_n = n0 + (part % SPLIT_N)[:, None, None] * NS + tl.arange(0, NS)[None, None, :]
    mask = (offs_k < K) & (offs_n < N)
    return tl.load(p_w + offs_k * stride_k + offs_n * stride_n, mask=mask, other=0.0)


@triton.jit
def load_weight_chunks(
    p_w, n0, stride_k, stride_n, K, N,
    NUM_K: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr, SPLIT_N: tl.constexpr,
):
    """All ``NUM_K`` chunks of a weight slice, as a tuple (kept on chip by the caller's time loop)."""
    chunks = ()
    for c in tl.static_range(NUM_K):
        chunks = chunks + (load_weight_chunk(p_w, n0, c, stride_k, stride_n, K, N, BLOCK_K, BLOCK_N, SPLIT_K, SPLIT_N),)
    return chunks


@triton.jit
def load_row_chunk(p_a, offs_b, c, stride_b, B, K, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    """Chunk ``c`` of rows ``a[b, k] = p_a[b * stride_b + k]`` in the reduction's parts:
    ``(SPLIT_K, len(offs_b), BLOCK_K / SPLIT_K)``.

    These rows were written by other programs in the previous step: ``.cg`` reads them from L2, so
    the load is neither served stale from L1 nor hoisted out of the time loop.
    """
    offs_k = split_k_offsets(c, BLOCK_K, SPLIT_K)
    mask = (offs_b < B)[None, :, None] & (offs_k < K)[:, None, :]
    return tl.load(p_a + offs_b[None, :, None] * stride_b + offs_k[:, None, :], mask=mask, other=0.0, cache_modifier=".cg")


@triton.jit
def spread_rows(rows, BLOCK_B: tl.constexpr, SPLIT_N: tl.constexpr):
    """The A operand of a split product from a state chunk ``(SPLIT_K, ROWS, KS)``: its rows padded
    with zeros to a ``BLOCK_B`` tile (a dot takes at least 16), and each reduction part repeated
    for the ``SPLIT_N`` column parts that need it."""
    SK: tl.constexpr = rows.shape[0]
    ROWS: tl.constexpr = rows.shape[1]
    KS: tl.constexpr = rows.shape[2]
    if ROWS < BLOCK_B:
        # No pad in Triton: repeat the rows down the tile, then zero the repeats.
        rows = tl.reshape(tl.broadcast_to(rows[:, None, :, :], (SK, BLOCK_B // ROWS, ROWS, KS)), (SK, BLOCK_B, KS))
        rows = tl.where((tl.arange(0, BLOCK_B) < ROWS)[None, :, None], rows, 0.0)
    if SPLIT_N > 1:
        rows = tl.reshape(tl.broadcast_to(rows[:, None, :, :], (SK, SPLIT_N, BLOCK_B, KS)), (SK * SPLIT_N, BLOCK_B, KS))
    return rows


@triton.jit
def split_sum(acc, SPLIT_K: tl.constexpr, SPLIT_N: tl.constexpr, ROWS: tl.constexpr):
    """``(S, BLOCK_B, NS)`` partial products -> ``(SPLIT_N, ROWS, NS)``: the rows that hold
    sequences, summed over the reduction's parts (a trailing dimension of 2, two accumulators
    joined, is carried along: :func:`split_sum_pair`).

    The padding rows are zeros, so adding them to the real ones is exact and keeps the sum across
    warps (through shared memory) to the real rows: 1/16 of the tile at batch 1."""
    BB: tl.constexpr = acc.shape[1]
    NS: tl.constexpr = acc.shape[2]
    if SPLIT_K == 1 and ROWS == BB:
        return acc
    if len(acc.shape) == 3:
        parts = tl.reshape(acc, (SPLIT_K, SPLIT_N, BB // ROWS, ROWS, NS))
    else:
        parts = tl.reshape(acc, (SPLIT_K, SPLIT_N, BB // ROWS, ROWS, NS, 2))
    if ROWS < BB:
        parts = tl.sum(parts, axis=2)
    else:
        parts = tl.reshape(parts, parts.shape[:2] + parts.shape[3:])
    if SPLIT_K == 1:
        return tl.reshape(parts, parts.shape[1:])
    return tl.sum(parts, axis=0)


@triton.jit
def split_sum_pair(acc_a, acc_b, SPLIT_K: tl.constexpr, SPLIT_N: tl.constexpr, ROWS: tl.constexpr):
    """:func:`split_sum` of two accumulators in one reduction across warps: each of its shared-
    memory round trips (and the CTA barriers around them) serves both. Joining them puts the pair
    in one thread's registers, so neither the join nor the split moves data."""
    if SPLIT_K == 1 and ROWS == acc_a.shape[1]:
        return acc_a, acc_b  # nothing to sum: joining would only move the tiles between layouts
    return tl.split(split_sum(tl.join(acc_a, acc_b), SPLIT_K, SPLIT_N, ROWS))


@triton.jit
def load_gate_rows(p_w, j0, H, BLOCK_H: tl.constexpr, HB: tl.constexpr, S: tl.constexpr):
    """The rows ``W[g H + j0 : g H + j0 + BLOCK_H, :]`` of the three gates of ``W`` (3H, H), each
    the B operand of a product over all H columns split among ``S`` warps:
    ``(S, BLOCK_H, HB / S)`` (the columns padded to ``HB``, a power of two, with zeros)."""
    rows = H - j0  # the slice's rows that exist: fewer at the end of H
    return (
        load_weight_chunk(p_w + j0 * H, 0, 0, H, 1, rows, H, BLOCK_H, HB, 1, S),
        load_weight_chunk(p_w + (H + j0) * H, 0, 0, H, 1, rows, H, BLOCK_H, HB, 1, S),
        load_weight_chunk(p_w + (2 * H + j0) * H, 0, 0, H, 1, rows, H, BLOCK_H, HB, 1, S),
    )


@triton.jit
def gate_rows_product(a_r, a_z, a_n, w_rows, BLOCK_B: tl.constexpr, S: tl.constexpr, PRECISION: tl.constexpr,
                      ACC: tl.constexpr):
    """``[a_r, a_z, a_n] @ W[rows of the slice, :]``: the ``(ROWS, BLOCK_H)`` gate values of one slice
    through its rows of all three gates (:func:`load_gate_rows`), ``(S, ROWS, HB / S)``: a part of
    the product over all H columns, to be summed with the other slices'."""
    ROWS: tl.constexpr = a_r.shape[0]
    K: tl.constexpr = a_r.shape[1]
    acc = tl.zeros((S, BLOCK_B, w_rows[0].shape[2]), ACC)
    acc = mma(spread_rows(tl.reshape(a_r, (1, ROWS, K)), BLOCK_B, S), w_rows[0], acc, PRECISION, ACC)
    acc = mma(spread_rows(tl.reshape(a_z, (1, ROWS, K)), BLOCK_B, S), w_rows[1], acc, PRECISION, ACC)
    acc = mma(spread_rows(tl.reshape(a_n, (1, ROWS, K)), BLOCK_B, S), w_rows[2], acc, PRECISION, ACC)
    return split_sum(acc, 1, S, ROWS)


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
