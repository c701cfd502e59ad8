"""Stalled launches reported without a host sync per launch.

A launch whose programs wait for one another can stall: another process holds SMs, so a program
of the grid never runs; every wait is bounded, the first program past its deadline raises the
launch's error word and all of them leave (``kernels/barrier.py``). The results of such a launch
are garbage, so the stall must reach the caller, but reading the error word back right after the
launch costs a device sync every time: a training step with L layers would pay 2L of them.

So stalls are reported as CUDA reports its own asynchronous errors. Behind each synchronised
launch, on the same stream, the error word is copied to pinned host memory and an event is
recorded. The copies are read once they have landed: at the next synchronised launch on that
device (never waiting), and by :func:`check_stalls`, which waits for all of them. A stall raises
:class:`StallError` naming the launch that stalled, possibly from a later call.

``TRITONGRU_STALL_CHECK`` picks the mode: ``async`` (the default), ``eager`` (read the word back
right after every launch, a device sync, so the error comes from the call that stalled; for
debugging) or ``0`` (never read: nothing reports a stall). Launches captured into a CUDA graph are
not watched: their replays reuse the captured words.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import warnings

import torch

from . import settings

# Copies in flight per device before a launch waits for the oldest (the host far ahead of the GPU).
MAX_PENDING = 1024


class StallError(RuntimeError):
    """A synchronised launch gave up waiting for its programs: its results are invalid."""


@dataclasses.dataclass
class _Watched:
    error: torch.Tensor  # (1,) int32, pinned host memory
    done: torch.cuda.Event
    what: str


_pending: dict[torch.device, collections.deque[_Watched]] = collections.defaultdict(collections.deque)


def watch(sync: torch.Tensor, what: str) -> None:
    """Report a stall of the launch just enqueued, whose ``[counter, error]`` word is ``sync``
    (``what`` names it in the error)."""
    mode = settings.stall_check_mode()
    if mode == "0":
        return
    if mode == "eager" or sync.device.type != "cuda":
        # On the CPU (the interpreter) the launch has already finished: reading is free.
        _raise_if_stalled(int(sync[1].item()), what)
        return
    if torch.cuda.is_current_stream_capturing():
        return
    pending = _pending[sync.device]
    if len(pending) >= MAX_PENDING:
        _settle(pending, wait_for=1)
    error = torch.empty(1, dtype=sync.dtype, pin_memory=True)
    error.copy_(sync[1:], non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    pending.append(_Watched(error, done, what))


def poll(device: torch.device) -> None:
    """Raise for a stalled launch on ``device`` whose word has landed; never waits (and does
    nothing while a CUDA graph is being captured, when querying events is not allowed)."""
    pending = _pending.get(device)
    if pending and not torch.cuda.is_current_stream_capturing():
        _settle(pending, wait_for=0)


def check_stalls(device: torch.device | None = None) -> None:
    """Wait for every watched launch (on ``device``, default all) and raise :class:`StallError`
    for the first that stalled. Call it where a loop synchronises anyway, e.g. once per epoch."""
    for watched_device, pending in list(_pending.items()):
        if device is None or watched_device == device:
            _settle(pending, wait_for=len(pending))


def _settle(pending: collections.deque[_Watched], wait_for: int) -> None:
    """Read the words that have landed, waiting for the first ``wait_for`` of them."""
    while pending and (wait_for > 0 or pending[0].done.query()):
        watched = pending.popleft()
        watched.done.synchronize()
        wait_for -= 1
        _raise_if_stalled(int(watched.error[0]), watched.what, later=True, pending=pending)


def _raise_if_stalled(error: int, what: str, later: bool = False, pending=None) -> None:
    if error == 0:
        return
    if pending is not None:
        # The launches behind a stalled one on the same device ran on fresh words; report the first.
        pending.clear()

    raise StallError(
        f"{what}: a program waited longer than {settings.barrier_timeout_us() / 1e3:.0f} ms "
        "(TRITONGRU_BARRIER_TIMEOUT_MS) for the other programs of its grid; another process may be occupying SMs. "
        + ("That launch's results, and everything computed from them since, are invalid. "
           if later else "The results of this call are invalid. ")
        + "The next launch starts from fresh sync words."
    )


def _warn_unreported() -> None:
    try:
        check_stalls()
    except StallError as error:
        warnings.warn(f"tritongru: a stall nobody checked for before exit: {error}", RuntimeWarning, stacklevel=1)


atexit.register(_warn_unreported)
