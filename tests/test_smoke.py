"""A smoke test that runs on any supported Triton (the suite's Triton 3.6 and the newest release):
the package imports, and the kernels' forward and backward match the float64 reference."""

from __future__ import annotations

import torch
import triton

import tritongru
from tritongru.reference import gru_reference

from conftest import DEVICE


def test_forward_and_backward_match_reference():
    torch.manual_seed(0)
    model = tritongru.GRU(3, 20, bidirectional=True, backend="triton", dtype=torch.float64).to(DEVICE)
    x = torch.randn(3, 2, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    y, h_n = model(x)
    params = [p.detach().requires_grad_() for p in model._flat_weights]
    y_ref, h_ref = gru_reference(x, None, params, num_layers=1, bidirectional=True)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(h_n, h_ref, rtol=1e-9, atol=1e-10)
    (dx,) = torch.autograd.grad((y.sin().sum() + h_n.sum()), [x])
    (dx_ref,) = torch.autograd.grad((y_ref.sin().sum() + h_ref.sum()), [x])
    torch.testing.assert_close(dx, dx_ref, rtol=1e-9, atol=1e-10)
    print(f"triton {triton.__version__}: ok")
