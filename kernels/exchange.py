"""Exchanging a step's state between programs through words that carry their own ready flag.

The alternative to a grid barrier between steps. Each element of the state a program publishes is
stored together with the step that produced it, in one word of twice its width: a 16-bit value
(bf16, fp16) with a 16-bit tag in an int32, an fp32 value with a 32-bit tag in an int64. An aligned
32- or 64-bit access is single-copy atomic, so a reader that sees the tag it expects sees the value
stored with it; no fence orders a separate flag before the data (NCCL's LL protocol uses the same
idea). Writers store the words with strong (relaxed) stores and a reader polls all the chunks it
needs at once with volatile loads (coherent, from L2, never hoisted out of the loop) until every
tag is current, keeping the words of that last poll: one L2
round trip after the last producer's store, where the barrier costs a release, an acquire poll and
then the data load.

Two slots are enough. Step ``s`` reads slot ``s % 2`` expecting tag ``s`` and writes slot
``(s + 1) % 2`` with tag ``s + 1``. A program writes tag ``s + 2`` into slot ``s % 2`` only after it
has read every program's state of step ``s + 1``, and each program publishes that only after it has
read its slot ``s``. A reader of slot ``s % 2`` therefore sees tag ``s - 2`` (or the initial zeros)
or ``s``, never a later one, so 16-bit tags that wrap around are unambiguous.

A stack's launch exchanges two ways. The slices of one layer pass each other its state as above
(the own layer's exchange is the critical path of every step). A layer passes its state (forward)
or ``dgx`` (backward) on to the next layer as plain values where the launch stores them anyway (the
forward's saved states, or its ring of :func:`ring_slots` steps in inference; the backward's
``dgx``), and then releases a flag per hidden slice and batch tile: the steps that slice has
finished (:func:`release_steps`). The reader acquires the flags of all the slices it needs
(:func:`wait_released`) and then loads the values once, with no tag to check or strip: half the
bytes of tagged words and far fewer instructions, for two more round trips on a path that is
not critical (the layer below runs ahead of the one reading it, so its states are usually
released before they are needed). The forward's writer may not overwrite step ``s - R`` of its
ring before the layer above is done with it: the reading programs of the same rows count each
step they finish on one counter (:func:`report_progress`), and a writer about to overwrite waits
until the count says all of them are past it (:func:`wait_for_progress`).

A wait is bounded like the barrier's: past ``timeout_us`` a program raises the shared error word,
every waiting program sees it and stops waiting, and the host raises after the launch.
"""

import torch
import triton
import triton.language as tl

from .barrier import stall_reported, wait_deadline
from .settings import INTERPRET
from .tiles import split_k_offsets

# Slots of a layer's ring in a stack's launch: the writer may run RING_SLOTS - 1 steps ahead of the
# slowest program reading it before it waits, slack for a wavefront whose layers are one step apart.
RING_SLOTS = 8


def _word_layout(dtype: torch.dtype) -> tuple[torch.dtype, torch.dtype, int]:
    """``(bits, word, low_mask)``: the integer type of a ``dtype`` value, the word holding it and
    its tag, and the mask of the value's half. fp64 has none: 128-bit accesses are not single-copy
    atomic."""
    layouts = {2: (torch.int16, torch.int32, 0xFFFF), 4: (torch.int32, torch.int64, 0xFFFFFFFF)}
    if dtype.itemsize not in layouts:
        raise ValueError(
            f"ready flags exchange 16- and 32-bit states (a value and its tag in one atomic word), got {dtype}; "
            "use exchange='barrier'"
        )
    return layouts[dtype.itemsize]


def word_dtype(dtype: torch.dtype) -> torch.dtype:
    """The word type that exchanges a ``dtype`` state (raises for fp64)."""
    return _word_layout(dtype)[1]


def pack_initial(h0: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Host side: ``h0`` rounded to ``dtype`` as the words of step 0 (tag 0), ready for slot 0."""
    bits, word, low = _word_layout(dtype)
    return h0.to(dtype).contiguous().view(bits).to(word) & low


def ring_slots(steps: int) -> int:
    """Slots a stack's inference keeps of each layer's states over ``steps`` steps: a ring of
    :data:`RING_SLOTS` on a GPU. Triton's interpreter runs programs one after another, each to the
    end, so there a layer runs all its steps before the layer reading it starts: every step keeps
    its slot and no writer ever waits."""
    return steps if INTERPRET else min(steps, RING_SLOTS)


def progress_counters(layers: int, slices: int, programs: int, steps: int, device: torch.device) -> torch.Tensor:
    """The int32 counters of a stack's launch, per layer and group of rows (``programs`` a layer,
    ``slices`` hidden slices each): each counts ``steps x slices`` at most."""
    if steps * slices >= 2**31:
        raise ValueError(f"a stack counts steps x hidden slices in int32: {steps} x {slices} is too many; "
                         "split the sequence")
    return torch.zeros((layers, programs // slices), dtype=torch.int32, device=device)


def release_flags(layers: int, b_tiles: int, slices: int, device: torch.device) -> torch.Tensor:
    """The int32 flags of a stack's launch, one per layer, batch tile and hidden slice: the steps
    whose values that slice has released to the next layer."""
    return torch.zeros((layers, b_tiles, slices), dtype=torch.int32, device=device)


@triton.jit
def step_tag(step, WORD: tl.constexpr):
    """The tag of the state produced by ``step`` steps (16 bits in an int32 word)."""
    if WORD == tl.int32:
        return step & 0xFFFF
    else:
        return tl.cast(step, tl.int64)


@triton.jit
def pack_tagged(values, tag, WORD: tl.constexpr):
    """``values`` (already in the exchanged dtype) in the low half of ``WORD``, ``tag`` in the high."""
    if WORD == tl.int32:
        return (values.to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF) | (tag << 16)
    else:
        return (values.to(tl.int32, bitcast=True).to(tl.int64) & 0xFFFFFFFF) | (tag << 32)


@triton.jit
def unpack_tagged(words, DTYPE: tl.constexpr):
    """The values of tagged ``words`` as ``DTYPE``."""
    if words.dtype == tl.int32:
        return (words & 0xFFFF).to(tl.int16).to(DTYPE, bitcast=True)
    else:
        return (words & 0xFFFFFFFF).to(tl.int32).to(DTYPE, bitcast=True)


@triton.jit
def _tag_of(words):
    if words.dtype == tl.int32:
        return (words >> 16) & 0xFFFF
    else:
        return words >> 32


@triton.jit
def _any(flags):
    """Whether any element of the rank-3 ``flags`` holds: one reduction."""
    return tl.max(tl.max(tl.max(flags.to(tl.int32), axis=2), axis=1), axis=0) != 0


@triton.jit
def _poll(p_x, offs_b, stride_b, B, K, tag, NUM_K: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    """One read of all ``NUM_K`` chunks ``(SPLIT_K, len(offs_b), BLOCK_K / SPLIT_K)`` of rows
    ``offs_b``, and whether any word is not yet ``tag``.

    Every chunk's load is issued before any is checked, and the check is one reduction.
    """
    chunks = ()
    for c in tl.static_range(NUM_K):
        offs_k = split_k_offsets(c, BLOCK_K, SPLIT_K)
        mask = (offs_b < B)[None, :, None] & (offs_k < K)[:, None, :]
        words = tl.load(p_x + offs_b[None, :, None] * stride_b + offs_k[:, None, :], mask=mask, other=0, volatile=True)
        chunks = chunks + (words,)
        stale_c = (_tag_of(words) != tag) & mask
        if c == 0:
            stale = stale_c
        else:
            stale = stale | stale_c
    return chunks, _any(stale)


@triton.jit
def wait_tagged_chunks(
    p_x, offs_b, stride_b, B, K, tag, p_error, timeout_us,
    NUM_K: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr,
):
    """The ``NUM_K`` chunks of tagged words of rows ``p_x[b * stride_b + k]``, split like
    :func:`~kernels.tiles.load_row_chunk`, once every word carries ``tag``. The caller unpacks
    each chunk where it uses it (:func:`unpack_tagged`): unpacked all at once, every chunk would
    take its own staging buffer in shared memory."""
    chunks, stale = _poll(p_x, offs_b, stride_b, B, K, tag, NUM_K, BLOCK_K, SPLIT_K)
    deadline = wait_deadline(timeout_us)
    while stale:
        chunks, stale = _poll(p_x, offs_b, stride_b, B, K, tag, NUM_K, BLOCK_K, SPLIT_K)
        stale = stale & ~stall_reported(p_error, deadline)
    return chunks


@triton.jit
def _poll_partials(p_x, offs, mask, tag):
    words = tl.load(p_x + offs, mask=mask, other=0, volatile=True)
    return words, _any((_tag_of(words) != tag) & mask)


@triton.jit
def summed_partials(p_x, offs_b, offs_j, B, H, slices, tag, p_error, timeout_us, SLICES: tl.constexpr,
                    DTYPE: tl.constexpr, ACC: tl.constexpr):
    """``(len(offs_b), len(offs_j))``: the sum over ``slices`` producers of their tagged partial
    values ``p_x[(n B + b) H + j]`` (``n < slices``, ``SLICES`` a power of two at least as many),
    once every word carries ``tag``; the values are ``DTYPE``, summed in ``ACC`` in a fixed order."""
    offs_n = tl.arange(0, SLICES)
    mask = (offs_n < slices)[:, None, None] & (offs_b < B)[None, :, None] & (offs_j < H)[None, None, :]
    offs = offs_n[:, None, None] * B * H + offs_b[None, :, None] * H + offs_j[None, None, :]
    words, stale = _poll_partials(p_x, offs, mask, tag)
    deadline = wait_deadline(timeout_us)
    while stale:
        words, stale = _poll_partials(p_x, offs, mask, tag)
        stale = stale & ~stall_reported(p_error, deadline)
    return tl.sum(unpack_tagged(words, DTYPE).to(ACC), axis=0)


@triton.jit
def publish_tagged(p_x, words, mask):
    """Store tagged ``words`` with strong (relaxed, gpu-scope) stores: the PTX memory model promises
    single-copy atomicity and eventual visibility only between strong accesses, and the readers'
    polls are volatile (strong) loads."""
    tl.atomic_xchg(p_x, words, mask=mask, sem="relaxed", scope="gpu")


@triton.jit
def next_slot(slot, slots):
    """The ring's slot after ``slot``, ``(slot + 1) % slots`` without a division."""
    return tl.where(slot + 1 == slots, 0, slot + 1)


@triton.jit
def progress_counter(p_progress, layer, num_programs, pid, slices):
    """The counter of ``layer``'s group of rows that program ``pid`` belongs to: each group is
    ``slices`` consecutive programs, the hidden slices of the same batch tiles."""
    return p_progress + layer * (num_programs // slices) + pid // slices


@triton.jit
def report_progress(p_count):
    """Count one more finished step of this program on the counter of the programs that read the
    same rows of the layer it reads from: a release, so that every read of that step's words
    happens before a writer that sees the count overwrites them."""
    tl.atomic_add(p_count, 1, sem="release", scope="gpu")


@triton.jit
def wait_for_progress(p_count, needed, seen, p_error, timeout_us):
    """The count on ``p_count`` once it is at least ``needed`` (``seen``, what this program last
    read, where that already is). The programs counting there are the hidden slices of the same
    rows of one layer, each of which waits for all the others' previous step, so they are never
    more than one step apart: a count of ``k x slices`` means each has finished ``k`` steps.
    Acquires it: the writer's stores after the wait come after those programs' reads."""
    if seen < needed:
        deadline = wait_deadline(timeout_us)
        waiting = True
        while waiting:
            seen = tl.atomic_add(p_count, 0, sem="acquire", scope="gpu")
            waiting = not (seen >= needed or stall_reported(p_error, deadline))
        # Every thread's stores after the wait come after the thread that acquired.
        tl.debug_barrier()
    return seen


if INTERPRET:
    @triton.jit
    def _load_acquire(p_words, offs, mask):
        """The interpreter's stand-in (it runs no inline PTX, and its loads are sequentially consistent)."""
        return tl.load(p_words + offs, mask=mask, other=0, volatile=True)
else:
    @triton.jit
    def _load_acquire(p_words, offs, mask):
        """``ld.acquire.gpu`` of the int32 words ``p_words[offs]`` where ``mask`` holds (0 elsewhere):
        Triton's loads take no memory order, and acquiring atomics would queue every reader of a
        flag behind one another in L2. Masked lanes read the first word, which exists."""
        words = tl.inline_asm_elementwise(
            "ld.acquire.gpu.global.b32 $0, [$1];", "=r,l", [p_words + tl.where(mask, offs, 0)],
            dtype=tl.int32, is_pure=False, pack=1,
        )
        return tl.where(mask, words, 0)


@triton.jit
def _behind(p_flags, offs, mask, steps):
    """Whether any flag ``p_flags[offs]`` (where ``mask``) is still below ``steps``: one reduction."""
    return tl.max(tl.where(mask & (_load_acquire(p_flags, offs, mask) < steps), 1, 0), axis=0) != 0


@triton.jit
def wait_released(p_flags, slices, steps, p_error, timeout_us, SLICES: tl.constexpr):
    """Wait until each of the ``slices`` flags ``p_flags[0:slices]`` (``SLICES``, a power of two,
    at least as many) says its slice has released ``steps`` steps; the values stored before those
    releases can then be loaded with plain (``.cg``) loads."""
    offs = tl.arange(0, SLICES)
    mask = offs < slices
    behind = _behind(p_flags, offs, mask, steps)
    deadline = wait_deadline(timeout_us)
    while behind:
        behind = _behind(p_flags, offs, mask, steps) & ~stall_reported(p_error, deadline)
    # Each thread acquired some of the flags; the CTA barrier orders all of them before every
    # thread's loads of the values.
    tl.debug_barrier()


@triton.jit
def release_steps(p_flag, steps, publish):
    """Say (where ``publish``) that this program's slice has stored the values of ``steps`` steps:
    one release store, by one thread. The caller puts a CTA barrier between every thread's stores
    and this (the barrier that ends the phase that stored them), which makes them the releasing
    thread's to release."""
    tl.atomic_xchg(p_flag, steps, mask=publish, sem="release", scope="gpu")
