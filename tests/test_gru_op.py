"""The torch.library operators: opcheck (schema, fake tensors, autograd registration) and
torch.compile(fullgraph=True) traces of models that use tritongru.GRU (a layer per launch, and a
stack in one)."""

from __future__ import annotations

import pytest
import torch

import tritongru

from conftest import DEVICE


def _op_args(T=3, B=2, H=5, D=1, dtype=torch.float64, lengths=None, reverse=False, save=True):
    torch.manual_seed(0)
    make = lambda *s: torch.randn(*s, dtype=dtype, device=DEVICE, requires_grad=True)  # noqa: E731
    return (make(T, B, D * 3 * H), make(D, 3 * H, H), make(D, H), make(D, B, H), lengths, reverse, save)


@pytest.mark.parametrize("variant", ["plain", "reverse-lengths", "inference", "two-directions"])
def test_opcheck_forward(variant):
    lengths = torch.tensor([3, 1], dtype=torch.int32, device=DEVICE) if variant == "reverse-lengths" else None
    args = _op_args(D=2 if variant == "two-directions" else 1, lengths=lengths, reverse=variant == "reverse-lengths",
                    save=variant != "inference")
    if variant == "inference":
        # save=False keeps nothing for a backward: it is the no-grad path.
        args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(torch.ops.tritongru.gru_recurrence.default, args)


@pytest.mark.parametrize("directions", [1, 2])
def test_opcheck_backward(directions):
    gx, w, b, h0, lengths, reverse, _ = _op_args(D=directions)
    y, h_n, hs, gates = torch.ops.tritongru.gru_recurrence(gx, w, b, h0, lengths, reverse, True)
    dy, dh = torch.randn_like(y), torch.randn_like(h_n)
    torch.library.opcheck(torch.ops.tritongru.gru_recurrence_backward.default,
                          (dy, dh, w.detach(), hs.detach(), gates.detach(), lengths, reverse))


@pytest.mark.parametrize("save", [False, True], ids=["inference", "training"])
def test_opcheck_stack(save):
    """The whole stack's operator (its autograd is the GRUStack Function, tested through the module)."""
    torch.manual_seed(0)
    L, T, B, H = 3, 3, 2, 5
    make = lambda *s: torch.randn(*s, dtype=torch.float32, device=DEVICE)  # noqa: E731
    masks = torch.ones(L - 1, T, B, H, device=DEVICE)
    args = (make(T, B, 3 * H), make(L - 1, 3 * H, H), make(L - 1, 3 * H), make(L, 3 * H, H), make(L, H), make(L, B, H),
            torch.tensor([3, 2], dtype=torch.int32, device=DEVICE), masks, save)
    torch.library.opcheck(torch.ops.tritongru.gru_stack.default, args)


def test_backward_without_saved_state_is_refused():
    args = _op_args(save=False)
    y, h_n, _, _ = torch.ops.tritongru.gru_recurrence(*args)
    with pytest.raises(RuntimeError, match="called with save=False"):
        y.sum().backward()


@pytest.mark.parametrize("bidirectional", [True, False], ids=["layer-per-launch", "stack-in-one-launch"])
def test_torch_compile_fullgraph(bidirectional):
    torch.manual_seed(1)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = tritongru.GRU(4, 12, 2, bidirectional=bidirectional, batch_first=True, backend="triton")
            self.head = torch.nn.Linear(24 if bidirectional else 12, 3)

        def forward(self, x):
            return self.head(self.gru(x)[0])

    model = Model().to(DEVICE)
    x = torch.randn(2, 3, 4, device=DEVICE)
    # aot_eager traces forward and backward through the fake kernels exactly as inductor would,
    # without compiling C++ on the CPU; fullgraph=True fails on any graph break.
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    torch.testing.assert_close(y, model(x))
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
