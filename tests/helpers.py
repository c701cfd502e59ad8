"""Shared test helpers: paired modules, random inputs, gradient comparison."""

from __future__ import annotations

import torch
from torch import nn

import tritongru

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
