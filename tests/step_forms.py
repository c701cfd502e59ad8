"""Two forms of one GRU step's recurrent product, compiled by ``test_compiled_step.py`` to check
what the SASS and TTGIR readers find in them.

``three_gate_dots_kernel`` is the form the persistent kernels had before their product was split
among the warps: three 2-D dots sharing the state operand, a 16 x 16 output each. With 8 warps
Triton puts all of them on M, so every warp computes the same tiles (replication 8). It is kept
here as a fixture of the replication detector, not in the package. ``split_dots_kernel`` is the
package's form (``kernels/tiles.py``): a rank-3 dot with one part of the reduction per warp.
"""

import triton
import triton.language as tl

from tritongru.kernels.tiles import load_weight_chunk, split_sum


@triton.jit
def three_gate_dots_kernel(p_h, p_w, p_out, T, K: tl.constexpr, N: tl.constexpr):
    offs_b = tl.arange(0, 16)
    offs_k = tl.arange(0, K)
    offs_n = tl.arange(0, N)
    w_r = tl.load(p_w + offs_k[:, None] * N + offs_n[None, :])
    w_z = tl.load(p_w + K * N + offs_k[:, None] * N + offs_n[None, :])
    w_n = tl.load(p_w + 2 * K * N + offs_k[:, None] * N + offs_n[None, :])
    for step in range(T):
        b_h = tl.load(p_h + step * 16 * K + offs_b[:, None] * K + offs_k[None, :])
        acc = tl.dot(b_h, w_r) + tl.dot(b_h, w_z) + tl.dot(b_h, w_n)
        tl.store(p_out + step * 16 * N + offs_b[:, None] * N + offs_n[None, :], acc)


@triton.jit
def split_dots_kernel(p_h, p_w, p_out, T, K: tl.constexpr, N: tl.constexpr, SPLIT_K: tl.constexpr):
    KS: tl.constexpr = K // SPLIT_K
    offs_b = tl.arange(0, 16)
    offs_n = tl.arange(0, N)
    w = load_weight_chunk(p_w, 0, 0, N, 1, K, N, K, N, SPLIT_K, 1)
    offs_k = tl.arange(0, SPLIT_K)[:, None] * KS + tl.arange(0, KS)[None, :]
    for step in range(T):
        b_h = tl.load(p_h + step * 16 * K + offs_b[None, :, None] * K + offs_k[:, None, :])
        acc = split_sum(tl.dot(b_h, w), SPLIT_K, 1, 16)
        tl.store(p_out + step * 16 * N + offs_b[None, :, None] * N + offs_n[None, None, :], acc)
