"""tritongru.GRU against torch.nn.GRU (same state_dict) and the float64 reference: forward outputs,
h_n and every gradient, through the Triton kernels (the interpreter on a CPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import tritongru
from tritongru.reference import gru_reference

from helpers import assert_close, grads, paired_modules


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    T: int = 4
    B: int = 3
    inputs: int = 5
    H: int = 20  # not a power of two
    layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    h0: bool = True
    unbatched: bool = False


CASES = [
    Case("base"),
    Case("T1", T=1),
    Case("B1", B=1),
    Case("I1", inputs=1),
    Case("H7", H=7),
    Case("layers3", layers=3, H=12),
    Case("bidirectional", bidirectional=True),
    Case("bidir-2layers", bidirectional=True, layers=2, H=12),
    Case("batch_first", batch_first=True),
    Case("no-bias", bias=False),
    Case("no-h0", h0=False),
    Case("unbatched", unbatched=True, bidirectional=True),
]


def _inputs(case: Case, dtype, device):
    dirs = 2 if case.bidirectional else 1
    shape = (case.T, case.inputs) if case.unbatched else ((case.B, case.T, case.inputs) if case.batch_first else (case.T, case.B, case.inputs))
    x = torch.randn(shape, dtype=dtype, device=device, requires_grad=True)
    h0 = None
    if case.h0:
        h_shape = (case.layers * dirs, case.H) if case.unbatched else (case.layers * dirs, case.B, case.H)
        h0 = torch.randn(h_shape, dtype=dtype, device=device, requires_grad=True)
    return x, h0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_nn_gru_and_reference(case: Case, dtype, device):
    ours, ref = paired_modules(case.inputs, case.H, case.layers, bias=case.bias, batch_first=case.batch_first,
                               bidirectional=case.bidirectional, dtype=dtype, device=device)
    x, h0 = _inputs(case, dtype, device)
    y, h_n = ours(x, h0)
    y_ref, h_ref = ref(x, h0)
    assert y.shape == y_ref.shape and h_n.shape == h_ref.shape
    assert_close(y, y_ref, dtype, "output vs nn.GRU")
    assert_close(h_n, h_ref, dtype, "h_n vs nn.GRU")

    inputs = [x] + ([h0] if h0 is not None else [])
    got = grads([y, h_n], inputs + list(ours.parameters()))
    want = grads([y_ref, h_ref], inputs + list(ref.parameters()))
    names = ["input"] + (["h0"] if h0 is not None else []) + [n for n, _ in ours.named_parameters()]
    for name, g, w in zip(names, got, want):
        assert_close(g, w, dtype, f"d{name} vs nn.GRU")

    # The float64 reference, from the same parameters, is the ground truth for both.
    params64 = [p.detach().double() for p in ours._flat_weights]
    x64 = x.detach().double()
    h64 = None if h0 is None else h0.detach().double()
    if case.unbatched:
        x64 = x64.unsqueeze(1)
        h64 = None if h64 is None else h64.unsqueeze(1)
    y64, h64_n = gru_reference(x64, h64, params64, num_layers=case.layers, bidirectional=case.bidirectional,
                               has_biases=case.bias, batch_first=case.batch_first)
    if case.unbatched:
        y64, h64_n = y64.squeeze(1), h64_n.squeeze(1)
    assert_close(y.detach(), y64, dtype, "output vs float64 reference")
    assert_close(h_n.detach(), h64_n, dtype, "h_n vs float64 reference")


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("enforce_sorted", [False, True], ids=["unsorted", "sorted"])
def test_packed_sequence(bidirectional, enforce_sorted, device):
    dtype = torch.float64
    ours, ref = paired_modules(4, 10, 2, bidirectional=bidirectional, dtype=dtype, device=device)
    lengths = torch.tensor([3, 5, 1, 4]) if not enforce_sorted else torch.tensor([5, 4, 3, 1])
    x = torch.randn(5, 4, 4, dtype=dtype, device=device, requires_grad=True)
    h0 = torch.randn(2 * (2 if bidirectional else 1), 4, 10, dtype=dtype, device=device, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    out, h_n = ours(packed, h0)
    out_ref, h_ref = ref(packed, h0)
    assert torch.equal(out.batch_sizes, out_ref.batch_sizes)
    for a, b in ((out.sorted_indices, out_ref.sorted_indices), (out.unsorted_indices, out_ref.unsorted_indices)):
        assert (a is None and b is None) or torch.equal(a, b)
    assert_close(out.data, out_ref.data, dtype, "packed output")
    assert_close(h_n, h_ref, dtype, "h_n")
    padded, _ = pad_packed_sequence(out)
    # Past each sequence's end the padded output is exactly zero (the kernel writes the zeros).
    for b, length in enumerate(lengths.tolist()):
        assert torch.all(padded[length:, b] == 0)
    got = grads([out.data, h_n], [x, h0, *ours.parameters()])
    want = grads([out_ref.data, h_ref], [x, h0, *ref.parameters()])
    for g, w in zip(got, want):
        assert_close(g, w, dtype, "packed gradient")


def test_dropout_between_layers(device):
    """Training-mode dropout acts between layers only: p=1 zeroes the upper layers' input."""
    torch.manual_seed(0)
    ours = tritongru.GRU(3, 8, 2, dropout=1.0, dtype=torch.float64, device=device, backend="triton")
    x = torch.randn(3, 2, 3, dtype=torch.float64, device=device)
    y_train, _ = ours.train()(x)
    params = [p.detach() for p in ours._flat_weights]
    # With the first layer's output dropped to zero, layer 2 sees zeros.
    upper_only, _ = gru_reference(torch.zeros(3, 2, 8, dtype=torch.float64, device=device), None, params[4:],
                                  num_layers=1, bidirectional=False)
    assert_close(y_train.detach(), upper_only, torch.float64, "dropout p=1")
    y_eval, _ = ours.eval()(x)
    y_ref, _ = gru_reference(x, None, params, num_layers=2, bidirectional=False)
    assert_close(y_eval, y_ref, torch.float64, "eval mode has no dropout")


def test_state_dict_round_trip_and_from_torch(device):
    ref = torch.nn.GRU(6, 9, 2, bidirectional=True, batch_first=True, dtype=torch.float64, device=device)
    ours = tritongru.GRU.from_torch(ref)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert (ours.batch_first, ours.bidirectional, ours.num_layers) == (True, True, 2)
    back = torch.nn.GRU(6, 9, 2, bidirectional=True, batch_first=True, dtype=torch.float64, device=device)
    back.load_state_dict(ours.state_dict())
    for (name, p), q in zip(ref.named_parameters(), back.parameters()):
        assert torch.equal(p, q), name
    # nn.GRU's initialisation, parameter for parameter: the same seed gives the same weights.
    torch.manual_seed(7)
    fresh = tritongru.GRU(6, 9, 2, bidirectional=True)
    torch.manual_seed(7)
    theirs = torch.nn.GRU(6, 9, 2, bidirectional=True)
    assert [n for n, _ in fresh.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for p, q in zip(fresh.parameters(), theirs.parameters()):
        assert torch.equal(p, q)


def test_functional_matches_module(device):
    ours, _ = paired_modules(4, 12, 2, dtype=torch.float64, device=device)
    x = torch.randn(3, 2, 4, dtype=torch.float64, device=device)
    y, h = ours(x)
    y_f, h_f = tritongru.gru(x, None, ours._flat_weights, num_layers=2, bidirectional=False, backend="triton")
    assert torch.equal(y, y_f) and torch.equal(h, h_f)


def test_reference_backend_matches_nn_gru(device):
    ref = torch.nn.GRU(4, 7, 2, bidirectional=True, dtype=torch.float64, device=device)
    ours = tritongru.GRU.from_torch(ref, backend="reference")
    x = torch.randn(4, 3, 4, dtype=torch.float64, device=device)
    for a, b in zip(ours(x), ref(x)):
        assert_close(a, b, torch.float64, "reference backend")
