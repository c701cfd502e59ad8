"""Shared test helpers: paired modules, random inputs, gradient comparison."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

import tritongru
from tritongru.dispatch import force_config
from tritongru.reference import gru_reference

from concurrent_interpreter import concurrent_programs

# Tolerances per dtype for comparisons against float64 (kernels accumulate in the input's
# precision class: fp64 stays fp64, fp32 is fp32 with exact interpreter dots).
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-10), torch.float32: dict(rtol=2e-4, atol=2e-5)}


def paired_modules(input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False, bidirectional=False,
                   dtype=torch.float64, device="cpu", seed=0):
    """A torch.nn.GRU and a tritongru.GRU (triton backend) with the same parameters."""
    torch.manual_seed(seed)
    ref = nn.GRU(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                 bidirectional=bidirectional, dtype=dtype, device=device)
    ours = tritongru.GRU(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional, dtype=dtype, device=device, backend="triton")
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def grads(outputs, inputs, seed=1):
    """Gradients of a random linear functional of ``outputs`` with respect to ``inputs``."""
    generator = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=generator, dtype=o.dtype).to(o.device)).sum() for o in outputs)
    return torch.autograd.grad(loss, inputs, retain_graph=True)


def assert_close(actual, expected, dtype, what):
    torch.testing.assert_close(actual.to(expected.dtype), expected, **TOL[dtype], msg=lambda m: f"{what}: {m}")


class OneProgramShort:
    """A kernel launched on one program fewer than the grid it is told about: the programs that
    wait for the missing one must time out (its SM is held by another process, as far as they know)."""

    def __init__(self, kernel):
        self.kernel = kernel

    def __getattr__(self, name):
        return getattr(self.kernel, name)

    def __getitem__(self, grid):
        return self.kernel[(grid[0] - 1,)]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |actual - expected| / max |expected|``, in float64."""
    return ((actual.double() - expected).abs().max() / expected.abs().max()).item()


def check_kernels_against_float64(layers: int, H: int, B: int, T: int, dtype: torch.dtype, tolerance: float, *,
                                  seed: int, lengths=None, concurrent: bool = False, config=None) -> None:
    """A unidirectional ``layers``-layer GRU through the kernels in ``dtype`` (every program in its
    own thread when ``concurrent``; ``config`` forced when given) against float64 on the same
    rounded parameters and inputs: output, h_n and every gradient, for the same cotangents, each
    within ``tolerance`` of the largest reference magnitude."""
    torch.manual_seed(seed)
    gru = nn.GRU(5, H, layers, dtype=dtype)
    params = [p.detach().requires_grad_() for p in gru._flat_weights]
    x = torch.randn(T, B, 5, dtype=dtype, requires_grad=True)
    h0 = torch.randn(layers, B, H, dtype=dtype, requires_grad=True)
    exact = [t.detach().double().requires_grad_() for t in (x, h0, *params)]
    y_ref, h_ref = gru_reference(exact[0], exact[1], exact[2:], num_layers=layers, bidirectional=False, lengths=lengths)
    cotangents = [torch.randn(y_ref.shape, dtype=torch.float64), torch.randn(h_ref.shape, dtype=torch.float64)]
    threads = concurrent_programs() if concurrent else contextlib.nullcontext()
    with threads, force_config(config) if config else contextlib.nullcontext():
        y, h_n = tritongru.gru(x, h0, params, num_layers=layers, bidirectional=False, lengths=lengths, backend="triton")
        ours = torch.autograd.grad([y, h_n], [x, h0, *params], [c.to(dtype) for c in cotangents])
    theirs = torch.autograd.grad([y_ref, h_ref], exact, cotangents)
    assert relative_error(y, y_ref) < tolerance, f"output {relative_error(y, y_ref):.1e}"
    assert relative_error(h_n, h_ref) < tolerance, f"h_n {relative_error(h_n, h_ref):.1e}"
    names = ["x", "h0"] + [f"{kind}_l{layer}" for layer in range(layers) for kind in ("w_ih", "w_hh", "b_ih", "b_hh")]
    for name, a, b in zip(names, ours, theirs):
        assert a.dtype == dtype and relative_error(a, b) < tolerance, f"d{name}: {relative_error(a, b):.2e}"
