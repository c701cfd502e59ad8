"""The implementations the perf suite compares, as callables on the same module and inputs.

Each provider turns the case's ``torch.nn.GRU`` (random parameters) into ``fn(x, h0) -> (output,
h_n)`` plus the parameter tensors ``fn`` reads, so that every provider sees the same weights and
inputs and its gradients can be compared with the float64 reference's.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from tritongru import _compat, dispatch
from tritongru.accuracy import GRUFn, reference_fn
from tritongru.module import GRU

from .sweeps import Case

# torch.compile unrolls the reference's Python loop over time steps (every layer and direction):
# a few dozen steps compile in seconds, T=1024 would take many minutes.
COMPILE_MAX_STEPS = 64


@dataclasses.dataclass
class Built:
    fn: GRUFn
    params: list[torch.Tensor]


# How a provider's calls are timed: as they are issued (``eager``), captured once into a CUDA graph
# and replayed (``graph``), or eagerly with short inference calls timed again as graph replays
# (``auto``, for the providers whose eager launch cost is not the point of comparison).
TIMINGS = ("eager", "graph", "auto")


@dataclasses.dataclass(frozen=True)
class Provider:
    """``skip_reason(case, device)``: why it cannot run there (None when it can); ``build(module)``."""

    name: str
    description: str
    skip_reason: Callable[[Case, torch.device], str | None]
    build: Callable[[nn.GRU], Built]
    timing: str = "auto"


def _tritongru_skip(case: Case, device: torch.device) -> str | None:
    can_run, why = _compat.kernels_can_run(device)
    return None if can_run else why


def _tritongru_build(module: nn.GRU) -> Built:
    # backend="triton": never time the reference fallback under the kernels' name.
    gru = GRU.from_torch(module, backend="triton")
    return Built(gru, list(gru._flat_weights))


def _tritongru_layers_build(module: nn.GRU) -> Built:
    gru = GRU.from_torch(module, backend="triton")

    def one_launch_per_layer(x, h0):
        with dispatch.layer_by_layer():
            return gru(x, h0)

    return Built(one_launch_per_layer, list(gru._flat_weights))


def _cudnn_skip(case: Case, device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"cuDNN needs a CUDA device, this run is on {device}"
    if not torch.backends.cudnn.is_available():
        return "this PyTorch build has no cuDNN"
    return None


def _cudnn_build(module: nn.GRU) -> Built:
    gru = copy.deepcopy(module)
    gru.flatten_parameters()
    return Built(gru, list(gru._flat_weights))


def _cpu_skip(case: Case, device: torch.device) -> str | None:
    return None if device.type == "cpu" else f"the CPU path is measured on a CPU, this run is on {device}"


def _tritongru_cpu_build(module: nn.GRU) -> Built:
    # What backend="auto" runs on CPU tensors without TRITON_INTERPRET=1, named so that a run
    # under the interpreter measures the same thing.
    gru = GRU.from_torch(module, backend="torch")
    return Built(gru, list(gru._flat_weights))


def _reference_build(module: nn.GRU) -> Built:
    fn, params = reference_fn(module)
    return Built(fn, params)


def _compile_skip(case: Case, device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"torch.compile is measured on GPUs only, this run is on {device}"
    if case.sequential_steps > COMPILE_MAX_STEPS:
        return (
            f"torch.compile unrolls the reference's time loop: {case.sequential_steps} sequential steps "
            f"> {COMPILE_MAX_STEPS}, compiling would take many minutes"
        )
    return None


def _compile_build(module: nn.GRU) -> Built:
    # Every case has new shapes; a fresh cache keeps dynamo from hitting its recompile limit and
    # silently running eager code under this provider's name.
    torch._dynamo.reset()
    fn, params = reference_fn(module)
    return Built(torch.compile(fn, dynamic=False), params)


PROVIDERS: dict[str, Provider] = {
    provider.name: provider
    for provider in (
        Provider("tritongru", "tritongru.GRU, Triton kernels only (backend='triton')", _tritongru_skip, _tritongru_build),
        Provider("tritongru-layers", "tritongru.GRU with one launch per layer, where it would run a stack in one",
                 _tritongru_skip, _tritongru_layers_build),
        Provider("cudnn", "torch.nn.GRU on CUDA, eager (cuDNN; allow_tf32 set explicitly per run)", _cudnn_skip,
                 _cudnn_build, timing="eager"),
        # The strongest baseline a user can have at launch-bound shapes: the whole call captured
        # once and replayed (what the best public "speedups over cuDNN" on KernelBench compare).
        Provider("cudnn-graph", "torch.nn.GRU on CUDA, the whole call captured in a CUDA graph and replayed",
                 _cudnn_skip, _cudnn_build, timing="graph"),
        Provider("tritongru-cpu", "tritongru.GRU on CPU tensors: PyTorch's GRU operator, as backend='auto' runs it there",
                 _cpu_skip, _tritongru_cpu_build),
        Provider("nn-gru-cpu", "torch.nn.GRU on the same CPU", _cpu_skip, _cudnn_build),
        Provider("reference", "tritongru.reference.gru_reference, eager PyTorch", lambda case, device: None, _reference_build),
        Provider("compile", "torch.compile of gru_reference", _compile_skip, _compile_build),
    )
}
