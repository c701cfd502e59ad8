"""torch.func through the kernels: grad, vjp and jacrev give what they give through nn.GRU, and vmap
works (nn.GRU has no batching rule).

Functional transforms reach the operator's autograd formula through an ``autograd.Function`` with
``setup_context`` (the one ``register_autograd`` generates has none), so each transform here is
checked by value against the same transform of nn.GRU with the same parameters, in float64.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, jacrev, vjp, vmap

from conftest import DEVICE
from helpers import assert_close, paired_modules

DTYPE = torch.float64


@pytest.fixture
def modules():
    ours, ref = paired_modules(3, 5, 2, bidirectional=True, dtype=DTYPE, device=DEVICE)
    return ours, ref


def _x(*shape):
    return torch.randn(*shape, dtype=DTYPE, device=DEVICE, generator=torch.Generator(DEVICE).manual_seed(7))


def test_grad_of_the_parameters(modules):
    x = _x(4, 2, 3)

    def loss(module, params):
        output, h_n = functional_call(module, params, (x,))
        return (output * output.detach().sin()).sum() + h_n.cos().sum()

    ours, theirs = (grad(lambda p, m=m: loss(m, p))(dict(m.named_parameters())) for m in modules)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert_close(ours[name], theirs[name], DTYPE, f"grad {name}")


def test_vjp_of_the_input(modules):
    x, cotangent = _x(4, 2, 3), _x(4, 2, 10)
    (ours, _), (theirs, _) = (vjp(lambda x, m=m: m(x)[0], x) for m in modules)
    assert_close(ours, theirs, DTYPE, "output")
    pullbacks = [vjp(lambda x, m=m: m(x)[0], x)[1] for m in modules]
    assert_close(pullbacks[0](cotangent)[0], pullbacks[1](cotangent)[0], DTYPE, "vjp")


def test_jacrev_of_the_last_state(modules):
    x = _x(3, 1, 3)
    ours, theirs = (jacrev(lambda x, m=m: m(x)[1][-1, 0])(x) for m in modules)
    assert ours.shape == (5, 3, 1, 3)
    assert_close(ours, theirs, DTYPE, "jacobian")


def test_vmap_over_independent_batches(modules):
    """nn.GRU has no batching rule (aten::gru), so the comparison is nn.GRU on each batch in turn."""
    ours, ref = modules
    x = _x(2, 4, 2, 3)
    theirs = torch.stack([ref(x_i)[0] for x_i in x])
    assert_close(vmap(lambda x: ours(x)[0])(x), theirs, DTYPE, "vmap")


def test_vmap_on_the_torch_backend(modules):
    """PyTorch's GRU operator cannot be vmapped; the torch backend takes the reference there."""
    ours, ref = modules
    ours.backend = "torch"
    x, h0 = _x(2, 4, 2, 3), _x(2, 4, 2, 5)
    theirs = torch.stack([torch.cat([r.flatten() for r in ref(x_i, h_i)]) for x_i, h_i in zip(x, h0)])
    actual = vmap(lambda x, h: torch.cat([r.flatten() for r in ours(x, h)]))(x, h0)
    assert_close(actual, theirs, DTYPE, "vmap, torch backend")
