"""A grid-wide barrier for persistent kernels, with a bounded wait.

Flip-bit counter (the scheme of CUDA's ``grid.sync()`` and Inductor's cooperative reductions): one
int32 word; program 0 adds ``2**31 - (N - 1)``, every other program adds 1, so a full round adds
exactly ``2**31`` and only flips the sign bit. Each program waits until the sign bit differs from
the value its own arrival returned. The word never needs a reset between steps or launches, as long
as every round completes.

A round may not complete: another process can hold SMs, so a program of this grid never runs. The
wait is bounded by ``timeout_us`` microseconds of the GPU's global timer; a program that gives up raises the
error word, every other program sees it and leaves its wait, and the host raises an error after the
launch. The counter is then left mid-round, so the host zeroes both words before the next launch.
"""

import time

import numpy as np
import triton
import triton.language as tl
from triton.language.extra.cuda import globaltimer

from .settings import INTERPRET

if INTERPRET:
    from triton.runtime.interpreter import TensorHandle

    def globaltimer():  # noqa: F811 - the interpreter's stand-in
        """The host's monotonic clock in place of the GPU's ``%globaltimer`` (inline PTX, which the
        interpreter cannot run), so that waits are bounded on the CPU too."""
        return tl.tensor(TensorHandle(np.array([time.monotonic_ns()], dtype=np.int64), tl.int64), tl.int64)


@triton.jit
def grid_barrier(p_sync, num_programs, timeout_us, ENABLED: tl.constexpr):
    """Wait until all ``num_programs`` programs have arrived; ``p_sync`` = [counter, error].

    With ``ENABLED`` false it only orders the program's own threads (a CTA barrier).
    """
    # Every thread's stores must be issued before the single thread that arrives releases them.
    tl.debug_barrier()
    if ENABLED:
        if tl.program_id(0) == 0:
            # 2**31 - (num_programs - 1), written so that no constant overflows int32.
            arrive = 2147483647 - num_programs + 2
        else:
            arrive = 1
        old = tl.atomic_add(p_sync, arrive, sem="release", scope="gpu")
        deadline = wait_deadline(timeout_us)
        waiting = True
        while waiting:
            now = tl.atomic_add(p_sync, 0, sem="acquire", scope="gpu")
            flipped = (old ^ now) < 0
            failed = stall_reported(p_sync + 1, deadline)
            waiting = not (flipped or failed)
    tl.debug_barrier()


@triton.jit
def wait_deadline(timeout_us):
    """When a wait that starts now gives up (the GPU's global timer, in ns; the timeout is in us)."""
    return globaltimer() + tl.cast(timeout_us, tl.int64) * 1000


@triton.jit
def stall_reported(p_error, deadline):
    """Whether the grid has given up waiting: its error word, raised by the first program past its
    ``deadline``.

    One scalar atomic, whose result every thread of the program receives: all warps leave a wait in
    the same iteration (per-thread clock reads would let them part around the CTA barriers inside
    the loop), and nobody leaves before the word is set, so a stall always reaches the host."""
    return tl.atomic_max(p_error, (globaltimer() > deadline).to(tl.int32), sem="relaxed", scope="gpu") != 0
