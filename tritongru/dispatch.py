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
import importlib.resources
import itertools
import json
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
import triton

from . import tuned
from ._compat import INTERPRET
from .errors import PlanError
from .hardware import KNOWN_GPUS
from .kernels.launch import DoesNotFit, PersistentConfig, Spills, device_name, refusing_spills, resident_bytes_per_weight
from .kernels.limits import DeviceLimits, device_limits

# Shared memory of a block that a program does not give to its weight slice: the staged operands
# of the dots, the reduction across warps and the barrier's static words (27 KiB leaves the
# H100/H200's 200 KiB of the 227 KiB a block may take).
STAGING_RESERVE_BYTES = 27 * 1024
# The most warps a plan gives a program: at 16 a thread may still keep 128 registers (65536 per SM
# on sm_80-sm_120), beyond it too few for its part of a product.
MAX_WARPS = 16
# What a plan is made for without a device at hand (the compile and cost reports, the CPU).
H200 = KNOWN_GPUS["h200"].limits
T = TypeVar("T")

_forced: list[PersistentConfig] = []


@contextlib.contextmanager
def force_config(config: PersistentConfig):
    """Run every recurrence inside the block with ``config`` (tests and tuning)."""
    _forced.append(config)
    try:
        yield config
    finally:
        _forced.pop()


_separate_layers: list[bool] = []


@contextlib.contextmanager
def layer_by_layer():
    """Run every stack inside the block one launch per layer (what the perf suite compares the
    one-launch stack with)."""
    _separate_layers.append(True)
    try:
        yield
    finally:
        _separate_layers.pop()


@dataclasses.dataclass(frozen=True)
class Problem:
    """What a recurrence's configuration depends on."""

    hidden: int
    batch: int
    dtype: torch.dtype
    training: bool
    directions: int = 1  # run by one launch: 2 when both directions of a layer share it
    layers: int = 1  # run by one launch: every layer of a unidirectional stack (the forward only)


def weight_budget(limits: DeviceLimits) -> int:
    """Shared memory one program may give to its weight slice on a GPU of ``limits``."""
    return limits.shared_per_block - STAGING_RESERVE_BYTES


def limits_of(device: torch.device) -> DeviceLimits:
    """The limits a plan for tensors on ``device`` follows: the GPU's own, else the H200's."""
    if device.type == "cuda":
        return device_limits(device.index if device.index is not None else torch.cuda.current_device())
    return H200


@dataclasses.dataclass(frozen=True)
class Tiles:
    """How one kernel's work is tiled within a program, beyond the work split: what the plan table
    records per shape. ``exchange`` only matters for a forward of resident hidden slices."""

    num_warps: int
    block_k: int
    split_k: int
    split_n: int
    block_b: int = 16
    max_registers: int | None = None
    exchange: str = "barrier"


KINDS = ("fwd-inf", "fwd", "bwd")
# Batch sizes the plan distinguishes: one sequence, up to a batch tile, more. A class the table
# has no entry for takes the nearest smaller one's.
BATCH_CLASSES = (1, 16, 64)
PLAN_FORMAT = "tritongru-plan"


def kind_of(training: bool, backward: bool) -> str:
    return "bwd" if backward else ("fwd" if training else "fwd-inf")


def batch_class(batch: int) -> int:
    return next((c for c in BATCH_CLASSES if batch <= c), BATCH_CLASSES[-1])


def plan_key(element_size: int, kind: str, hidden: int, batch: int) -> str:
    return f"{min(element_size, 4)}B/{kind}/h{hidden}/b{batch_class(batch)}"


@functools.lru_cache(maxsize=None)
def plan_document(arch: int) -> dict:
    """``tritongru/plans/sm<arch>.json`` (written by ``python -m tritongru cost-report --search``),
    checked; empty when none ships."""
    path = importlib.resources.files("tritongru") / "plans" / f"sm{arch}.json"
    return parse_plan(path.read_text(encoding="utf-8"), str(path)) if path.is_file() else {}


@functools.lru_cache(maxsize=None)
def plan_table(arch: int) -> dict[str, dict[Tiles, float]]:
    """The tiles the cost model ranked for ``sm_<arch>`` (:func:`plan_document`)."""
    return plan_entries(plan_document(arch)) if plan_document(arch) else {}


def parse_plan(text: str, source: str) -> dict:
    """A plan table's document, refused unless it is one."""
    document = json.loads(text)
    if document.get("format") != PLAN_FORMAT:
        raise RuntimeError(f'{source} is not a tritongru plan table (expected "format": "{PLAN_FORMAT}")')
    return document


def read_plan(text: str, source: str) -> dict[str, dict[Tiles, float]]:
    """The entries of the plan table ``text`` (:func:`plan_entries`)."""
    return plan_entries(parse_plan(text, source))


def plan_entries(document: dict) -> dict[str, dict[Tiles, float]]:
    """A plan table's entries: per :func:`plan_key`, every candidate that fit with its modelled
    step (microseconds, a model figure), cheapest first."""
    fields = {field.name for field in dataclasses.fields(Tiles)}
    return {
        key: {Tiles(**{k: v for k, v in c.items() if k in fields}): c["modelled_step_us"] for c in entry["ranked"]}
        for key, entry in document["entries"].items()
    }


def _plan_entry(hidden: int, element_size: int, kind: str, batch: int, arch: int) -> dict[Tiles, float]:
    """The ``sm_<arch>`` plan entry for the smallest hidden size the table covers that is at least
    ``hidden`` (the largest otherwise), at the batch's class or the nearest smaller class it has."""
    table = plan_table(arch)
    covered = sorted({int(key.split("/")[2][1:]) for key in table})
    bucket = next((h for h in covered if h >= hidden), covered[-1] if covered else None)
    for smaller in reversed([c for c in BATCH_CLASSES if c <= batch_class(batch)]):
        entry = table.get(plan_key(element_size, kind, bucket, smaller)) if bucket is not None else None
        if entry:
            return entry
    return {}


def planned_tiles(hidden: int, element_size: int, kind: str, batch: int, arch: int) -> Tiles:
    """The cheapest modelled tiles of ``sm_<arch>``'s plan table for this shape, else :func:`default_tiles`."""
    entry = _plan_entry(hidden, element_size, kind, batch, arch)
    return next(iter(entry)) if entry else default_tiles(hidden, element_size, kind)


def stack_key(element_size: int, training: bool, layers: int, hidden: int, batch: int) -> str:
    return f"{min(element_size, 4)}B/{'training' if training else 'inference'}/l{layers}/h{hidden}/b{batch_class(batch)}"


@functools.lru_cache(maxsize=None)  # every stacked call asks, and scanning the table's keys costs tens of us
def planned_stack(problem: Problem, arch: int) -> dict | None:
    """The ``sm_<arch>`` plan table's choice for a stack's launch (``"stacks"``, written by
    ``cost-report --search PLAN --layers L``): ``block_h``, the slice width whose call the model
    ranked cheapest, 0 where one launch per layer was; for the nearest covered shape (the nearest
    layer count, the larger of two; the smallest hidden size at least ``hidden``; the batch's
    class or the nearest smaller one; another layer count's entry only where a width fit there),
    None where it covers none. Neither verdict follows the
    layer count alone: one launch gains with more layers at B=16, and not at B=64, where every
    program's exchange grows with the layers (model figures, ``perf/NOTES.md``)."""
    stacks = plan_document(arch).get("stacks", {})
    size, mode = min(problem.dtype.itemsize, 4), "training" if problem.training else "inference"
    covered = [key.split("/") for key in stacks if key.startswith(f"{size}B/{mode}/")]
    counts = {int(parts[2][1:]) for parts in covered}
    hidden = sorted({int(parts[3][1:]) for parts in covered if int(parts[3][1:]) >= problem.hidden})
    if not counts or not hidden:
        return None
    for layers in sorted(counts, key=lambda count: (abs(count - problem.layers), -count)):
        entry = next((found for smaller in reversed([c for c in BATCH_CLASSES if c <= batch_class(problem.batch)])
                      if (found := stacks.get(stack_key(size, problem.training, layers, hidden[0], smaller)))), None)
        # Where no width of that many layers fit, fewer or more layers may: no verdict for them.
        if entry is None or entry["ranked"] or layers == problem.layers:
            return entry
    return None


def modelled_step_us(problem: Problem, config: PersistentConfig, limits: DeviceLimits = H200) -> float | None:
    """The plan table's modelled step of ``config`` for ``problem`` (forward, plus backward when
    training: one configuration serves both passes), or None where the model did not rank it: the
    tiles of an entry count for ``config`` when the planner builds ``config`` from them."""
    total = 0.0
    for backward in (False, True) if problem.training else (False,):
        entry = _plan_entry(problem.hidden, problem.dtype.itemsize, kind_of(problem.training, backward), problem.batch,
                            limits.arch)
        step = next((us for tiles, us in entry.items()
                     if same_launch(heuristic_config(problem, limits, backward, tiles=tiles), config)), None)
        if step is None:
            return None
        total += step
    return total


def same_launch(planned: PersistentConfig, config: PersistentConfig) -> bool:
    # A register cap is how the search kept a candidate spill-free, not another tiling.
    return dataclasses.replace(planned, max_registers=None) == dataclasses.replace(config, max_registers=None)


def longest_chunk(hidden: int, element_size: int, kind: str) -> int:
    """The longest reduction chunk a kernel is given: the reduction (H forward, 3H backward)
    rounded up to a power of two, at most what compiles spill-free (1024 for 16-bit weights, 512
    for fp32)."""
    reduction = 3 * hidden if kind == "bwd" else hidden
    return min(max(triton.next_power_of_2(reduction), 16), 1024 if element_size <= 2 else 512)


def default_tiles(hidden: int, element_size: int, kind: str) -> Tiles:
    """Tiles for a shape the plan table does not cover: eight warps splitting the columns where a
    program holds all of W_hh, the reduction where it holds a slice too narrow to split
    (:func:`split_among_warps`; the reduction split spills whole weights at H=128 on sm_100), in
    the longest chunk or, where that does not
    divide the reduction, the longest that does, down to 64: padded chunks hold zeros in shared
    memory and multiply them (H=768 in 1024-deep chunks takes a third more than it needs)."""
    reduction = 3 * hidden if kind == "bwd" else hidden
    block_k = longest_chunk(hidden, element_size, kind)
    dividing = reduction & -reduction  # the largest power of two dividing it
    if reduction % block_k and dividing >= 64:
        block_k = dividing
    return Tiles(num_warps=8, block_k=block_k, split_k=1, split_n=8)


# Pure in its arguments, and asked several times per call (the op, the backward, the planner of
# bidirectional launches): computed once per shape.
@functools.lru_cache(maxsize=1024)
def heuristic_config(
    problem: Problem, limits: DeviceLimits, backward: bool = False, exchange: str | None = None, tiles: Tiles | None = None,
    slice_width: int | None = None, product: str | None = None,
) -> PersistentConfig:
    """A configuration that is always valid and co-resident; the starting point before tuning.

    The work split follows the shared-memory budget: W_hh goes whole into every program while it
    takes at most half the budget (programs are independent batch tiles, nothing to exchange);
    otherwise hidden slices of at least 16 units, as many as there are SMs, resident while a slice
    fits the budget and re-read every step when it does not. Within a program, ``tiles`` (default:
    the plan table's, chosen by modelled cost, :func:`planned_tiles`) give the warps, how they
    split the product, the reduction chunk, the batch tile and how resident slices hand on their
    state (``exchange`` overrides it). A stack's slices are as wide as the plan table's choice
    (:func:`planned_stack`) or ``slice_width``, where that leaves each layer its share of the SMs,
    and its backward takes ``W_hh`` by the rows or columns the table chose, or ``product``.
    """
    H, B = problem.hidden, problem.batch
    kind = kind_of(problem.training, backward)
    # Slices of the default tiles cap registers at 255 (one program per SM): without a cap ptxas
    # aims at several programs per SM and spills 8-16 bytes of resident tiles on sm_80-sm_120. A
    # program holding all of W_hh is left uncapped: on sm_100 the cap makes it spill (bf16 H=128).
    capped = tiles is None and not _plan_entry(H, problem.dtype.itemsize, kind, B, limits.arch)
    tiles = tiles or planned_tiles(H, problem.dtype.itemsize, kind, B, limits.arch)
    budget = weight_budget(limits)
    # The SMs one direction's (or layer's) programs may take (the grid is groups x num_programs).
    stacked = problem.layers > 1
    sms = max(1, limits.sms // (problem.directions * problem.layers))
    # A stack's programs hold their slices of W_ih beside those of W_hh.
    matrices = 2 if stacked else 1
    block_b = tiles.block_b
    b_tiles = triton.cdiv(B, block_b)
    h_pad = max(triton.next_power_of_2(H), 16)
    common = dict(num_warps=tiles.num_warps, max_registers=tiles.max_registers, split_k=tiles.split_k, split_n=tiles.split_n)
    if 3 * h_pad * H * resident_bytes_per_weight(problem.dtype) * matrices <= budget // 2:
        block_k = min(tiles.block_k, max(triton.next_power_of_2(3 * H if backward else H), 16))
        whole = PersistentConfig(block_b, h_pad, block_k, num_programs=min(b_tiles, sms), **common)
        return split_among_warps(whole, prefer="n")
    # Slices sized for one direction on all SMs, whatever the directions: the compile-checked
    # tiles; a stack's layers share the SMs.
    block_h = max(16, triton.next_power_of_2(triton.cdiv(H, sms * (1 if stacked else problem.directions))))
    if stacked:
        chosen = planned_stack(problem, limits.arch) if slice_width is None else {"block_h": slice_width}
        block_h = max(block_h, (chosen or {}).get("block_h", 0))
        if backward and product is None:
            product = (chosen or {}).get("backward_product", "columns")
    if capped or stacked:  # a stack runs one program per SM too
        common["max_registers"] = 255
    if stacked and (problem.training or block_h >= 32):
        # Slices of two weight matrices, with the training forward's stores or the backward's
        # longer reduction, or 32 units wide: with the one-layer tiles (often 4 warps) ptxas
        # spills 16-464 B on sm_90 (bf16 H=512 in 6 layers; fp32 H=256 in 6, backward); eight
        # warps, splitting the forward's product both ways and the backward's 8 ways, do not, but
        # for 8 B in fp32's training forward. 16-unit inference slices keep the one-layer tiles,
        # modelled up to a third cheaper there (cost-report --layers).
        common.update(num_warps=8, split_k=8 if backward else 4, split_n=1 if backward else 2)
    sliced = split_among_warps(PersistentConfig(block_b, block_h, tiles.block_k, num_programs=1, **common), prefer="k")
    h_tiles = sliced.num_h_tiles(H)
    if sliced.weight_bytes(H, problem.dtype) * matrices <= budget:
        groups = max(1, min(b_tiles, sms // h_tiles))
        chosen = tiles.exchange if exchange is None else exchange
        if stacked:
            chosen = "flags"  # layers run different steps at once: no barrier can end a step
        if chosen == "flags" and problem.dtype.itemsize > 4:
            chosen = "barrier"  # an fp64 value and its tag fit no single-copy-atomic word
        rows = stacked and backward and product == "rows" and sliced.rows_refusal(H, B) is None
        return dataclasses.replace(sliced, num_programs=h_tiles * groups, exchange=chosen,
                                   product="rows" if rows else "columns")
    return dataclasses.replace(sliced, num_programs=min(h_tiles * b_tiles, sms), resident=False)


def split_among_warps(config: PersistentConfig, prefer: str) -> PersistentConfig:
    """``config`` with its product split into as many parts as it has warps. Its own split is kept
    where the tiles allow it; otherwise the warps split first the reduction (``prefer="k"``) or
    the columns, and a program gets fewer warps where the tiles allow no more parts: a warp
    without a part of its own would only repeat another's."""
    if config.block_k // config.split_k >= 16 and config.block_h // config.split_n >= 8:
        return dataclasses.replace(config, num_warps=config.split_k * config.split_n)
    warps = config.num_warps
    most_k, most_n = max(1, config.block_k // 16), max(1, config.block_h // 8)
    if prefer == "k":
        split_k = min(warps, most_k)
        split_n = min(warps // split_k, most_n)
    else:
        split_n = min(warps, most_n)
        split_k = min(warps // split_n, most_k)
    return dataclasses.replace(config, num_warps=split_k * split_n, split_k=split_k, split_n=split_n)


def interpreter_config(problem: Problem) -> PersistentConfig:
    """The fixed configuration of the CPU interpreter: one program, small tiles, the product split
    both ways where the tiles allow (the interpreter runs one "warp", but the split's indexing is
    what it checks)."""
    h_pad = max(triton.next_power_of_2(problem.hidden), 16)
    block_b = min(max(triton.next_power_of_2(problem.batch), 16), 32)
    block_h = min(h_pad, 64)
    block_k = min(h_pad, 64)
    split_k, split_n = max(1, block_k // 32), max(1, block_h // 16)
    return PersistentConfig(
        block_b=block_b, block_h=block_h, block_k=block_k, num_programs=1, resident=block_h == h_pad,
        num_warps=split_k * split_n, split_k=split_k, split_n=split_n,
    )


def smaller_plans(problem: Problem, limits: DeviceLimits, backward: bool, config: PersistentConfig) -> Iterator[PersistentConfig]:
    """The plans to try, in order, after ``config`` did not fit one SM of ``limits``: the planner's
    own where ``config`` came from elsewhere (a tuned table), then less shared memory for the
    weights (the planner's budget halved, from whole weights to slices to weights streamed from L2
    every step), then shorter chunks of the reduction (less state staged per chunk)."""
    seen = {config}
    planned = heuristic_config(problem, limits, backward)
    budget = limits
    while True:
        if planned not in seen:
            seen.add(planned)
            yield planned
        if not planned.resident:
            break
        budget = dataclasses.replace(budget, shared_per_block=STAGING_RESERVE_BYTES + weight_budget(budget) // 2)
        planned = heuristic_config(problem, budget, backward)
    while planned.block_k // 2 >= 16:
        planned = split_among_warps(dataclasses.replace(planned, block_k=planned.block_k // 2), prefer="k")
        yield planned


def spill_remedies(config: PersistentConfig) -> Iterator[PersistentConfig]:
    """The plans to try after ``config`` fit but spilled its resident weights, each keeping its work
    split (slices, batch tiles, programs): the register cap the other way (ptxas allocates
    differently under a cap, and which way spills depends on the architecture: capped, sm_100
    spills fp32 H=512 slices; uncapped, sm_120 spills a 16-bit H=64 backward holding all of W_hh);
    the product over twice the warps, the reduction split first (each thread holds half the
    accumulators; it is what keeps fp32 stacks' training forward spill-free on sm_90); half the
    reduction chunk (less state staged per chunk), capped and not; for a stack's backward by rows,
    the same by columns."""
    yield dataclasses.replace(config, max_registers=None if config.max_registers else 255)
    for split_k, split_n in ((2 * config.split_k, config.split_n), (config.split_k, 2 * config.split_n)):
        if config.block_k // split_k >= 16 and config.block_h // split_n >= 8 and split_k * split_n <= MAX_WARPS:
            yield dataclasses.replace(config, num_warps=split_k * split_n, split_k=split_k, split_n=split_n,
                                      max_registers=None)
            break
    if config.block_k // 2 >= 16:
        shorter = split_among_warps(dataclasses.replace(config, block_k=config.block_k // 2), prefer="k")
        yield dataclasses.replace(shorter, max_registers=255)
        yield dataclasses.replace(shorter, max_registers=None)
    if config.product == "rows":  # a stack's backward by columns holds no partial over all H units
        yield from spill_remedies(dataclasses.replace(config, product="columns"))


def first_fitting(problem: Problem, limits: DeviceLimits, backward: bool, config: PersistentConfig,
                  attempt: Callable[[PersistentConfig], T], where: str) -> tuple[PersistentConfig, T, list[DoesNotFit]]:
    """``(chosen, attempt(chosen), refused)`` for the first of ``config`` and its
    :func:`smaller_plans` whose compiled kernel fits (``attempt`` raises :class:`DoesNotFit` before
    anything runs where it does not), with the plans refused on the way. Resident weights that
    spill are refused while a remedy with the same work split compiles without
    (:func:`spill_remedies`); where none does, the spilling plan runs: a few spilled bytes cost
    less than the smaller plans' weights re-read from L2. A stack's launch neither spills nor
    streams its weights: its alternative, one launch per layer, keeps every layer's on chip without
    spilling. What the op, the tuner's baseline and the compile report all choose by. Raises
    :class:`PlanError` where nothing fits ``where`` (a GPU's name)."""
    refused = []
    for candidate in itertools.chain((config,), smaller_plans(problem, limits, backward, config)):
        if problem.layers > 1 and not candidate.resident:
            break
        try:
            with refusing_spills():
                return candidate, attempt(candidate), refused
        except Spills as error:
            refused.append(error)
        except DoesNotFit as error:
            refused.append(error)
            continue
        for remedy in spill_remedies(candidate):
            try:
                with refusing_spills():
                    return remedy, attempt(remedy), refused
            except DoesNotFit as error:
                refused.append(error)
        if problem.layers > 1:
            continue
        return candidate, attempt(candidate), refused
    raise PlanError(
        f"tritongru: no plan of the {kind_of(problem.training, backward)} kernel for hidden {problem.hidden}, batch "
        f"{problem.batch}, {problem.dtype} in {problem.directions} direction(s) fits {where} "
        f"({limits.describe()}); tried: " + "; ".join(str(error) for error in refused)
    )


_fitted: dict[tuple[DeviceLimits, Problem, bool], PersistentConfig] = {}
# The stack launches (problem, backward) that :func:`run_planned` found no plan for, per GPU kind:
# they run layer by layer from then on, without compiling their way to the same verdict each call.
_stacks_refused: set[tuple[DeviceLimits, Problem, bool]] = set()


def stack_refused(problem: Problem, device: torch.device, backward: bool) -> bool:
    return (limits_of(device), problem, backward) in _stacks_refused


def run_planned(plan: LaunchPlan, backward: bool, device: torch.device, run: Callable[[PersistentConfig], T]) -> T:
    """``run(config)`` with the plan's configuration for the forward (or ``backward``) kernel, or
    with the first plan that fits the device (:func:`first_fitting`) where the planned one's
    compiled kernel does not fit (:class:`DoesNotFit`, raised before anything runs) or spills its
    resident weights; later plans of the same problem on a GPU of this kind then take it directly.
    A forced, tuned or already fitted configuration runs as it is, spills and all (a tuned one was
    timed against the others); only one that does not fit is replaced, and a forced one never. A
    stack's launch found to fit no plan raises :class:`PlanError` at once on later calls."""
    problem, config = plan.problem, plan.config(backward)
    limits = limits_of(device)
    if (limits, problem, backward) in _stacks_refused:
        raise PlanError(f"tritongru: no plan of the {problem.layers}-layer stack fits {device_name(device)}")
    if plan.source != "planned" or _fitted.get((limits, problem, backward)) == config:
        try:
            return run(config)
        except DoesNotFit as error:
            if plan.source == "forced":
                raise PlanError(f"tritongru: the forced configuration does not fit: {error}") from error
    try:
        chosen, result, tried = first_fitting(problem, limits, backward, config, run, device_name(device))
    except PlanError:
        if problem.layers > 1:
            _stacks_refused.add((limits, problem, backward))
        raise
    if tried:  # something was refused on the way (perhaps only the spills of the plan chosen)
        _fitted[(limits, problem, backward)] = chosen
    return result


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """Everything decided for the launches of one layer call: the problem one launch runs (its
    ``directions``: 1, or 2 where both directions of a bidirectional layer share a launch), the
    forward kernel's configuration, the backward's when training, and where they come from
    (``forced``, ``interpreter``, ``fitted``: a smaller plan that fit where the planned one did
    not, ``tuned``, ``planned``). The op, the perf suite and the reports read this one plan."""

    problem: Problem
    forward: PersistentConfig
    backward: PersistentConfig | None
    source: str

    def config(self, backward: bool = False) -> PersistentConfig:
        config = self.backward if backward else self.forward
        if config is None:
            raise ValueError("an inference plan has no backward configuration")
        return config


def plan_ahead(problem: Problem, limits: DeviceLimits, exchange: str | None = None) -> LaunchPlan:
    """The plan of one launch of ``problem`` for a GPU of ``limits`` without the GPU at hand (no
    tuned table, nothing compiled yet): the planner's configurations, which the compile and cost
    reports check and price, and :func:`plan_launch` takes where nothing else applies."""
    forward = heuristic_config(problem, limits, False, exchange)
    backward = heuristic_config(problem, limits, True, exchange) if problem.training else None
    return LaunchPlan(problem, forward, backward, "planned")


def plan_launch(problem: Problem, device: torch.device) -> LaunchPlan:
    """The plan of one launch of ``problem`` on ``device``: forced, else the interpreter's, else
    the plan that :func:`run_planned` found to fit where the planned one did not, else the tuned
    table's for this GPU (one configuration for both passes), else :func:`plan_ahead`'s."""
    passes = (False, True) if problem.training else (False,)
    if _forced:
        return LaunchPlan(problem, _forced[-1], _forced[-1] if problem.training else None, "forced")
    if INTERPRET:
        config = interpreter_config(problem)
        return LaunchPlan(problem, config, config if problem.training else None, "interpreter")
    limits = limits_of(device)
    # Tuned tables time one layer's launches; a stack's programs also hold W_ih.
    tuned_config = tuned.lookup(problem, device) if problem.layers == 1 else None
    planned = plan_ahead(problem, limits)
    configs, sources = [], []
    for backward in passes:
        fitted = _fitted.get((limits, problem, backward))
        config = fitted or tuned_config or planned.config(backward)
        configs.append(config)
        sources.append("fitted" if fitted else "tuned" if tuned_config else "planned")
    return LaunchPlan(problem, configs[0], configs[1] if problem.training else None, sources[0])


def plan_layer(hidden: int, batch: int, dtype: torch.dtype, training: bool, bidirectional: bool,
               device: torch.device) -> LaunchPlan:
    """The plan of each launch of one layer: both directions of a bidirectional layer share one
    launch when the configurations planned for that (forward, and backward when training) either
    need no co-residency or keep both directions' programs within one program per SM; otherwise
    each direction gets its own launch and the whole GPU."""
    if bidirectional:
        shared = plan_launch(Problem(hidden, batch, dtype, training, directions=2), device)
        sms = limits_of(device).sms
        configs = [shared.forward, shared.backward] if training else [shared.forward]
        if not any(config.grid_synchronised(hidden) and 2 * config.num_programs > sms for config in configs):
            return shared
    return plan_launch(Problem(hidden, batch, dtype, training), device)


def plan_stack(hidden: int, batch: int, dtype: torch.dtype, training: bool, layers: int,
               device: torch.device) -> LaunchPlan | None:
    """The plan of one launch running every layer of a unidirectional stack, or None where it does
    not apply and the layers run one launch each: fewer than two layers, fp64 (no atomic word holds
    a value and its tag), a stack whose weights (W_ih and W_hh) do not stay on chip with one
    program per SM or whose launch was found to fit no plan (:func:`run_planned`), or a shape where
    the plan table's model ranked one launch per layer cheaper (:func:`planned_stack`)."""
    if layers < 2 or dtype.itemsize > 4 or _separate_layers:
        return None
    problem = Problem(hidden, batch, dtype, training, layers=layers)
    if stack_refused(problem, device, backward=False):
        return None
    chosen = None if INTERPRET or _forced else planned_stack(problem, limits_of(device).arch)
    if chosen is not None and chosen["block_h"] == 0:
        return None  # the model ranked one launch per layer cheaper
    plan = plan_launch(problem, device)
    if not plan.forward.resident:
        return None
    if not INTERPRET and layers * plan.forward.num_programs > limits_of(device).sms:
        return None
    return plan


def choose_config(problem: Problem, device: torch.device, backward: bool = False) -> PersistentConfig:
    """The configuration of ``problem``'s forward (or ``backward``) kernel in :func:`plan_launch`."""
    return plan_launch(problem, device).config(backward)
