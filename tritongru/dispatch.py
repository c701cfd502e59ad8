"""Which kernel variant and configuration runs a given recurrence.

Two work splits (see ``kernels/gru_forward.py``):

* **whole weights per program** when ``W_hh`` (3 x H x H) fits one SM's shared memory: programs
  are independent batch tiles, no grid barrier;
* **hidden slices** otherwise: ``ceil(H / block_h)`` programs per batch-tile group, one grid barrier
  per step; each slice's weights stay resident while they fit the shared-memory budget, and are
  re-read from L2 every step when they do not (bf16 beyond H ~ 2048, fp32 beyond H = 512).

Under the interpreter one program computes every tile (programs run one after another there, so a
barrier with more than one program would never complete).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import torch
import triton

from ._compat import INTERPRET
from .kernels.launch import PersistentConfig, device_limits, resident_bytes_per_weight

# Shared memory one program may give to its weight slice; the rest of the 227 KB per block holds
# the staged operands of the dots and the barrier's static words.
WEIGHT_BUDGET_BYTES = 200 * 1024
# Programs per SM the planner counts on for a barrier grid: one, so that a slice's program has a
# whole SM's shared memory. The launcher still checks the compiled kernel before launching.
H200_SMS = 132

_forced: list[PersistentConfig] = []


@contextlib.contextmanager
def force_config(config: PersistentConfig):
    """Run every recurrence inside the block with ``config`` (tests and tuning)."""
    _forced.append(config)
    try:
        yield config
    finally:
        _forced.pop()


@dataclasses.dataclass(frozen=True)
class Problem:
    """What a recurrence's configuration depends on."""

    hidden: int
    batch: int
    dtype: torch.dtype
    training: bool
    directions: int = 1  # run by one launch: 2 when both directions of a layer share it


def sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return device_limits(device.index if device.index is not None else torch.cuda.current_device())[0]
    return H200_SMS


# (num_warps, block_k, max_registers) of the inference forward, the training forward and the
# backward, by element size and by the smallest hidden size of the sm_90 compile map at least H:
# the first candidate of `compile_report.TILE_CANDIDATES` that compiled without spills for that
# kernel, found by `python -m tritongru compile-report --search-tiles` (the plain report checks
# every entry in use; rerun the search after changing a kernel).
Tiles = tuple[int, int, int | None]
_TILES: dict[int, dict[int, tuple[Tiles, Tiles, Tiles]]] = {
    2: {
        64: ((8, 128, None), (8, 128, None), (8, 128, 255)),
        128: ((8, 128, None), (8, 128, None), (8, 128, None)),
        256: ((8, 128, None), (8, 128, 255), (8, 128, None)),
        512: ((8, 128, None), (8, 128, None), (8, 64, None)),
        768: ((8, 128, None), (8, 128, None), (8, 128, None)),
        1024: ((8, 128, None), (8, 128, None), (8, 128, None)),
        1536: ((8, 128, None), (8, 128, None), (8, 128, None)),
        2048: ((8, 128, None), (8, 128, None), (8, 64, None)),
    },
    4: {
        64: ((8, 128, None), (8, 128, None), (8, 128, None)),
        128: ((8, 128, None), (8, 128, None), (8, 64, None)),
        256: ((8, 64, None), (8, 64, None), (8, 64, None)),
        512: ((8, 64, None), (8, 64, None), (8, 64, 255)),
        768: ((8, 64, None), (8, 32, 255), (8, 64, None)),
        1024: ((8, 64, None), (8, 32, 255), (8, 64, None)),
        1536: ((8, 64, None), (8, 32, 255), (8, 64, None)),
        2048: ((8, 64, None), (8, 32, 255), (8, 64, None)),
    },
}


def tile_shape(hidden: int, element_size: int, training: bool, backward: bool) -> Tiles:
    """``(num_warps, block_k, max_registers)`` for a kernel at ``hidden``, from the checked table."""
    table = _TILES[min(element_size, 4)]
    checked = [h for h in table if h >= hidden]
    inference, training_forward, backward_tiles = table[min(checked) if checked else max(table)]
    if backward:
        return backward_tiles
    return training_forward if training else inference


# Pure in its arguments, and asked several times per call (the op, the backward, the planner of
# bidirectional launches): computed once per shape.
@functools.lru_cache(maxsize=1024)
def heuristic_config(problem: Problem, sms: int, backward: bool = False, exchange: str = "barrier") -> PersistentConfig:
    """A configuration that is always valid and co-resident; the starting point before tuning.

    Batch tiles of 16 rows: the sequential product gains nothing from wider tiles, and wider ones
    spill. Warps and reduction chunks come from the compile-checked table (:func:`tile_shape`).
    W_hh goes whole into every program while it takes at most half the shared-memory budget
    (no barrier at all); otherwise hidden slices of at least 16 units, as many as there are SMs.
    Resident slices hand on their state with ``exchange`` (the barrier unless asked: ready flags
    are a tuning candidate until a GPU has measured them, ``perf/NOTES.md``).
    """
    H, B = problem.hidden, problem.batch
    num_warps, block_k, max_registers = tile_shape(H, problem.dtype.itemsize, problem.training, backward)
    # The SMs one direction's programs may take (the grid is directions x num_programs).
    sms = max(1, sms // problem.directions)
    block_b = 16
    b_tiles = triton.cdiv(B, block_b)
    h_pad = max(triton.next_power_of_2(H), 16)
    whole = PersistentConfig(
        block_b, h_pad, block_k, num_programs=min(b_tiles, sms), num_warps=num_warps, max_registers=max_registers
    )
    if 3 * h_pad * H * resident_bytes_per_weight(problem.dtype) <= WEIGHT_BUDGET_BYTES // 2:
        return whole
    # Slices sized for one direction on all SMs, whatever the directions: the compile-checked tiles.
    block_h = max(16, triton.next_power_of_2(triton.cdiv(H, sms * problem.directions)))
    sliced = PersistentConfig(block_b, block_h, block_k, num_programs=1, num_warps=num_warps, max_registers=max_registers)
    h_tiles = sliced.num_h_tiles(H)
    if sliced.weight_bytes(H, problem.dtype) <= WEIGHT_BUDGET_BYTES:
        groups = max(1, min(b_tiles, sms // h_tiles))
        return dataclasses.replace(sliced, num_programs=h_tiles * groups, exchange=exchange)
    return dataclasses.replace(sliced, num_programs=min(h_tiles * b_tiles, sms), resident=False)


def directions_per_launch(hidden: int, batch: int, dtype: torch.dtype, training: bool, device: torch.device) -> int:
    """2 when one launch can run both directions of a bidirectional layer, else 1.

    Both directions share a launch when the configurations chosen for that (forward, and backward
    when training) either need no co-residency or keep both directions' programs within one
    program per SM; otherwise each direction gets its own launch and the whole GPU.
    """
    problem = Problem(hidden, batch, dtype, training, directions=2)
    sms = sm_count(device)
    for backward in (False, True) if training else (False,):
        config = choose_config(problem, device, backward)
        if config.grid_synchronised(hidden) and 2 * config.num_programs > sms:
            return 1
    return 2


def interpreter_config(problem: Problem) -> PersistentConfig:
    """The fixed configuration of the CPU interpreter: one program, small tiles."""
    h_pad = max(triton.next_power_of_2(problem.hidden), 16)
    block_b = min(max(triton.next_power_of_2(problem.batch), 16), 32)
    block_h = min(h_pad, 64)
    return PersistentConfig(
        block_b=block_b, block_h=block_h, block_k=min(h_pad, 64), num_programs=1, resident=block_h == h_pad
    )


def choose_config(problem: Problem, device: torch.device, backward: bool = False) -> PersistentConfig:
    """The configuration for ``problem``'s forward (or ``backward``) kernel: forced, else the
    interpreter's, else the tuned table's for this GPU (one configuration for both passes), else
    the heuristic."""
    if _forced:
        return _forced[-1]
    if INTERPRET:
        return interpreter_config(problem)
    from . import tuning  # here, not at the top: tuning imports this module

    tuned = tuning.lookup(problem, device)
    if tuned is not None:
        return tuned
    return heuristic_config(problem, sm_count(device), backward)
