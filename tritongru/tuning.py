"""The offline search for per-GPU launch configurations (``tritongru tune``, ``TRITONGRU_AUTOTUNE``).

Triton's own autotuner does not fit these kernels: its cache key has no device name (an H100 and an
H200 share entries) and it would launch every candidate, including barrier grids that cannot be
co-resident and would hang. This tuner instead

1. enumerates :class:`~tritongru.kernels.launch.PersistentConfig` candidates for a
   :class:`~tritongru.dispatch.Problem` (:data:`SEARCH_SPACE`);
2. prunes them before anything runs (:func:`prune`): invalid tilings, weight slices over the
   shared-memory budget, barrier grids larger than an optimistic co-residency bound. The exact
   bound, from the compiled kernel's registers and shared memory, is checked by the launcher before
   every launch, so a candidate that passes this prune and still does not fit is refused with an
   error during its untimed first call, never launched;
3. times the survivors with ``triton.testing.do_bench`` (median) on random inputs, after checking
   that each one computes what the untuned plan computes;
4. stores the fastest in the user's table (:mod:`tritongru.tuned`, which the planner reads).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import triton
import triton.testing

from . import _compat, tuned
from .dispatch import (
    Problem,
    first_fitting,
    heuristic_config,
    modelled_step_us,
    weight_budget,
)
from .kernels.gru_backward import gru_backward
from .kernels.gru_forward import gru_forward
from .kernels.launch import DoesNotFit, PersistentConfig
from .kernels.limits import DeviceLimits, device_limits

# Values each searched field takes; block_h ranges over the powers of two from 16 to the padded
# hidden size, num_programs follows from the tiling, and every split of the warps into parts of
# the product is tried (see candidate_configs). Pipeline stages only matter for the loop over
# chunks of weights re-read every step.
SEARCH_SPACE: dict[str, tuple[int, ...]] = {
    "block_b": (16, 32, 64, 128),
    "block_k": (64, 128, 256, 512, 1024),
    "num_warps": (4, 8),
    "num_stages": (1, 2),
}

# Two configs differ only in summation order; anything beyond this is a wrong result, not rounding.
AGREEMENT_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-9, torch.float16: 2e-2, torch.bfloat16: 5e-2}


class TuningUnavailableError(RuntimeError):
    """Tuning was asked for where kernels cannot be timed on a GPU."""


# --------------------------------------------------------------------------------------------------
# Search space and pruning


def _powers_of_two(low: int, high: int) -> list[int]:
    return [1 << e for e in range(int(math.log2(low)), int(math.log2(high)) + 1)]


def candidate_configs(problem: Problem, limits: DeviceLimits) -> list[PersistentConfig]:
    """Every configuration of :data:`SEARCH_SPACE` for ``problem``, before pruning.

    The grid follows from the tiling: one program per batch tile when a program holds all of
    W_hh; with hidden slices and resident weights, one group of slices, or one group per batch tile;
    with streamed weights, one program per tile up to the SM count. Each tiling is tried with every
    split of its warps into parts of the product that gives every warp distinct work, and resident
    slices with both exchanges of the forward's state (barrier, ready flags) where the dtype allows.
    """
    H, B = problem.hidden, problem.batch
    sms = max(1, limits.sms // problem.directions)  # what one direction's programs may take
    h_pad = max(triton.next_power_of_2(H), 16)
    b_pad = max(triton.next_power_of_2(B), 16)
    exchanges = ("barrier", "flags") if problem.dtype.itemsize <= 4 else ("barrier",)
    configs = []
    for block_b in (b for b in SEARCH_SPACE["block_b"] if b <= b_pad):
        b_tiles = triton.cdiv(B, block_b)
        for block_h in _powers_of_two(16, h_pad):
            h_tiles = triton.cdiv(H, block_h)
            for block_k in sorted({min(k, max(triton.next_power_of_2(3 * H), 16)) for k in SEARCH_SPACE["block_k"]}):
                grids = [(True, min(b_tiles, sms))] if h_tiles == 1 else [
                    *((True, h_tiles * groups) for groups in sorted({1, b_tiles})),
                    *((False, programs) for programs in sorted({min(h_tiles, sms), min(h_tiles * b_tiles, sms)})),
                ]
                for resident, programs in grids:
                    for num_warps, split_k, split_n in _splits(block_k, block_h):
                        for num_stages in SEARCH_SPACE["num_stages"] if not resident else (1,):
                            config = PersistentConfig(
                                block_b, block_h, block_k, programs, num_warps, num_stages, resident,
                                split_k=split_k, split_n=split_n,
                            )
                            configs.append(config)
                            if resident and h_tiles > 1 and "flags" in exchanges:
                                configs.append(dataclasses.replace(config, exchange="flags"))
    return configs


def _splits(block_k: int, block_h: int) -> list[tuple[int, int, int]]:
    """``(num_warps, split_k, split_n)``: the ways the searched warp counts split a product into as
    many parts (each at least 16 deep and 8 wide)."""
    return [
        (warps, warps // split_n, split_n)
        for warps in SEARCH_SPACE["num_warps"]
        for split_n in _powers_of_two(1, warps)
        if block_k // (warps // split_n) >= 16 and block_h // split_n >= 8
    ]


def static_capacity(config: PersistentConfig, problem: Problem, limits: DeviceLimits) -> int:
    """An upper bound of the co-resident grid, before compiling: the kernel uses at least its weight
    slice in shared memory and at least one register per thread, so the real bound is never larger."""
    shared = config.weight_bytes(problem.hidden, problem.dtype) if config.resident else 0
    return limits.co_resident(1, shared, config.num_warps)


def prune(
    problem: Problem,
    configs: Iterable[PersistentConfig],
    limits: DeviceLimits,
    capacity: Callable[[PersistentConfig], int] | None = None,
) -> tuple[list[PersistentConfig], list[tuple[PersistentConfig, str]]]:
    """Split ``configs`` into those worth timing and ``(config, reason)`` for the rest.

    ``capacity(config)`` is the largest co-resident grid of a config (for example from
    :func:`tritongru.kernels.launch.co_resident_capacity` on a compiled kernel); the default is
    :func:`static_capacity`, an upper bound that needs no GPU.
    """
    capacity = capacity or (lambda config: static_capacity(config, problem, limits))
    budget = weight_budget(limits)
    kept, pruned = [], []
    for config in dict.fromkeys(configs):
        try:
            config.validate(problem.hidden, problem.batch, problem.dtype, problem.directions)
        except ValueError as error:
            pruned.append((config, f"invalid: {error}"))
            continue
        weight_bytes = config.weight_bytes(problem.hidden, problem.dtype)
        if config.resident and weight_bytes > budget:
            pruned.append((config, f"weight slice of {weight_bytes} bytes exceeds the shared-memory budget of {budget}"))
            continue
        if config.grid_synchronised(problem.hidden):
            fits, programs = capacity(config), problem.directions * config.num_programs
            if programs > fits:
                pruned.append((config, f"synchronised grid of {programs} programs cannot be co-resident (at most {fits})"))
                continue
        kept.append(config)
    return kept, pruned


def rank(problem: Problem, configs: list[PersistentConfig], limits: DeviceLimits) -> list[PersistentConfig]:
    """``configs`` in the order they are timed when a cap applies: the heuristic's choice first (the
    baseline every result is compared with) and its twin with the other exchange, then by the
    cost model's figure for the shape (the plan table's ranking, :func:`dispatch.modelled_step_us`),
    then the configurations it did not model: resident weights, grids nearest one program per SM,
    fewer warps, larger K chunks."""
    baseline = heuristic_config(problem, limits)
    twin = heuristic_config(problem, limits, exchange="flags" if baseline.exchange == "barrier" else "barrier")

    def order(config: PersistentConfig):
        modelled = modelled_step_us(problem, config, limits)
        return (
            config != baseline, config != twin, modelled is None, modelled or 0.0, not config.resident,
            abs(config.num_programs - limits.sms), config.num_warps, config.num_stages, -config.block_k,
        )

    return sorted(configs, key=order)


# --------------------------------------------------------------------------------------------------
# Timing


@dataclasses.dataclass
class TuningResult:
    """The outcome of tuning one problem on one GPU."""

    problem: Problem
    identity: tuned.GPUIdentity
    config: PersistentConfig
    median_ms: float
    heuristic_ms: float
    seq_len: int
    timed: int
    pruned: list[tuple[PersistentConfig, str]]

    @property
    def key(self) -> tuned.BucketKey:
        return tuned.bucket_key(self.problem)


def require_gpu(device: torch.device | None = None) -> torch.device:
    """The CUDA device to tune on; raises :class:`TuningUnavailableError` where there is none."""
    if _compat.INTERPRET:
        raise TuningUnavailableError(
            "TRITON_INTERPRET=1 is set: kernels run on the CPU interpreter, whose times say nothing about a GPU; "
            "unset it to tune on a GPU"
        )
    if not torch.cuda.is_available():
        raise TuningUnavailableError(
            f"tuning times the kernels on a CUDA GPU, and this machine has none "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False)"
        )
    device = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    can_run, why = _compat.kernels_can_run(device)
    if not can_run:
        raise TuningUnavailableError(f"cannot tune on {device}: {why}")
    return device


def _random_inputs(problem: Problem, seq_len: int, device: torch.device) -> dict[str, torch.Tensor]:
    # A private generator: tuning in the middle of a user's program must not move their RNG state.
    generator = torch.Generator(device=device).manual_seed(0)
    H, B, D, dtype = problem.hidden, problem.batch, problem.directions, problem.dtype

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator, device=device, dtype=torch.float32) * scale).to(dtype)

    return {
        "gx": randn(seq_len, B, D * 3 * H),
        "w_hh": randn(D, 3 * H, H, scale=H**-0.5),
        "b_hn": randn(D, H, scale=0.1),
        "h0": randn(D, B, H),
        "dy": randn(seq_len, B, D * H),
        "dh_n": randn(D, B, H),
    }


def _runner(problem: Problem, inputs: dict[str, torch.Tensor], config: PersistentConfig) -> Callable[[], tuple]:
    precision = _compat.fp32_dot_precision()
    gx, w_hh, b_hn, h0 = inputs["gx"], inputs["w_hh"], inputs["b_hn"], inputs["h0"]
    if not problem.training:
        return lambda: gru_forward(gx, w_hh, b_hn, h0, None, False, False, config, precision)[:2]

    def forward_backward():
        y, h_n, hs, gates = gru_forward(gx, w_hh, b_hn, h0, None, False, True, config, precision)
        return (y, h_n, *gru_backward(inputs["dy"], inputs["dh_n"], w_hh, hs, gates, None, False, config, precision))

    return forward_backward


def _disagreement(outputs: tuple, expected: tuple) -> float:
    return max(
        ((a.double() - e.double()).abs().max() / e.double().abs().max().clamp_min(1e-30)).item()
        for a, e in zip(outputs, expected)
    )


def _untuned_run(problem: Problem, limits: DeviceLimits, inputs: dict, where: str) -> tuple[PersistentConfig, tuple]:
    """The configuration that runs ``problem`` untuned on this GPU (the planner's, or what
    :func:`tritongru.dispatch.first_fitting` takes where it does not fit or spills, as the op
    would) and its result."""
    planned = heuristic_config(problem, limits)

    def attempt(config: PersistentConfig) -> tuple:
        try:
            return _runner(problem, inputs, config)()
        except DoesNotFit:
            raise
        except (RuntimeError, ValueError, triton.TritonError) as error:
            raise RuntimeError(
                f"the untuned configuration {config.label()} of {tuned.bucket_name(tuned.bucket_key(problem))} failed its "
                f"first run, so there is nothing to check candidates against: {str(error).splitlines()[0]}"
            ) from error

    config, result, _ = first_fitting(problem, limits, False, planned, attempt, where)
    return config, result


def tune_problem(
    problem: Problem,
    device: torch.device | None = None,
    *,
    seq_len: int = 128,
    max_configs: int = 16,
    log: Callable[[str], None] = lambda message: None,
) -> TuningResult:
    """Time the pruned candidates of ``problem`` (at most ``max_configs``, in :func:`rank` order)
    and return the fastest that agrees with the heuristic's result."""
    device = require_gpu(device)
    if max_configs < 1:
        raise ValueError(f"max_configs must be >= 1, got {max_configs}")
    limits = device_limits(device.index)
    kept, pruned = prune(problem, candidate_configs(problem, limits), limits)
    inputs = _random_inputs(problem, seq_len, device)
    # The baseline is what runs untuned: its result is the one every candidate must agree with,
    # and its time the one the table records next to the best.
    baseline, expected = _untuned_run(problem, limits, inputs, "this GPU")
    candidates = list(dict.fromkeys([baseline, *rank(problem, kept, limits)]))[:max_configs]
    tolerance = AGREEMENT_TOLERANCE[problem.dtype]
    times: dict[PersistentConfig, float] = {}
    for config in candidates:
        run = _runner(problem, inputs, config)
        try:
            # The untimed first call compiles, and the launcher refuses a barrier grid that the
            # compiled kernel cannot keep co-resident before launching it.
            disagreement = _disagreement(run(), expected)
        except (RuntimeError, ValueError, triton.TritonError) as error:
            pruned.append((config, f"failed its first run: {str(error).splitlines()[0]}"))
            continue
        if not disagreement <= tolerance:
            pruned.append((config, f"result differs from the heuristic's by {disagreement:.2e} (tolerance {tolerance:.0e})"))
            continue
        times[config] = triton.testing.do_bench(run, return_mode="median")
        log(f"  {config.label()}: {times[config]:.4f} ms")
    if baseline not in times:
        reasons = "; ".join(f"{config.label()}: {reason}" for config, reason in pruned if config == baseline)
        raise RuntimeError(f"the untuned configuration {baseline.label()} could not be timed ({reasons})")
    best = min(times, key=times.get)
    return TuningResult(problem, tuned.device_identity(device), best, times[best], times[baseline], seq_len, len(times), pruned)


# The shape set ``tritongru tune`` covers by default: the target shapes, the core ones
# (hidden 256-1024, batch 1-64) first, so that a run cut short by its time budget covers them.
DEFAULT_HIDDENS = (256, 512, 1024, 64, 128)
DEFAULT_BATCHES = (1, 16, 64, 256)


def problem_set(
    hiddens: Iterable[int] = DEFAULT_HIDDENS,
    batches: Iterable[int] = DEFAULT_BATCHES,
    dtypes: Iterable[torch.dtype] = (torch.bfloat16,),
    training: Iterable[bool] = (False, True),
    directions: Iterable[int] = (1,),
) -> list[Problem]:
    """Every combination of the given values, as problems to tune, in the order given (hidden
    outermost, then batch, then inference before training, then directions per launch)."""
    return [
        Problem(h, b, d, t, n) for d in dtypes for h in hiddens for b in batches for t in training for n in directions
    ]


def tune(
    problems: Iterable[Problem],
    device: torch.device | None = None,
    *,
    path: Path | None = None,
    seq_len: int = 128,
    max_configs: int = 16,
    time_budget_s: float | None = None,
    log: Callable[[str], None] = print,
) -> list[TuningResult]:
    """Tune each problem and save after each one (an interrupted run keeps what it measured).

    Stops starting new problems once ``time_budget_s`` has passed.
    """
    device = require_gpu(device)
    start = time.monotonic()
    results = []
    for problem in problems:
        if time_budget_s is not None and time.monotonic() - start > time_budget_s:
            log(f"time budget of {time_budget_s:.0f} s spent; not tuning the remaining problems")
            break
        log(f"tuning {tuned.bucket_name(tuned.bucket_key(problem))} ...")
        result = tune_problem(problem, device, seq_len=seq_len, max_configs=max_configs, log=log)
        saved = tuned.save_results([result], path)
        results.append(result)
        log(
            f"  best {result.config.label()}: {result.median_ms:.4f} ms "
            f"(heuristic {result.heuristic_ms:.4f} ms, {result.timed} timed, {len(result.pruned)} pruned) -> {saved}"
        )
    return results
