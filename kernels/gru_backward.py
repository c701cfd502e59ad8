"""The persistent GRU backward: one launch runs the whole sequence of one layer in reverse time, for
one direction or both (``num_dirs`` groups of programs, as in the forward), or of every layer of a
unidirectional stack (``STACK``: the groups are layers, the top one leading; a layer's dy at time t
is the layer above's dgx for t through that layer's W_ih, read once the layer above has released it).

Per step and row, with ``dh`` the gradient reaching ``h_t`` (output gradient plus what step t+1
carried back)::

    dn = dh (1 - z)           dz = dh (h_{t-1} - n)
    da_n = dn (1 - n^2)       da_z = dz z (1 - z)
    da_r = da_n gh_n r (1 - r)
    dgx_t = [da_r, da_z, da_n]        dgh_t = [da_r, da_z, da_n r]
    dh_{t-1} = dh z + dgh_t W_hh

Only the last product is sequential. A program owns hidden units ``[j0, j0 + BLOCK_H)`` and keeps
the columns ``W_hh[:, j0:j0+BLOCK_H]`` (all 3H rows) on chip. Each step has two phases: the
elementwise gate gradients of its slice (published to ``dgh``), a grid barrier, then its slice of
``dgh_t W_hh``, which needs every program's ``dgh_t``. ``dgh`` has one slot per step, so no slot is
reused while another program may still read it and one barrier per step suffices. With ``FLAGS``
the second phase polls for ``dgh_t`` as tagged words instead (``kernels/exchange.py``), and no
program waits at a barrier. The product is split among the warps as in the forward. ``dgx`` (for the
input GEMMs) and ``dgh`` (for ``dW_hh``) leave the kernel; the weight gradients are batched GEMMs.

A stack's programs may take ``W_hh`` by rows instead (``ROW_PRODUCT``): a program keeps its own
gates' rows ``W_hh[g H + j0 : g H + j0 + BLOCK_H, :]`` and multiplies its own ``dgh_t`` by them, a
partial ``dh_{t-1}`` over all H units, which it publishes as tagged words; the next step sums its
units' partials from the layer's slices. Each row reads H words a step instead of 3H and nothing is
summed across warps (the reduction is 3 x BLOCK_H long); the partials are rounded to the state's
dtype once, like the states the forward exchanges. The cost model chooses between the two per shape.
"""

import torch
import triton
import triton.language as tl

from .barrier import grid_barrier
from .exchange import (
    pack_tagged, publish_tagged, release_flags, release_steps, step_tag, summed_partials, unpack_tagged,
    wait_released, wait_tagged_chunks, word_dtype,
)
from .settings import barrier_timeout_us
from .launch import (
    Launch, PersistentConfig, accumulator_state, empty_output, launch_constexprs, launch_persistent,
    new_sync_word,
)
from .tiles import (
    column_offsets, gate_rows_product, load_gate_rows, load_row_chunk, load_weight_chunk, load_weight_chunks, mma,
    row_time, split_sum, spread_rows,
)


@triton.jit(do_not_specialize=["timeout_us"])
def gru_bwd_persistent_kernel(
    p_dy,  # (T, B, D x H) gradient of the output, the directions side by side
    p_w,  # (D, 3H, H) W_hh
    p_hs,  # (D, T + 1, B, H) states saved by the forward: slot s holds the input state of step s
    p_gates,  # (D, T, B, 4, H) r, z, n, gh_n saved by the forward, by step
    p_len,  # (B,) int32 lengths, read when USE_LENGTHS
    p_dgx,  # (T, B, D x 3H) out: gradient of the input projection, by time index
    p_dgh,  # (D, T, B, 3H) out: gradient of W_hh h + b_hh, by step
    p_dstate,  # (D, B, H) in ACC: gradient of h_n in, gradient of h0 out
    p_xbuf,  # (D, 2, B, 3H) int32/int64 dgh with its step tags, exchanged when FLAGS; ROW_PRODUCT:
    #         (D, 2, slices, B, H) each slice's partial dh_{t-1} with its step tags
    p_sync,  # (2,) int32 barrier counter and error word
    p_wih,  # STACK: (D - 1, 3H, H) W_ih of layers 1..
    p_mask,  # STACK with DROPOUT: (D - 1, T, B, H) the dropout multipliers of layers 1.. inputs
    p_released,  # STACK: (D, num_b_tiles, slices) int32 steps of dgx each slice has released to the layer below
    T,
    B,
    H,
    num_b_tiles,
    num_programs,  # per direction (per layer when STACK)
    num_dirs,  # groups of programs: directions, or layers when STACK
    timeout_us,  # how long one wait may last (not specialised: any value shares the compiled kernel)
    STACK: tl.constexpr,  # the groups are the layers of a unidirectional stack, the top one leading
    DROPOUT: tl.constexpr,
    REVERSE: tl.constexpr,  # direction 0 ran reversed (direction 1 the other way)
    USE_LENGTHS: tl.constexpr,
    RESIDENT: tl.constexpr,
    BARRIER: tl.constexpr,
    FLAGS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    ROWS: tl.constexpr,  # rows of a batch tile that hold sequences: BLOCK_B, or the batch when smaller
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    NUM_K: tl.constexpr,
    SPLIT_K: tl.constexpr,  # the warps' parts of the product (kernels/tiles.py), SPLIT_K x SPLIT_N == num_warps
    SPLIT_N: tl.constexpr,
    PRECISION: tl.constexpr,
    ACC: tl.constexpr,
    SLICES: tl.constexpr,  # STACK: the hidden slices of a layer, rounded up to a power of two
    ROW_PRODUCT: tl.constexpr,  # STACK: W_hh by its rows, the partial dh_{t-1} exchanged
    HB: tl.constexpr,  # ROW_PRODUCT: H rounded up to a power of two, the partials' width
):
    direction = tl.program_id(0) // num_programs
    pid = tl.program_id(0) % num_programs
    if STACK:
        # The top layer leads: it takes the first programs, so that an interpreter running programs
        # one after another finishes it before the layers that wait for it.
        direction = num_dirs - 1 - direction
        reverse = False
    else:
        reverse = (direction == 1) ^ REVERSE
    # As in the forward: a time-indexed tensor's direction offset joins its 64-bit time offset.
    dir64 = tl.cast(direction, tl.int64)
    slot0 = dir64 * (T + 1)  # this direction's first slot of hs
    step0 = dir64 * T  # and of gates and dgh
    p_w += dir64 * 3 * H * H
    p_dstate += direction * B * H
    if ROW_PRODUCT:
        p_xbuf += dir64 * 2 * tl.cdiv(H, BLOCK_H) * B * H
    else:
        p_xbuf += dir64 * 2 * B * 3 * H
    if STACK:
        # The top layer reads dy; the layers below take it from the layer above's dgx (where this
        # launch writes it) times that layer's W_ih, by the dropout mask between them.
        col_dy = dir64 * 0
        row_dy = H
        col_dgx = dir64 * T * B * 3 * H  # every layer's dgx, (L, T, B, 3H)
        row_dgx = 3 * H
        top = direction == num_dirs - 1
        above = tl.minimum(direction, num_dirs - 2)  # index of W_ih of layer direction + 1
        p_wih += tl.cast(above, tl.int64) * 3 * H * H
        p_mask += tl.cast(above, tl.int64) * T * B * H
        step0_above = (dir64 + 1) * T  # the layer above's first step of dgx
        # Each step of dgx has its own place, never overwritten: no ring, no writer waits.
        slices = tl.cdiv(H, BLOCK_H)
        p_released_above = p_released + (above + 1) * num_b_tiles * slices
        p_released += direction * num_b_tiles * slices
    else:
        col_dy = dir64 * H  # this direction's columns in a row of dy
        col_dgx = dir64 * 3 * H
        row_dy = num_dirs * H
        row_dgx = num_dirs * 3 * H
    num_h_tiles = tl.cdiv(H, BLOCK_H)
    num_tiles = num_h_tiles * num_b_tiles
    S: tl.constexpr = SPLIT_K * SPLIT_N
    NS: tl.constexpr = BLOCK_H // SPLIT_N
    if RESIDENT:
        # W_hh[:, slice] of all three gates, the reduction over the 3H rows; or by rows, the slice's
        # rows of each gate, the reduction over its 3 x BLOCK_H gate values.
        j0 = (pid % num_h_tiles) * BLOCK_H
        if ROW_PRODUCT:
            w_rows = load_gate_rows(p_w, j0, H, BLOCK_H, HB, S)
        else:
            w = load_weight_chunks(p_w, j0, H, 1, 3 * H, H, NUM_K, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N)
        if STACK:  # the top layer's programs hold the layer below it's W_ih too, unused
            w_ih = load_weight_chunks(p_wih, j0, H, 1, 3 * H, H, NUM_K, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N)
    dtype = p_dgh.dtype.element_ty
    WORD = p_xbuf.dtype.element_ty
    for rev_step in range(T):
        step = T - 1 - rev_step
        p_dgh_s = p_dgh + (step0 + step) * B * 3 * H
        # Ready flags: iteration r publishes and reads slot r % 2 with tag r + 1 (the slots start
        # as zeros: tag 0); the two-slot argument of kernels/exchange.py holds step for step.
        p_x = p_xbuf + tl.cast(rev_step % 2, tl.int64) * B * 3 * H
        tag = step_tag(rev_step + 1, WORD)
        if STACK:
            if direction < num_dirs - 1:
                # The gradient reaching this layer's output at time ``step``: what the layer above
                # released of its dgx for that time, through its W_ih and the dropout mask.
                p_dgx_above_t = p_dgx + (step0_above + step) * B * 3 * H
                for tile in range(pid, num_tiles, num_programs):
                    j0 = (tile % num_h_tiles) * BLOCK_H
                    offs_b = (tile // num_h_tiles) * BLOCK_B + tl.arange(0, ROWS)
                    offs_j = column_offsets(j0, BLOCK_H, SPLIT_N)
                    acc = tl.zeros((S, BLOCK_B, NS), ACC)
                    wait_released(p_released_above + (tile // num_h_tiles) * slices, slices, rev_step + 1, p_sync + 1,
                                  timeout_us, SLICES)
                    for c in tl.static_range(NUM_K):
                        b_dgx = spread_rows(load_row_chunk(p_dgx_above_t, offs_b, c, 3 * H, B, 3 * H, BLOCK_K, SPLIT_K),
                                            BLOCK_B, SPLIT_N)
                        acc = mma(b_dgx, w_ih[c], acc, PRECISION, ACC)
                    mask = (offs_b < B)[None, :, None] & (offs_j < H)
                    b_dx = split_sum(acc, SPLIT_K, SPLIT_N, ROWS)
                    if DROPOUT:
                        p_m = p_mask + tl.cast(step, tl.int64) * B * H + offs_b[None, :, None] * H + offs_j
                        b_dx = b_dx * tl.load(p_m, mask=mask, other=0.0).to(ACC)
                    p_ds = p_dstate + offs_b[None, :, None] * H + offs_j
                    # As the one-layer kernel adds dy in the input dtype.
                    b_dx = b_dx.to(dtype).to(ACC)
                    tl.store(p_ds, tl.load(p_ds, mask=mask, other=0.0) + b_dx, mask=mask)
                tl.debug_barrier()
        for tile in range(pid, num_tiles, num_programs):
            offs_j = (tile % num_h_tiles) * BLOCK_H + tl.arange(0, BLOCK_H)
            offs_b = (tile // num_h_tiles) * BLOCK_B + tl.arange(0, ROWS)
            mask_b = offs_b < B
            mask = mask_b[:, None] & (offs_j < H)[None, :]
            t, valid = row_time(p_len, offs_b, mask_b, step, T, reverse, USE_LENGTHS)
            offs_bh = offs_b[:, None] * H + offs_j[None, :]

            p_dy_t = p_dy + (t[:, None] * B * row_dy + col_dy) + offs_b[:, None] * row_dy + offs_j[None, :]
            if STACK:
                dy = tl.load(p_dy_t, mask=tl.where(top, mask & valid[:, None], False), other=0.0)
            else:
                dy = tl.load(p_dy_t, mask=mask & valid[:, None], other=0.0)
            dh = tl.load(p_dstate + offs_bh, mask=mask, other=0.0) + dy.to(ACC)
            if ROW_PRODUCT:
                # The slices' partials of the previous iteration, tag rev_step; the first iteration
                # reads the zeros the slots start as (tag 0): no branch for the compiler to unswitch
                # the tile loop on.
                dh += summed_partials(p_xbuf + tl.cast((rev_step + 1) % 2, tl.int64) * num_h_tiles * B * H,
                                      offs_b, offs_j, B, H, num_h_tiles, step_tag(rev_step, WORD), p_sync + 1,
                                      timeout_us, SLICES, dtype, ACC)
            p_g = p_gates + ((step0 + step) * B + offs_b[:, None]) * (4 * H) + offs_j[None, :]
            r = tl.load(p_g, mask=mask, other=0.0).to(ACC)
            z = tl.load(p_g + H, mask=mask, other=0.0).to(ACC)
            n = tl.load(p_g + 2 * H, mask=mask, other=0.0).to(ACC)
            gh_n = tl.load(p_g + 3 * H, mask=mask, other=0.0).to(ACC)
            p_h = p_hs + (slot0 + step) * B * H + offs_bh
            h_prev = tl.load(p_h, mask=mask, other=0.0).to(ACC)

            da_n = dh * (1.0 - z) * (1.0 - n * n)
            da_z = dh * (h_prev - n) * z * (1.0 - z)
            da_r = da_n * gh_n * r * (1.0 - r)
            # A finished row's state passes through unchanged: no gate gradient, dh carried as is.
            da_r = tl.where(valid[:, None], da_r, 0.0)
            da_z = tl.where(valid[:, None], da_z, 0.0)
            da_n = tl.where(valid[:, None], da_n, 0.0)
            dh_carry = tl.where(valid[:, None], dh * z, dh)

            offs_g = offs_b[:, None] * (3 * H) + offs_j[None, :]
            p_dgx_t = p_dgx + (t[:, None] * B * row_dgx + col_dgx) + offs_b[:, None] * row_dgx + offs_j[None, :]
            tl.store(p_dgx_t, da_r.to(dtype), mask=mask)
            tl.store(p_dgx_t + H, da_z.to(dtype), mask=mask)
            tl.store(p_dgx_t + 2 * H, da_n.to(dtype), mask=mask)
            dgh_r, dgh_z, dgh_n = da_r.to(dtype), da_z.to(dtype), (da_n * r).to(dtype)
            tl.store(p_dgh_s + offs_g, dgh_r, mask=mask)
            tl.store(p_dgh_s + offs_g + H, dgh_z, mask=mask)
            tl.store(p_dgh_s + offs_g + 2 * H, dgh_n, mask=mask)
            if ROW_PRODUCT:
                # Published as the columns' dgh is, slot rev_step % 2 with tag rev_step + 1: the
                # two-slot argument of kernels/exchange.py holds, each slice reading every slice's
                # partial of its rows before publishing the next.
                b_part = gate_rows_product(dgh_r, dgh_z, dgh_n, w_rows, BLOCK_B, S, PRECISION, ACC)
                offs_p = column_offsets(0, HB, S)
                offs_pb = offs_b[None, :, None]
                p_p = p_xbuf + (tl.cast(rev_step % 2, tl.int64) * num_h_tiles + tile % num_h_tiles) * B * H
                publish_tagged(p_p + offs_pb * H + offs_p, pack_tagged(b_part.to(dtype), tag, WORD),
                               (offs_pb < B) & (offs_p < H))
            elif FLAGS:
                publish_tagged(p_x + offs_g, pack_tagged(dgh_r, tag, WORD), mask)
                publish_tagged(p_x + offs_g + H, pack_tagged(dgh_z, tag, WORD), mask)
                publish_tagged(p_x + offs_g + 2 * H, pack_tagged(dgh_n, tag, WORD), mask)
            tl.store(p_dstate + offs_bh, dh_carry, mask=mask)
        # Every slice of dgh_t is published before any program multiplies it by W_hh (with ready
        # flags, the polls below wait for it; this only orders the program's own accesses).
        grid_barrier(p_sync, num_dirs * num_programs, timeout_us, BARRIER)
        if STACK:  # dgx of this step is stored: the layer below may read it (layer 0 has none below)
            for tile in range(pid, num_tiles, num_programs):
                release_steps(p_released + tile, rev_step + 1, direction > 0)
        if not ROW_PRODUCT:  # by rows, the product was published with the gates
            for tile in range(pid, num_tiles, num_programs):
                j0 = (tile % num_h_tiles) * BLOCK_H
                offs_b = (tile // num_h_tiles) * BLOCK_B + tl.arange(0, ROWS)
                offs_j = column_offsets(j0, BLOCK_H, SPLIT_N)
                acc = tl.zeros((S, BLOCK_B, NS), ACC)
                if FLAGS:
                    b_words = wait_tagged_chunks(
                        p_x, offs_b, 3 * H, B, 3 * H, tag, p_sync + 1, timeout_us, NUM_K, BLOCK_K, SPLIT_K,
                    )
                    for c in tl.static_range(NUM_K):
                        b_dgh = spread_rows(unpack_tagged(b_words[c], dtype), BLOCK_B, SPLIT_N)
                        acc = mma(b_dgh, w[c], acc, PRECISION, ACC)
                elif RESIDENT:
                    for c in tl.static_range(NUM_K):
                        b_dgh = spread_rows(load_row_chunk(p_dgh_s, offs_b, c, 3 * H, B, 3 * H, BLOCK_K, SPLIT_K), BLOCK_B, SPLIT_N)
                        acc = mma(b_dgh, w[c], acc, PRECISION, ACC)
                else:
                    # Re-read from L2 every step: a runtime loop, not NUM_K unrolled copies.
                    for c in range(NUM_K):
                        b_dgh = spread_rows(load_row_chunk(p_dgh_s, offs_b, c, 3 * H, B, 3 * H, BLOCK_K, SPLIT_K), BLOCK_B, SPLIT_N)
                        w_c = load_weight_chunk(p_w, j0, c, H, 1, 3 * H, H, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N)
                        acc = mma(b_dgh, w_c, acc, PRECISION, ACC)
                mask = (offs_b < B)[None, :, None] & (offs_j < H)
                p_ds = p_dstate + offs_b[None, :, None] * H + offs_j
                tl.store(p_ds, tl.load(p_ds, mask=mask, other=0.0) + split_sum(acc, SPLIT_K, SPLIT_N, ROWS), mask=mask)
            # Only this program reads its slice of dstate in the next step: a CTA barrier orders it.
            tl.debug_barrier()
    if ROW_PRODUCT:
        # The last iteration's partials carry into the gradient of h0.
        for tile in range(pid, num_tiles, num_programs):
            offs_j = (tile % num_h_tiles) * BLOCK_H + tl.arange(0, BLOCK_H)
            offs_b = (tile // num_h_tiles) * BLOCK_B + tl.arange(0, ROWS)
            mask = (offs_b < B)[:, None] & (offs_j < H)[None, :]
            p_ds = p_dstate + offs_b[:, None] * H + offs_j[None, :]
            b_dh = summed_partials(p_xbuf + tl.cast((T + 1) % 2, tl.int64) * num_h_tiles * B * H, offs_b, offs_j, B, H,
                                   num_h_tiles, step_tag(T, WORD), p_sync + 1, timeout_us, SLICES, dtype, ACC)
            tl.store(p_ds, tl.load(p_ds, mask=mask, other=0.0) + b_dh, mask=mask)


def backward_launch(dy, dh_n, w_hh, hs, gates, lengths, reverse: bool, config: PersistentConfig, precision: str):
    """The launch of :func:`gru_backward` and the tensors it writes: ``(launch, (dgx, dgh, dstate))``."""
    D, _, H = w_hh.shape
    T, B = dy.shape[:2]
    config.validate(H, B, directions=D)
    if config.product != "columns":
        raise ValueError(f"one layer's backward takes W_hh by columns, got product={config.product!r}")
    dtype, device = hs.dtype, hs.device
    dgx = empty_output((T, B, D * 3 * H), dtype, device)
    dgh = empty_output((D, T, B, 3 * H), dtype, device)
    dstate = accumulator_state(dh_n)
    sync = new_sync_word(device)
    # Zeros: tag 0, which no iteration takes for its own.
    flags = config.uses_ready_flags(H)
    xbuf = torch.zeros((D, 2, B, 3 * H), dtype=word_dtype(dtype), device=device) if flags else sync
    args = (
        dy, w_hh, hs, gates, lengths if lengths is not None else dstate, dgx, dgh, dstate, xbuf, sync,
        # No layers: W_ih, the dropout masks and the release flags are never read.
        w_hh, sync, sync,
        T, B, H, config.num_b_tiles(B), config.num_programs, D, barrier_timeout_us(),
    )
    constexprs = launch_constexprs(
        config, H, B, dtype, backward=True, reverse=reverse, use_lengths=lengths is not None, precision=precision
    )
    constexprs.update(STACK=False, DROPOUT=False, SLICES=1, ROW_PRODUCT=False, HB=16)
    return Launch(gru_bwd_persistent_kernel, args, constexprs, config, D, config.grid_synchronised(H)), (dgx, dgh, dstate)


def stack_backward_launch(dy, dh_n, w_ih, w_hh, hs, gates, lengths, masks, config: PersistentConfig, precision: str):
    """The one launch of :func:`gru_stack_backward` and the tensors it writes: ``(launch, (dgx,
    dgh, dstate))``."""
    L, _, H = w_hh.shape
    T, B = dy.shape[:2]
    config.validate(H, B, directions=1)
    if not config.resident:
        raise ValueError("a stack's backward in one launch needs resident weights")
    dtype, device = hs.dtype, hs.device
    dgx = empty_output((L, T, B, 3 * H), dtype, device)
    dgh = empty_output((L, T, B, 3 * H), dtype, device)
    dstate = accumulator_state(dh_n)
    sync = new_sync_word(device)
    word = word_dtype(dtype)
    # Zeros: tag 0, which no reverse step takes for its own (tags count from 1).
    rows = config.product == "rows"
    xbuf = torch.zeros((L, 2, config.num_h_tiles(H), B, H) if rows else (L, 2, B, 3 * H), dtype=word, device=device)
    released = release_flags(L, config.num_b_tiles(B), config.num_h_tiles(H), device)
    args = (
        dy, w_hh, hs, gates, lengths if lengths is not None else dstate, dgx, dgh, dstate, xbuf, sync,
        w_ih, masks if masks is not None else sync, released,
        T, B, H, config.num_b_tiles(B), config.num_programs, L, barrier_timeout_us(),
    )
    constexprs = launch_constexprs(
        config, H, B, dtype, backward=True, reverse=False, use_lengths=lengths is not None, precision=precision
    )
    constexprs.update(STACK=True, DROPOUT=masks is not None, FLAGS=True, BARRIER=False,
                      SLICES=triton.next_power_of_2(config.num_h_tiles(H)), ROW_PRODUCT=rows,
                      HB=triton.next_power_of_2(H))
    return Launch(gru_bwd_persistent_kernel, args, constexprs, config, L, True), (dgx, dgh, dstate)


def gru_stack_backward(dy, dh_n, w_ih, w_hh, hs, gates, lengths, masks, config: PersistentConfig, precision: str):
    """Gradients of a unidirectional stack's recurrences in one launch, from what
    :func:`~kernels.gru_forward.gru_stack_forward` saved: the top layer leads in reverse time and
    each layer below takes its step at time t once the layer above has published its dgx for t.

    ``dy`` (T, B, H) is the gradient of the top layer's output, ``dh_n`` (L, B, H); ``w_ih``
    (L - 1, 3H, H), ``w_hh`` (L, 3H, H), ``hs``, ``gates`` and ``masks`` as the forward took and
    saved them. Returns ``dgx`` (L, T, B, 3H) (layer l's input projection's gradient), ``dgh``
    (L, T, B, 3H) and ``dh0`` (L, B, H).
    """
    launch, (dgx, dgh, dstate) = stack_backward_launch(dy, dh_n, w_ih, w_hh, hs, gates, lengths, masks, config,
                                                       precision)
    launch_persistent(launch)
    return dgx, dgh, dstate.to(hs.dtype)


def gru_backward(dy, dh_n, w_hh, hs, gates, lengths, reverse: bool, config: PersistentConfig, precision: str):
    """Gradients of one layer's recurrence in ``D = w_hh.shape[0]`` directions, from what
    :func:`gru_forward` saved (``reverse``: direction 0 ran reversed).

    Returns ``dgx`` (T, B, D x 3H), the gradient of the input projection by time index; ``dgh``
    (D, T, B, 3H), the gradient of ``W_hh h_{t-1} + b_hh`` by step (pairs with ``hs[:, :T]``); and
    ``dh0`` (D, B, H).
    """
    launch, (dgx, dgh, dstate) = backward_launch(dy, dh_n, w_hh, hs, gates, lengths, reverse, config, precision)
    launch_persistent(launch)
    return dgx, dgh, dstate.to(hs.dtype)
