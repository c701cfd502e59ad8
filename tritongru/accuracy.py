"""Holding a GRU implementation against the float64 reference: the one harness shared by
``tritongru validate`` and the perf suite's accuracy columns.

An implementation is a callable ``fn(x, h0) -> (output, h_n)`` together with the parameters it
reads (``params``, in ``nn.GRU._flat_weights`` order), so that gradients can be taken with
respect to the input, the initial state and every weight.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .module import GRU
from .reference import gru_reference

MODES = ("inference", "train_fwd", "fwd_bwd")
RETURNS = ("output", "h_n", "both")
DTYPES = ("float32", "bfloat16", "float16")

GRUFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclasses.dataclass
class GRUInputs:
    """One call's inputs, and the gradients fed to its returned tensors in a backward pass."""

    x: torch.Tensor
    h0: torch.Tensor
    grad_output: torch.Tensor
    grad_h_n: torch.Tensor

    def leaves(self, dtype: torch.dtype) -> "GRUInputs":
        """Fresh leaf tensors (requiring grad) converted to ``dtype``."""
        return GRUInputs(
            self.x.detach().to(dtype).requires_grad_(),
            self.h0.detach().to(dtype).requires_grad_(),
            self.grad_output.to(dtype),
            self.grad_h_n.to(dtype),
        )


def build_module(
    input_size: int, hidden: int, layers: int, directions: int, dtype: torch.dtype, device: torch.device, seed: int = 0
) -> nn.GRU:
    """A ``torch.nn.GRU`` with nn.GRU's random initialisation from ``seed`` (the caller's RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = nn.GRU(input_size, hidden, layers, bidirectional=directions == 2)
    return module.to(device=device, dtype=dtype)


def make_inputs(
    module: nn.GRU, seq_len: int, batch: int, dtype: torch.dtype, device: torch.device, seed: int = 1
) -> GRUInputs:
    """Random inputs, initial state and output gradients for ``module`` (never zeros: a kernel that
    ignores ``h0`` or drops a term must show up as an error)."""
    generator = torch.Generator().manual_seed(seed)
    directions = 2 if module.bidirectional else 1
    states = (module.num_layers * directions, batch, module.hidden_size)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device)

    inputs = GRUInputs(
        randn(seq_len, batch, module.input_size),
        randn(*states),
        randn(seq_len, batch, directions * module.hidden_size),
        randn(*states),
    )
    return inputs.leaves(dtype)


def run(fn: GRUFn, params: Sequence[torch.Tensor], inputs: GRUInputs, mode: str, returns: str, backward: bool):
    """Call ``fn`` as ``mode`` asks and return ``(returned tensors, gradients or None)``.

    ``inference`` runs under ``torch.no_grad()``; the training modes record the graph, and with
    ``backward`` the gradients of the returned tensors (weighted by ``inputs.grad_*``) with
    respect to ``x``, ``h0`` and ``params`` are taken.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if returns not in RETURNS:
        raise ValueError(f"returns must be one of {RETURNS}, got {returns!r}")
    if mode == "inference":
        with torch.no_grad():
            output, h_n = fn(inputs.x, inputs.h0)
    else:
        output, h_n = fn(inputs.x, inputs.h0)
    chosen = {"output": [(output, inputs.grad_output)], "h_n": [(h_n, inputs.grad_h_n)]}
    pairs = chosen["output"] + chosen["h_n"] if returns == "both" else chosen[returns]
    tensors = [tensor for tensor, _ in pairs]
    if mode == "inference" or not backward:
        return tensors, None
    grads = torch.autograd.grad(tensors, [inputs.x, inputs.h0, *params], [grad for _, grad in pairs])
    return tensors, list(grads)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|``: normwise, so entries near zero do not dominate."""
    expected = expected.double()
    return ((actual.double() - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def max_relative_error(actual: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]) -> float:
    if len(actual) != len(expected):
        raise ValueError(f"expected {len(expected)} tensors to compare, got {len(actual)}")
    return max(relative_error(a, e) for a, e in zip(actual, expected))


def reference_fn(module: nn.GRU) -> tuple[GRUFn, list[torch.Tensor]]:
    """The pure-PyTorch reference GRU on ``module``'s parameters, and those parameters."""
    params = list(module._flat_weights)

    def fn(x, h0):
        return gru_reference(
            x, h0, params, num_layers=module.num_layers, bidirectional=module.bidirectional, has_biases=module.bias
        )

    return fn, params


def float64_truth(module: nn.GRU, inputs: GRUInputs, mode: str, returns: str):
    """The reference's results in float64 on a copy of ``module`` (returned tensors, gradients)."""
    fn, params = reference_fn(copy.deepcopy(module).double())
    return run(fn, params, inputs.leaves(torch.float64), mode, returns, backward=mode != "inference")


@dataclasses.dataclass(frozen=True)
class ValidationCase:
    """A shape ``tritongru validate`` checks, and the largest relative error it accepts."""

    seq_len: int
    batch: int
    input_size: int
    hidden: int
    layers: int
    directions: int
    dtype: torch.dtype
    tolerance: float

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def label(self) -> str:
        return (
            f"T={self.seq_len} B={self.batch} I={self.input_size} H={self.hidden} L={self.layers} "
            f"D={self.directions} {self.dtype_name}"
        )


# The interpreter runs a program-step in milliseconds, and has broken bf16: tiny fp32 shapes only,
# with a hidden size that is not a power of two so the masks are exercised.
CPU_CASES = (ValidationCase(4, 3, 8, 20, 2, 2, torch.float32, 1e-4),)
# Sanity bounds for a GPU, loose enough for accumulated rounding at each dtype over 64 steps.
GPU_CASES = (
    ValidationCase(64, 8, 64, 256, 2, 2, torch.float32, 1e-3),
    ValidationCase(64, 16, 128, 512, 1, 1, torch.float16, 2e-2),
    ValidationCase(64, 16, 128, 512, 1, 1, torch.bfloat16, 5e-2),
    ValidationCase(64, 1, 256, 1024, 1, 1, torch.bfloat16, 5e-2),
)


def validate(device: torch.device, cases: Sequence[ValidationCase], log: Callable[[str], None] = print) -> bool:
    """Run ``tritongru.GRU`` (Triton kernels only, no fallback) on ``cases`` against the float64
    reference, forward and gradients; print one line per case and return whether all pass."""
    log(f"{'case':<44} {'output err':>11} {'grad err':>11} {'tolerance':>10}  result")
    passed = True
    for case in cases:
        module = build_module(case.input_size, case.hidden, case.layers, case.directions, case.dtype, device)
        inputs = make_inputs(module, case.seq_len, case.batch, case.dtype, device)
        triton_gru = GRU.from_torch(module, backend="triton")
        outputs, grads = run(triton_gru, list(triton_gru._flat_weights), inputs, "fwd_bwd", "both", backward=True)
        truth_outputs, truth_grads = float64_truth(module, inputs, "fwd_bwd", "both")
        out_err = max_relative_error(outputs, truth_outputs)
        grad_err = max_relative_error(grads, truth_grads)
        ok = out_err <= case.tolerance and grad_err <= case.tolerance
        passed &= ok
        log(f"{case.label:<44} {out_err:>11.3e} {grad_err:>11.3e} {case.tolerance:>10.0e}  {'ok' if ok else 'FAIL'}")
    return passed
