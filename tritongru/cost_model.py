"""A model of what one timestep and one call cost, from the compiled kernels and a GPU's figures.

**Everything this module computes is a model figure, not a measurement.** It reads what one step of
a compiled variant executes (:mod:`tritongru.compiled_step`) and prices it with one GPU's figures
(:mod:`tritongru.hardware`). A step of a persistent kernel is a chain: wait for the other programs'
state, load it, compute the recurrent product and the gates, publish the new state. So

    step = exchange + tiles x (max(shared, issue, tensor, l2) + cta barriers)

* ``shared``: bytes the SM's warps move through shared memory, at its bandwidth per clock;
* ``issue``: warp instructions of one sub-partition (warps / 4 of them), one per clock;
* ``tensor``: the tensor-core instructions of one sub-partition at their issue rate, or the longest
  chain of dependent ones at their latency, whichever is longer;
* ``l2``: what the whole grid loads and stores through L2 in a step (the state, ready-flag polls,
  weights re-read every step), at the GPU's L2 bandwidth;
  (these four overlap: the step's compute is as long as the longest of them)
* ``cta barriers``: every ``bar.sync`` drains the program's warps, so each adds its cost;
* ``exchange``: the round trips to L2 on the critical path between steps. A grid barrier costs what
  an atomic-counter barrier measured on that GPU, plus the load of the state after it; ready flags
  cost the producer's store reaching L2 and the poll that sees it (1.5 round trips; the poll's
  words are the state); a program that owns all of W_hh reloads its own state (one round trip).

``tiles`` is how many tiles one program runs per step (more than one when batch tiles outnumber
the programs). A call adds its launches, the input GEMM before each layer (a roofline: its bytes
at HBM bandwidth or its FLOPs at the tensor peak, the longer) and its host syncs.
"""

from __future__ import annotations

import dataclasses
import math

from .compiled_step import StepCounts
from .hardware import GPU

EXCHANGES = ("barrier", "flags", "none")


@dataclasses.dataclass(frozen=True)
class StepCost:
    """Modelled microseconds of one step of one compiled variant, by term."""

    shared: float
    issue: float
    tensor: float
    l2: float
    cta_barriers: float
    exchange: float
    tiles: int

    @property
    def compute(self) -> float:
        return max(self.shared, self.issue, self.tensor, self.l2) + self.cta_barriers

    @property
    def step(self) -> float:
        return self.exchange + self.tiles * self.compute

    @property
    def bound(self) -> str:
        """The term that contributes most to the step."""
        terms = {
            "exchange": self.exchange,
            "shared": self.tiles * self.shared,
            "issue": self.tiles * self.issue,
            "tensor": self.tiles * self.tensor,
            "l2": self.tiles * self.l2,
            "cta-barriers": self.tiles * self.cta_barriers,
        }
        return max(terms, key=terms.get)


def step_cost(counts: StepCounts, num_warps: int, exchange: str, gpu: GPU, tiles: int = 1, programs: int = 1) -> StepCost:
    """The modelled cost of one step from one warp's counts of a variant with ``num_warps`` warps,
    one program per SM, ``programs`` of them, exchanging its state by ``exchange`` (``barrier``,
    ``flags`` or ``none``)."""
    if exchange not in EXCHANGES:
        raise ValueError(f"exchange must be one of {EXCHANGES}, got {exchange!r}")
    per_subpartition = math.ceil(num_warps / 4)
    us = gpu.cycles_to_us
    shared = us((counts.shared_read_bytes + counts.shared_written_bytes) * num_warps / gpu.shared_bytes_per_clock.value)
    issue = us(counts.instructions * per_subpartition / gpu.issue_per_clock.value)
    tensor = us(max(counts.mma_instructions * per_subpartition * gpu.mma_issue.value, counts.mma_chain * gpu.mma_latency.value))
    moved = (counts.global_load_bytes + counts.global_store_bytes) * num_warps * programs
    l2 = moved / (gpu.l2_bandwidth_gbs.value * 1e3)
    barriers = us(counts.cta_barriers * gpu.cta_barrier.value)
    round_trip = us(gpu.l2_round_trip.value)
    exchange_us = {
        "barrier": gpu.grid_barrier_us.value + round_trip,
        "flags": 1.5 * round_trip,
        "none": round_trip,
    }[exchange]
    return StepCost(shared, issue, tensor, l2, barriers, exchange_us, tiles)


def critical_round_trips(exchange: str) -> float:
    """L2 round trips on the path from one step's last store to the next step's product (the grid
    barrier's are inside its measured cost: a release fence, the arrival, the poll)."""
    return {"barrier": 4.0, "flags": 1.5, "none": 1.0}[exchange]


@dataclasses.dataclass(frozen=True)
class CallShape:
    """What a call's cost depends on beyond one step: the sequence, the layer stack, the input."""

    seq_len: int
    batch: int
    input_size: int
    hidden: int
    layers: int = 1
    directions: int = 1
    element_bytes: int = 2


def input_gemm_us(shape: CallShape, layer: int, gpu: GPU, backward: bool = False) -> float:
    """Roofline time of one layer's input projection (its backward: the two GEMMs for dx and dW_ih)."""
    inputs = shape.input_size if layer == 0 else shape.directions * shape.hidden
    rows, columns = shape.seq_len * shape.batch, 3 * shape.hidden * shape.directions
    flops = 2 * rows * inputs * columns * (2 if backward else 1)
    moved = (rows * inputs + inputs * columns + rows * columns) * shape.element_bytes * (2 if backward else 1)
    return max(moved / (gpu.hbm_bandwidth_gbs.value * 1e3), flops / (gpu.tensor_tflops_bf16.value * 1e6))


@dataclasses.dataclass(frozen=True)
class CallCost:
    """Modelled microseconds of one call, by term."""

    recurrence: float
    input_gemms: float
    launches: float
    host_syncs: float

    @property
    def total(self) -> float:
        return self.recurrence + self.input_gemms + self.launches + self.host_syncs


def stack_call_cost(shape: CallShape, step_us: float, gpu: GPU, *, backward_step_us: float | None = None,
                    graph: bool = False) -> CallCost:
    """A unidirectional stack in one launch each way: ``T + L - 1`` dependent steps per pass (layer
    l runs step t beside layer l + 1's step t - 1, the top layer leading in the backward; a step
    is one program's, which waits for its neighbouring layer and its own at once), layer 0's input
    GEMM (and in the backward every layer's weight-gradient GEMMs) and two launches per pass."""
    passes = 2 if backward_step_us is not None else 1
    recurrence = (shape.seq_len + shape.layers - 1) * (step_us + (backward_step_us or 0.0))
    gemms = input_gemm_us(shape, 0, gpu)
    if backward_step_us is not None:
        gemms += sum(input_gemm_us(shape, layer, gpu, backward=True) for layer in range(shape.layers))
    launch = (gpu.graph_launch_us if graph else gpu.launch_us).value
    return CallCost(recurrence, gemms, 2 * launch * passes, 0.0)


def call_cost(
    shape: CallShape, forward_step_us: float, gpu: GPU, *, backward_step_us: float | None = None,
    launches_per_layer: int = 2, directions_per_launch: int | None = None, host_syncs: int = 0, graph: bool = False,
) -> CallCost:
    """A whole call: every layer's recurrence (forward, and backward when ``backward_step_us`` is
    given), its input GEMMs, the launches (``launches_per_layer`` per pass: the GEMM and the
    recurrence; cheaper replayed from a CUDA graph) and ``host_syncs`` device syncs."""
    per_launch = directions_per_launch or shape.directions
    launch_groups = shape.layers * math.ceil(shape.directions / per_launch)
    passes = 2 if backward_step_us is not None else 1
    steps = shape.seq_len * launch_groups
    recurrence = steps * (forward_step_us + (backward_step_us or 0.0))
    gemms = sum(input_gemm_us(shape, layer, gpu) for layer in range(shape.layers))
    if backward_step_us is not None:
        gemms += sum(input_gemm_us(shape, layer, gpu, backward=True) for layer in range(shape.layers))
    launch = (gpu.graph_launch_us if graph else gpu.launch_us).value
    launches = launch * launches_per_layer * launch_groups * passes
    return CallCost(recurrence, gemms, launches, host_syncs * gpu.host_sync_us.value)
