"""Measuring one case: accuracy against float64, time, FLOP rate and memory of each provider.

FLOP count (:func:`case_flops`), per layer, direction and time step of the forward pass:
``2 * B * 3H * (I_layer + H)`` for the input and recurrent products (``I_layer`` is the input size
in layer 0 and ``directions * H`` above it) plus ``ELEMENTWISE_FLOPS * B * H`` for the gates. The
backward pass counts as twice the forward (the gradients of the inputs and of the weights are
one product each per forward product), so ``fwd_bwd`` is three forwards. ``train_fwd`` counts as
one forward.

Latency per step is the call's median time divided by the sequential recurrence steps
(``T x layers x directions``), the same count for every provider, whether or not it runs a layer's
two directions at once.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import triton.testing

from tritongru import dispatch
from tritongru.accuracy import build_module, float64_truth, make_inputs, max_relative_error, run

from .providers import Provider
from .sweeps import Case

# Gate arithmetic per hidden unit and row, counting add and multiply as 1 and a sigmoid or tanh as 4:
# r and z: 2 adds + sigmoid each; n: add, multiply, add + tanh; h: subtract, multiply, add.
ELEMENTWISE_FLOPS = 2 * (2 + 4) + (3 + 4) + 3
# Calls shorter than this are timed as CUDA-graph replays: launch overhead would dominate otherwise.
CUDA_GRAPH_BELOW_MS = 1.0
QUANTILES = (0.5, 0.2, 0.8)


def forward_flops(case: Case) -> float:
    """FLOPs of one forward call of ``case`` (see the module docstring)."""
    H, B = case.hidden, case.batch
    total = 0
    for layer in range(case.layers):
        layer_input = case.input_size if layer == 0 else case.directions * H
        per_step = 2 * B * 3 * H * (layer_input + H) + ELEMENTWISE_FLOPS * B * H
        total += case.directions * case.seq_len * per_step
    return float(total)


def case_flops(case: Case) -> float:
    return forward_flops(case) * (3 if case.mode == "fwd_bwd" else 1)


def time_call(fn: Callable[[], object], device: torch.device, *, repeats: int, warmup_ms: int, rep_ms: int, graphable: bool,
              timing: str = "auto"):
    """``(p50, p20, p80)`` in ms and the timer used.

    GPU: ``triton.testing.do_bench`` quantiles after a warm-up call; with ``timing="graph"`` the
    call captured once into a CUDA graph and its replays timed; with ``"auto"`` calls shorter than
    :data:`CUDA_GRAPH_BELOW_MS` (and ``graphable``) again as graph replays; ``"eager"`` never.
    CPU: the wall clock over ``repeats`` calls after one warm-up call.
    """
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        if timing == "graph":
            return tuple(triton.testing.do_bench(captured(fn, device), warmup=warmup_ms, rep=rep_ms,
                                                 quantiles=list(QUANTILES))), "CUDA graph replay"
        quantiles = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=list(QUANTILES))
        timer = "do_bench"
        if timing == "auto" and graphable and quantiles[0] < CUDA_GRAPH_BELOW_MS:
            try:
                quantiles = triton.testing.do_bench_cudagraph(fn, rep=rep_ms, quantiles=list(QUANTILES))
                timer = "do_bench_cudagraph"
            except Exception as error:  # noqa: BLE001 - any capture failure leaves the do_bench numbers
                timer = f"do_bench (CUDA graph capture failed: {type(error).__name__})"
        return tuple(quantiles), timer
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    if len(times) == 1:
        return (times[0],) * 3, "wall clock (CPU)"
    cuts = statistics.quantiles(times, n=10, method="inclusive")
    return (statistics.median(times), cuts[1], cuts[7]), "wall clock (CPU)"


def captured(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` captured once into a CUDA graph (after warm-up calls on a side stream, as capture
    requires): a callable that replays it and returns the outputs of the capture, refreshed."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn()

    def replay():
        graph.replay()
        return outputs

    return replay


def peak_memory_mib(fn: Callable[[], object], device: torch.device) -> float:
    """Memory one call allocates at its peak beyond what was allocated before it (NaN on CPU)."""
    if device.type != "cuda":
        return math.nan
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def saved_for_backward_mib(call: Callable[..., object]) -> float:
    """What autograd keeps from one forward for its backward (the distinct storages of the saved
    tensors): the memory a training step holds between the two, the same measure for every
    provider and device."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        call(backward=False)
    return sum(storages.values()) / 2**20


def tritongru_config(case: Case, device: torch.device) -> tuple[str, str, float]:
    """The launch configuration tritongru picks for ``case``, where it comes from, and the cost
    model's step for it (microseconds, a model figure; NaN where the plan table has none)."""
    dtype, training = getattr(torch, case.dtype), case.mode != "inference"
    stack = dispatch.plan_stack(case.hidden, case.batch, dtype, training, case.layers, device) if case.directions == 1 else None
    if stack is not None:
        return f"{case.layers} layers in one launch: {stack.forward.label()}", stack.source, math.nan
    plan = dispatch.plan_layer(case.hidden, case.batch, dtype, training, case.directions == 2, device)
    modelled = dispatch.modelled_step_us(plan.problem, plan.forward, dispatch.limits_of(device))
    return plan.forward.label(), plan.source, math.nan if modelled is None else modelled


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def measure_case(
    case: Case,
    providers: Sequence[Provider],
    device: torch.device,
    *,
    repeats: int = 3,
    warmup_ms: int = 25,
    rep_ms: int = 100,
) -> list[dict]:
    """One row per provider: status (``ok``, ``skipped``, ``error``), times, errors, FLOP rate, memory."""
    dtype = getattr(torch, case.dtype)
    module = build_module(case.input_size, case.hidden, case.layers, case.directions, dtype, device)
    inputs = make_inputs(module, case.seq_len, case.batch, dtype, device)
    truth_outputs, truth_grads = float64_truth(module, inputs, case.mode, case.returns)
    flops = case_flops(case)
    rows = []
    for provider in providers:
        row = {"provider": provider.name, "status": "ok", "note": ""}
        rows.append(row)
        reason = provider.skip_reason(case, device)
        if reason:
            row.update(status="skipped", note=reason)
            continue
        try:
            built = provider.build(module)

            def call(backward: bool = case.mode == "fwd_bwd"):
                return run(built.fn, built.params, inputs, case.mode, case.returns, backward=backward)

            # The accuracy pass also compiles and warms up whatever the provider caches; a graphed
            # provider is checked on the outputs of a replay, what it times.
            checked = captured(lambda: call(case.mode != "inference"), device) if provider.timing == "graph" else (
                lambda: call(case.mode != "inference"))
            outputs, grads = checked()
            row["out_err"] = max_relative_error(outputs, truth_outputs)
            row["grad_err"] = max_relative_error(grads, truth_grads) if grads is not None else math.nan
            del outputs, grads, checked

            (p50, p20, p80), timer = time_call(
                call, device, repeats=repeats, warmup_ms=warmup_ms, rep_ms=rep_ms, graphable=case.mode == "inference",
                timing=provider.timing,
            )
            row.update(
                p50_ms=p50, p20_ms=p20, p80_ms=p80, timer=timer,
                us_per_step=p50 * 1e3 / case.sequential_steps,
                tflops=flops / (p50 * 1e-3) / 1e12,
                peak_mem_mib=peak_memory_mib(call, device),
                saved_mib=saved_for_backward_mib(call) if case.mode != "inference" else math.nan,
            )
            if provider.name == "tritongru":
                row["config"], row["config_source"], row["model_us_per_step"] = tritongru_config(case, device)
        except Exception as error:  # noqa: BLE001 - one provider failing must not end the sweep
            row.update(status="error", note=_first_line(error))
    return rows
