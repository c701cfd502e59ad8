"""The persistent GRU forward: one launch runs the whole sequence of one layer, in one direction or
in both at once.

Work split: the grid's tiles are (hidden slice, batch tile) pairs. A program owns the hidden units
``[j0, j0 + BLOCK_H)`` of all three gates, so it needs the ``3 x BLOCK_H x H`` rows of W_hh for its
slice; with ``RESIDENT`` they are loaded once, before the time loop, and stay on chip for all T
steps. Every step, each program reads the whole previous state ``h_{t-1}`` of its batch tile (written
by all hidden slices), computes its slice of ``h_t`` and publishes it; a grid barrier then ends the
step. With ``FLAGS`` there is no barrier: each element of ``h_t`` is published together with its
step in one word, and a program polls until the whole ``h_{t-1}`` it needs carries the current step
(``kernels/exchange.py``). With one hidden slice (W_hh fits one SM) programs are independent batch
tiles and neither is needed.

Within a program, the warps share a step's product without repeating one another's work: each
holds a part of the reduction and of the slice's columns (``SPLIT_K`` x ``SPLIT_N``,
``kernels/tiles.py``), and the elementwise gate math runs on the summed ``(SPLIT_N, ROWS, NS)``
tiles, ``ROWS`` the batch tile's rows that hold sequences.

Directions: the grid is ``num_dirs`` groups of ``num_programs`` programs; group ``d`` runs
direction ``d`` (direction 1 reversed) with its own weights, state and exchange buffers, and
writes its half of each output row. The directions never wait for each other, but a grid barrier
counts every program of the grid.

The loop over tiles is grid-strided inside the time loop, so a grid of one program computes every
tile: that is how the plain interpreter, which runs programs one after another, tests this same
code (the tests also run each program in a thread of its own, barrier and all).

The input projection ``gx = x W_ih^T + b_ih (+ b_hh for r and z)`` is one GEMM before the launch;
only ``b_hh`` of the n gate, which is scaled by r, reaches the kernel.
"""

import torch
import triton
import triton.language as tl

from .barrier import grid_barrier
from .exchange import (
    next_slot, pack_initial, pack_tagged, progress_counter, progress_counters, publish_tagged, release_flags,
    release_steps, report_progress, ring_slots, step_tag, unpack_tagged, wait_for_progress, wait_released,
    wait_tagged_chunks, word_dtype,
)
from .launch import (
    Launch, PersistentConfig, accumulator_state, empty_output, launch_constexprs, launch_persistent,
    new_sync_word,
)
from .settings import barrier_timeout_us
from .tiles import (
    column_offsets, load_row_chunk, load_weight_chunk, load_weight_chunks, mma, row_time, sigmoid, split_sum,
    split_sum_pair, spread_rows, tanh,
)


@triton.jit
def gate_dots(b_h, w_r, w_z, w_n, acc_r, acc_z, acc_n, PRECISION: tl.constexpr, ACC: tl.constexpr):
    """One reduction chunk of ``h W_r^T``, ``h W_z^T`` and ``h W_n^T``, added to the accumulators."""
    acc_r = mma(b_h, w_r, acc_r, PRECISION, ACC)
    acc_z = mma(b_h, w_z, acc_z, PRECISION, ACC)
    acc_n = mma(b_h, w_n, acc_n, PRECISION, ACC)
    return acc_r, acc_z, acc_n


@triton.jit(do_not_specialize=["timeout_us"])
def gru_fwd_persistent_kernel(
    p_gx,  # (T, B, D x 3H) input projection of each direction (of layer 0 when STACK), gate order r, z, n
    p_w,  # (D, 3H, H) W_hh
    p_bhn,  # (D, H) b_hh of the n gate
    p_len,  # (B,) int32 lengths, read when USE_LENGTHS
    p_hbuf,  # (D, hbuf_slots, B, H) states in the input dtype for the dots; slot 0 holds h0
    # (STACK: each layer's states for the layer above, h_t in slot t % hbuf_slots: a ring in inference)
    p_xbuf,  # (D, 2, B, H) int32/int64 states with their step tags, exchanged when FLAGS; slot 0 holds h0
    p_state,  # (D, B, H) running state in ACC, initialised with h0; holds h_n at the end
    p_y,  # (T, B, D x H) output, the directions side by side; STACK: (layers or 1, T, B, H)
    p_gates,  # (D, T, B, 4, H) r, z, n, W_hn h + b_hn per step, written when SAVE_GATES
    p_sync,  # (2,) int32 barrier counter and error word
    p_wih,  # STACK: (D - 1, 3H, H) W_ih of layers 1..
    p_bih,  # STACK: (D - 1, 3H) their input bias, b_hh of r and z folded in
    p_mask,  # STACK with DROPOUT: (D - 1, T, B, H) the dropout multipliers of layers 1.. inputs
    p_progress,  # STACK: (D, batch groups) int32 steps the slices of each group of rows of layers 1.. finished
    p_released,  # STACK: (D, num_b_tiles, slices) int32 steps of hbuf each slice has released to the layer above
    T,
    B,
    H,
    hbuf_slots,
    num_b_tiles,
    num_programs,  # per direction (per layer when STACK)
    num_dirs,  # groups of programs: directions, or layers when STACK
    timeout_us,  # how long one wait may last (not specialised: any value shares the compiled kernel)
    STACK: tl.constexpr,  # the groups are the layers of a unidirectional stack (see below)
    RING: tl.constexpr,  # STACK: hbuf is a ring shorter than the sequence (inference), whose writers wait
    DROPOUT: tl.constexpr,
    REVERSE: tl.constexpr,  # direction 0 runs reversed (direction 1 runs the other way)
    USE_LENGTHS: tl.constexpr,
    SAVE_GATES: tl.constexpr,
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
):
    direction = tl.program_id(0) // num_programs
    pid = tl.program_id(0) % num_programs
    if STACK:
        reverse = False
    else:
        reverse = (direction == 1) ^ REVERSE
    # Offsets across time can pass 2**31 elements (long T x B x 3H): they are 64-bit, and a
    # time-indexed tensor's direction offset joins its time offset in one 64-bit addition, so that
    # every address formed from its base pointer adds a 64-bit offset (tests/test_offsets.py).
    # Offsets inside one step stay 32-bit (the launcher checks B x D x 3H < 2**31).
    dir64 = tl.cast(direction, tl.int64)
    slot0 = dir64 * hbuf_slots  # this direction's first slot of hbuf
    step0 = dir64 * T  # and of gates
    # Tensors without a time axis move to this direction's part once.
    p_w += dir64 * 3 * H * H
    p_bhn += direction * H
    p_xbuf += dir64 * 2 * B * H
    p_state += direction * B * H
    if STACK:
        # Layer 0 reads gx; layer l > 0 projects layer l - 1's states (its part of p_hbuf) itself.
        # Only the top layer's output is the result; with SAVE_GATES every layer's is kept.
        col_gx = dir64 * 0
        row_gx = 3 * H
        col_y = dir64 * 0
        row_y = H
        if SAVE_GATES:
            p_y += dir64 * T * B * H
        writes_y = SAVE_GATES or direction == num_dirs - 1
        below = tl.maximum(direction - 1, 0)
        p_wih += tl.cast(below, tl.int64) * 3 * H * H
        p_bih += below * 3 * H
        p_mask += tl.cast(below, tl.int64) * T * B * H
        # A layer's ring is read by the layer above: before overwriting a slot, a layer waits until
        # the programs above of the same rows are done with it (kernels/exchange.py). They count
        # their steps on one word per group of rows. Training keeps every step: nothing waits.
        slices = tl.cdiv(H, BLOCK_H)
        p_count_own = progress_counter(p_progress, direction, num_programs, pid, slices)
        p_count_above = progress_counter(p_progress, tl.minimum(direction + 1, num_dirs - 1), num_programs, pid, slices)
        seen_above = tl.zeros((), tl.int32)
        ring_in = tl.zeros((), tl.int32)  # the slot of h_step
        releases = direction < num_dirs - 1  # the top layer has no reader above
        p_released_below = p_released + below * num_b_tiles * slices
        p_released += direction * num_b_tiles * slices
    else:
        col_gx = dir64 * 3 * H  # this direction's columns in a row of gx
        col_y = dir64 * H
        row_gx = num_dirs * 3 * H
        row_y = num_dirs * H
    num_h_tiles = tl.cdiv(H, BLOCK_H)
    num_tiles = num_h_tiles * num_b_tiles
    S: tl.constexpr = SPLIT_K * SPLIT_N
    NS: tl.constexpr = BLOCK_H // SPLIT_N
    if RESIDENT:
        # The host guarantees num_programs % num_h_tiles == 0: a program keeps one hidden slice.
        j0 = (pid % num_h_tiles) * BLOCK_H
        w_r = load_weight_chunks(p_w, j0, 1, H, H, H, NUM_K, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N)
        w_z = load_weight_chunks(p_w + H * H, j0, 1, H, H, H, NUM_K, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N)
        w_n = load_weight_chunks(p_w + 2 * H * H, j0, 1, H, H, H, NUM_K, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N)
        if STACK:
            # Layer 0's programs hold layer 1's W_ih too, unused: one compiled kernel for all layers.
            w_ir = load_weight_chunks(p_wih, j0, 1, H, H, H, NUM_K, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N)
            w_iz = load_weight_chunks(p_wih + H * H, j0, 1, H, H, H, NUM_K, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N)
            w_in = load_weight_chunks(p_wih + 2 * H * H, j0, 1, H, H, H, NUM_K, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N)
    stride_t = tl.cast(B, tl.int64) * row_gx
    DTYPE = p_hbuf.dtype.element_ty
    WORD = p_xbuf.dtype.element_ty
    for step in range(T):
        if STACK:  # slot t % hbuf_slots holds h_t (the own layer's h_{t-1} comes as tagged words)
            if RING:
                ring_out = next_slot(ring_in, hbuf_slots)
                if releases:
                    # h_{step + 1} replaces h_{step + 1 - hbuf_slots}, which the layer above reads
                    # in its step step - hbuf_slots.
                    seen_above = wait_for_progress(p_count_above, (step + 1 - hbuf_slots) * slices, seen_above,
                                                   p_sync + 1, timeout_us)
            else:
                ring_out = step + 1
            p_h_out = p_hbuf + (slot0 + ring_out) * B * H
        else:
            p_h_in = p_hbuf + (slot0 + step % hbuf_slots) * B * H
            p_h_out = p_hbuf + (slot0 + (step + 1) % hbuf_slots) * B * H
        p_x_in = p_xbuf + tl.cast(step % 2, tl.int64) * B * H
        p_x_out = p_xbuf + tl.cast((step + 1) % 2, tl.int64) * B * H
        for tile in range(pid, num_tiles, num_programs):
            j0 = (tile % num_h_tiles) * BLOCK_H
            offs_b = (tile // num_h_tiles) * BLOCK_B + tl.arange(0, ROWS)
            offs_j = column_offsets(j0, BLOCK_H, SPLIT_N)  # (SPLIT_N, 1, NS)
            mask_b = offs_b < B
            t, valid = row_time(p_len, offs_b, mask_b, step, T, reverse, USE_LENGTHS)
            b3 = offs_b[None, :, None]
            t3 = t[None, :, None]
            valid3 = valid[None, :, None]
            mask = mask_b[None, :, None] & (offs_j < H)

            acc_r = tl.zeros((S, BLOCK_B, NS), ACC)
            acc_z = tl.zeros((S, BLOCK_B, NS), ACC)
            acc_n = tl.zeros((S, BLOCK_B, NS), ACC)
            if STACK:
                # x_t W_ih^T joins h_{t-1} W_hh^T in the r and z accumulators (the gates add them);
                # the n gate keeps its own, since r scales only the recurrent part.
                acc_xn = tl.zeros((S, BLOCK_B, NS), ACC)
                if direction > 0:
                    wait_released(p_released_below + (tile // num_h_tiles) * slices, slices, step + 1, p_sync + 1,
                                  timeout_us, SLICES)
                    p_h_below = p_hbuf + (slot0 - hbuf_slots + ring_out) * B * H
                    for c in tl.static_range(NUM_K):
                        b_x = load_row_chunk(p_h_below, offs_b, c, H, B, H, BLOCK_K, SPLIT_K)
                        if DROPOUT:
                            p_mask_t = p_mask + tl.cast(step, tl.int64) * B * H
                            b_x = b_x * load_row_chunk(p_mask_t, offs_b, c, H, B, H, BLOCK_K, SPLIT_K)
                        b_x = spread_rows(b_x, BLOCK_B, SPLIT_N)
                        acc_r, acc_z, acc_xn = gate_dots(b_x, w_ir[c], w_iz[c], w_in[c], acc_r, acc_z, acc_xn, PRECISION, ACC)
            if FLAGS:
                b_words = wait_tagged_chunks(
                    p_x_in, offs_b, H, B, H, step_tag(step, WORD), p_sync + 1, timeout_us, NUM_K, BLOCK_K, SPLIT_K,
                )
                for c in tl.static_range(NUM_K):
                    b_h = spread_rows(unpack_tagged(b_words[c], DTYPE), BLOCK_B, SPLIT_N)
                    acc_r, acc_z, acc_n = gate_dots(b_h, w_r[c], w_z[c], w_n[c], acc_r, acc_z, acc_n, PRECISION, ACC)
            elif RESIDENT:
                for c in tl.static_range(NUM_K):
                    b_h = spread_rows(load_row_chunk(p_h_in, offs_b, c, H, B, H, BLOCK_K, SPLIT_K), BLOCK_B, SPLIT_N)
                    acc_r, acc_z, acc_n = gate_dots(b_h, w_r[c], w_z[c], w_n[c], acc_r, acc_z, acc_n, PRECISION, ACC)
            else:
                # Re-read from L2 every step: a runtime loop, not NUM_K unrolled copies.
                for c in range(NUM_K):
                    b_h = spread_rows(load_row_chunk(p_h_in, offs_b, c, H, B, H, BLOCK_K, SPLIT_K), BLOCK_B, SPLIT_N)
                    acc_r, acc_z, acc_n = gate_dots(
                        b_h,
                        load_weight_chunk(p_w, j0, c, 1, H, H, H, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N),
                        load_weight_chunk(p_w + H * H, j0, c, 1, H, H, H, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N),
                        load_weight_chunk(p_w + 2 * H * H, j0, c, 1, H, H, H, BLOCK_K, BLOCK_H, SPLIT_K, SPLIT_N),
                        acc_r, acc_z, acc_n, PRECISION, ACC,
                    )
            # r and z share one reduction across warps; three gates in one would need a padding fourth.
            gh_r, gh_z = split_sum_pair(acc_r, acc_z, SPLIT_K, SPLIT_N, ROWS)
            gh_n = split_sum(acc_n, SPLIT_K, SPLIT_N, ROWS)

            if STACK:
                from_gx = tl.where(direction == 0, mask, False)  # the layers above have no gx
            else:
                from_gx = mask
            p_gx_t = p_gx + (t3 * stride_t + col_gx) + b3 * row_gx + offs_j
            gx_r = tl.load(p_gx_t, mask=from_gx, other=0.0).to(ACC)
            gx_z = tl.load(p_gx_t + H, mask=from_gx, other=0.0).to(ACC)
            gx_n = tl.load(p_gx_t + 2 * H, mask=from_gx, other=0.0).to(ACC)
            if STACK:
                from_bias = tl.where(direction > 0, offs_j < H, False)
                gx_r += tl.load(p_bih + offs_j, mask=from_bias, other=0.0).to(ACC)
                gx_z += tl.load(p_bih + H + offs_j, mask=from_bias, other=0.0).to(ACC)
                gx_n += split_sum(acc_xn, SPLIT_K, SPLIT_N, ROWS)
                gx_n += tl.load(p_bih + 2 * H + offs_j, mask=from_bias, other=0.0).to(ACC)
            b_hn = tl.load(p_bhn + offs_j, mask=offs_j < H, other=0.0).to(ACC)

            r = sigmoid(gx_r + gh_r)
            z = sigmoid(gx_z + gh_z)
            gh_n = gh_n + b_hn
            n = tanh(gx_n + r * gh_n)
            offs_bh = b3 * H + offs_j
            h_prev = tl.load(p_state + offs_bh, mask=mask, other=0.0)
            h_new = tl.where(valid3, n + z * (h_prev - n), h_prev)

            tl.store(p_state + offs_bh, h_new, mask=mask)
            if FLAGS:
                publish_tagged(p_x_out + offs_bh, pack_tagged(h_new.to(DTYPE), step_tag(step + 1, WORD), WORD), mask)
            if SAVE_GATES or STACK or not FLAGS:
                # The saved states of training, the layer above's input, or the barrier's exchange.
                tl.store(p_h_out + offs_bh, h_new.to(DTYPE), mask=mask)
            b_y = tl.where(valid3, h_new, 0.0)
            p_y_t = p_y + (t3 * B * row_y + col_y) + b3 * row_y + offs_j
            if STACK:
                mask_y = tl.where(writes_y, mask, False)
            else:
                mask_y = mask
            tl.store(p_y_t, b_y.to(p_y.dtype.element_ty), mask=mask_y)
            if SAVE_GATES:
                p_g = p_gates + ((step0 + step) * B + b3) * (4 * H) + offs_j
                dtype = p_gates.dtype.element_ty
                tl.store(p_g, r.to(dtype), mask=mask)
                tl.store(p_g + H, z.to(dtype), mask=mask)
                tl.store(p_g + 2 * H, n.to(dtype), mask=mask)
                tl.store(p_g + 3 * H, gh_n.to(dtype), mask=mask)
            if STACK:
                # h_{step + 1} of this tile is in hbuf: the layer above may read it. Released here,
                # behind a CTA barrier of its own, rather than after the step's barrier: there the
                # fp32 training forward at 8 warps spills (ptxas at its 255-register cap).
                tl.debug_barrier()
                release_steps(p_released + tile, step + 1, releases)
        # Ends the step: every slice of h_t is published before anyone reads it. Without a barrier
        # (ready flags, or one program per batch tile) it only orders this program's own stores
        # before its next loads.
        grid_barrier(p_sync, num_dirs * num_programs, timeout_us, BARRIER)
        if RING:
            if direction > 0:  # done with layer direction - 1's h_{step + 1}
                report_progress(p_count_own)
            ring_in = ring_out


def forward_launch(gx, w_hh, b_hn, h0, lengths, reverse: bool, save: bool, config: PersistentConfig, precision: str):
    """The launch that runs one layer's recurrence in ``D = w_hh.shape[0]`` directions (see
    :func:`gru_forward`), and the tensors it writes: ``(launch, (y, state, hbuf, gates))``."""
    D, _, H = w_hh.shape
    T, B = gx.shape[:2]
    dtype, device = gx.dtype, gx.device
    config.validate(H, B, dtype, directions=D)
    sync = new_sync_word(device)
    slots = T + 1 if save else 2
    hbuf = empty_output((D, slots, B, H), dtype, device)
    hbuf[:, 0].copy_(h0)
    if config.uses_ready_flags(H):
        # Slot 1 starts as zeros: tag 0, which step 1 (expecting tag 1) never takes for its own.
        xbuf = torch.zeros((D, 2, B, H), dtype=word_dtype(dtype), device=device)
        xbuf[:, 0].copy_(pack_initial(h0, dtype))
    else:
        xbuf = sync
    state = accumulator_state(h0)
    y = empty_output((T, B, D * H), dtype, device)
    gates = empty_output((D, T, B, 4, H), dtype, device) if save else gx.new_empty(0)
    args = (
        gx, w_hh, b_hn, lengths if lengths is not None else state, hbuf, xbuf, state, y, gates, sync,
        # No layers above: W_ih, its bias, the dropout masks, progress and release flags are never read.
        w_hh, b_hn, sync, sync, sync,
        T, B, H, slots, config.num_b_tiles(B), config.num_programs, D, barrier_timeout_us(),
    )
    constexprs = launch_constexprs(
        config, H, B, dtype, backward=False, reverse=reverse, use_lengths=lengths is not None, precision=precision
    )
    constexprs.update(SAVE_GATES=save, STACK=False, RING=False, DROPOUT=False, SLICES=1)
    launch = Launch(gru_fwd_persistent_kernel, args, constexprs, config, D, config.grid_synchronised(H))
    return launch, (y, state, hbuf, gates)


def stack_forward_launch(gx, w_ih, b_ih, w_hh, b_hn, h0, lengths, masks, save: bool, config: PersistentConfig,
                         precision: str):
    """The one launch that runs every layer of a unidirectional stack (see :func:`gru_stack_forward`)
    and the tensors it writes: ``(launch, (y, state, hbuf, gates))``."""
    L, _, H = w_hh.shape
    T, B = gx.shape[:2]
    dtype, device = gx.dtype, gx.device
    config.validate(H, B, dtype, directions=1)
    if not config.resident:
        raise ValueError("a stack in one launch needs resident weights (each program polls all its chunks at once)")
    sync = new_sync_word(device)
    # Each layer's states for the layer above: every step in training (the backward reads them), a
    # ring in inference.
    hbuf = empty_output((L, T + 1 if save else ring_slots(T + 1), B, H), dtype, device)
    hbuf[:, 0].copy_(h0)
    # The slices of a layer exchange its state as tagged words, as in one layer's launch.
    xbuf = torch.zeros((L, 2, B, H), dtype=word_dtype(dtype), device=device)
    xbuf[:, 0].copy_(pack_initial(h0, dtype))
    ring = hbuf.shape[1] < T + 1
    # Only a ring's writers wait for the layer above's progress: training keeps every step.
    progress = progress_counters(L, config.num_h_tiles(H), config.num_programs, T, device) if ring else sync
    released = release_flags(L, config.num_b_tiles(B), config.num_h_tiles(H), device)
    state = accumulator_state(h0)
    y = empty_output((L if save else 1, T, B, H), dtype, device)
    gates = empty_output((L, T, B, 4, H), dtype, device) if save else gx.new_empty(0)
    args = (
        gx, w_hh, b_hn, lengths if lengths is not None else state, hbuf, xbuf, state, y, gates, sync,
        w_ih, b_ih, masks if masks is not None else sync, progress, released,
        T, B, H, hbuf.shape[1], config.num_b_tiles(B), config.num_programs, L, barrier_timeout_us(),
    )
    constexprs = launch_constexprs(
        config, H, B, dtype, backward=False, reverse=False, use_lengths=lengths is not None, precision=precision
    )
    constexprs.update(SAVE_GATES=save, STACK=True, RING=ring, DROPOUT=masks is not None, FLAGS=True, BARRIER=False,
                      SLICES=triton.next_power_of_2(config.num_h_tiles(H)))
    return Launch(gru_fwd_persistent_kernel, args, constexprs, config, L, True), (y, state, hbuf, gates)


def gru_stack_forward(gx, w_ih, b_ih, w_hh, b_hn, h0, lengths, masks, save: bool, config: PersistentConfig,
                      precision: str):
    """Every layer of a unidirectional stack in one launch: programs are (layer, hidden slice,
    batch tile) triples, each holding its slices of W_hh and of the layer's W_ih on chip; a layer
    takes step t as soon as the layer below has published its h_t and its own layer h_{t-1}, so the
    stack runs in about T + L - 1 dependent steps instead of L x T.

    ``gx`` (T, B, 3H) is layer 0's input projection (as for :func:`gru_forward`); ``w_ih``
    (L - 1, 3H, H) and ``b_ih`` (L - 1, 3H) the layers above's input weights and bias (``b_hh`` of
    r and z folded in); ``w_hh`` (L, 3H, H), ``b_hn`` (L, H), ``h0`` (L, B, H); ``masks``
    (L - 1, T, B, H) the dropout multipliers of the layers above's inputs, or None. Returns ``y``:
    (T, B, H), the top layer's output, or with ``save`` every layer's (L, T, B, H); ``h_n`` (L, B,
    H); and with ``save`` each layer's states ``hs`` (L, T + 1, B, H) and gates (L, T, B, 4, H), the
    layout :func:`~kernels.gru_backward.gru_backward` takes one layer of.
    """
    launch, (y, state, hbuf, gates) = stack_forward_launch(gx, w_ih, b_ih, w_hh, b_hn, h0, lengths, masks, save,
                                                           config, precision)
    launch_persistent(launch)
    h_n = state.to(gx.dtype)
    if not save:
        return y[0], h_n, gx.new_empty(0), gates
    return y, h_n, hbuf, gates


def gru_forward(gx, w_hh, b_hn, h0, lengths, reverse: bool, save: bool, config: PersistentConfig, precision: str):
    """Run the recurrence of one layer in ``D = w_hh.shape[0]`` directions (1, or 2: forward and
    reverse); ``reverse`` runs direction 0 reversed (and a second direction forward).

    ``gx`` (T, B, D x 3H) already holds ``x W_ih^T + b_ih`` plus ``b_hh`` of the r and z gates of
    each direction; ``w_hh`` is (D, 3H, H), ``b_hn`` (D, H), ``h0`` (D, B, H). Returns ``y``
    (T, B, D x H), ``h_n`` (D, B, H), and, when ``save``, what the backward needs: the states ``hs``
    (D, T + 1, B, H) and the gates (D, T, B, 4, H); otherwise two empty tensors.
    """
    launch, (y, state, hbuf, gates) = forward_launch(gx, w_hh, b_hn, h0, lengths, reverse, save, config, precision)
    launch_persistent(launch)
    h_n = state.to(gx.dtype)
    if not save:
        return y, h_n, gx.new_empty(0), gates
    return y, h_n, hbuf, gates
