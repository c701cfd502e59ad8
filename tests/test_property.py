"""Property tests: over random shapes, sequence lengths (unsorted PackedSequence), flags and dtypes,
tritongru.GRU running the Triton kernels (the interpreter on a CPU: tests/conftest.py sets
TRITON_INTERPRET=1 without a GPU) computes what torch.nn.GRU with the same state_dict computes, and
what the float64 reference computes: outputs, h_n and the gradients of the input, h0 and every
parameter. The inference path (no autograd: the kernels save nothing) gives the same outputs.

Hypothesis runs derandomized (the same examples every run, so CI is stable), with a bounded number
of examples and no per-example deadline (interpreter speed varies with the machine's load).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import tritongru
from tritongru.reference import gru_reference

# Tolerances. float64: the kernels accumulate in float64; sums of <= 3*24 products over <= 5 steps
# differ from nn.GRU's and the reference's by ~1e-15, checked at 1e-10. float32: each gate
# pre-activation carries a few ulps (~1e-7 relative) of rounding that the recurrence carries over
# <= 5 steps and 2 layers, and gradients sum <= 15 such terms; measured differences are ~1e-6, so
# 2e-5 absolute and 2e-4 relative hold with a margin while a wrong gate, mask or index is off by
# >= 1e-2.
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=2e-4, atol=2e-5)}

@dataclasses.dataclass(frozen=True)
class Case:
    T: int
    B: int
    input_size: int
    hidden: int
    layers: int
    bidirectional: bool
    bias: bool
    batch_first: bool
    layout: str  # "padded", "packed" (unsorted lengths) or "unbatched"
    lengths: tuple[int, ...] | None
    h0: bool
    dtype: torch.dtype
    seed: int

    @property
    def num_dirs(self) -> int:
        return 2 if self.bidirectional else 1


@st.composite
def cases(draw) -> Case:
    layout = draw(st.sampled_from(["padded", "packed", "unbatched"]))
    T = draw(st.integers(1, 5))
    B = 1 if layout == "unbatched" else draw(st.integers(1, 3))
    lengths = None
    if layout == "packed":
        # Any order (pack_padded_sequence(enforce_sorted=False) sorts them); the longest need not be T.
        lengths = tuple(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    return Case(
        T=T, B=B, input_size=draw(st.integers(1, 6)), hidden=draw(st.integers(1, 20)),
        layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()), bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        layout=layout, lengths=lengths, h0=draw(st.booleans()),
        dtype=draw(st.sampled_from([torch.float32, torch.float64])), seed=draw(st.integers(0, 2**31 - 1)),
    )


PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    # `device` and conftest's autouse NaN-poisoning fixture are function-scoped but hold for every example.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def exact_cudnn(monkeypatch):
    """On a GPU nn.GRU runs cuDNN, which may use TF32; the comparison needs true fp32 there."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def _modules(case: Case, device):
    torch.manual_seed(case.seed)
    ref = torch.nn.GRU(case.input_size, case.hidden, case.layers, bias=case.bias, batch_first=case.batch_first,
                       bidirectional=case.bidirectional, device=device, dtype=case.dtype)
    ours = tritongru.GRU(case.input_size, case.hidden, case.layers, bias=case.bias, batch_first=case.batch_first,
                         bidirectional=case.bidirectional, device=device, dtype=case.dtype, backend="triton")
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _inputs(case: Case, device):
    """A padded leaf ``x`` (the layout's shape) and ``h0`` (or None), random, never zeros."""
    g = torch.Generator().manual_seed(case.seed + 1)
    if case.layout == "unbatched":
        shape = (case.T, case.input_size)
    elif case.batch_first:
        shape = (case.B, case.T, case.input_size)
    else:
        shape = (case.T, case.B, case.input_size)
    x = torch.randn(shape, generator=g, dtype=case.dtype).to(device).requires_grad_()
    h0 = None
    if case.h0:
        h_shape = (case.layers * case.num_dirs,) + (() if case.layout == "unbatched" else (case.B,)) + (case.hidden,)
        h0 = torch.randn(h_shape, generator=g, dtype=case.dtype).to(device).requires_grad_()
    return x, h0


def _module_input(case: Case, x):
    if case.layout == "packed":
        return pack_padded_sequence(x, torch.tensor(case.lengths), batch_first=case.batch_first, enforce_sorted=False)
    return x


def _tensors(output):
    return output.data if isinstance(output, PackedSequence) else output


def _padded_time_major(case: Case, output, like_x):
    """The output as (T, B, D) with zeros past each length, for comparing with the reference."""
    if case.layout == "packed":
        padded, _ = pad_packed_sequence(output, batch_first=False, total_length=case.T)
        return padded
    if case.layout == "unbatched":
        return output.unsqueeze(1)
    return output.transpose(0, 1) if case.batch_first else output


def _reference64(case: Case, ours, x, h0):
    """The float64 reference on the CPU from the same parameters, time-major padded."""
    x64 = x.detach().double().cpu().requires_grad_()
    h64 = None if h0 is None else h0.detach().double().cpu().requires_grad_()
    params = [p.detach().double().cpu().requires_grad_() for p in ours._flat_weights]
    xt = x64.unsqueeze(1) if case.layout == "unbatched" else (x64.transpose(0, 1) if case.batch_first else x64)
    ht = None if h64 is None else (h64.unsqueeze(1) if case.layout == "unbatched" else h64)
    lengths = None if case.lengths is None else torch.tensor(case.lengths)
    y, h_n = gru_reference(xt, ht, params, num_layers=case.layers, bidirectional=case.bidirectional,
                           has_biases=case.bias, lengths=lengths)
    if case.layout == "unbatched":
        h_n = h_n.squeeze(1)
    return y, h_n, [x64] + ([h64] if h64 is not None else []) + params


def _cotangents(case: Case, y_padded, h_n):
    """Random float64 weights of a scalar loss over (output, h_n)."""
    g = torch.Generator().manual_seed(case.seed + 2)
    return torch.randn(y_padded.shape, generator=g, dtype=torch.float64), torch.randn(h_n.shape, generator=g, dtype=torch.float64)


def _loss(y_padded, h_n, wy, wh):
    return (y_padded * wy.to(y_padded)).sum() + (h_n * wh.to(h_n)).sum()


def _close(actual, expected, dtype, what):
    torch.testing.assert_close(actual.detach().double().cpu(), expected.detach().double().cpu(), **TOL[dtype],
                               msg=lambda m: f"{what}: {m}")


@PROPERTY_SETTINGS
@given(case=cases())
def test_matches_nn_gru_and_float64_reference(case: Case, device):
    ours, ref = _modules(case, device)
    x, h0 = _inputs(case, device)
    out, h_n = ours(_module_input(case, x), h0)
    out_ref, h_ref = ref(_module_input(case, x), h0)

    # Same structure as nn.GRU's result.
    assert type(out) is type(out_ref) and h_n.shape == h_ref.shape
    if case.layout == "packed":
        assert torch.equal(out.batch_sizes, out_ref.batch_sizes)
        assert torch.equal(out.sorted_indices, out_ref.sorted_indices)
        assert torch.equal(out.unsorted_indices, out_ref.unsorted_indices)
    assert _tensors(out).shape == _tensors(out_ref).shape
    assert _tensors(out).dtype == case.dtype and h_n.dtype == case.dtype

    _close(_tensors(out), _tensors(out_ref), case.dtype, "output vs nn.GRU")
    _close(h_n, h_ref, case.dtype, "h_n vs nn.GRU")

    y_ref64, h_ref64, leaves64 = _reference64(case, ours, x, h0)
    y = _padded_time_major(case, out, x)
    _close(y, y_ref64, case.dtype, "output vs float64 reference")
    _close(h_n, h_ref64, case.dtype, "h_n vs float64 reference")

    # Gradients of one random linear functional of (output, h_n), for all three.
    wy, wh = _cotangents(case, y_ref64, h_ref64)
    leaves = [x] + ([h0] if h0 is not None else [])
    names = ["input"] + (["h0"] if h0 is not None else []) + list(ours._flat_weights_names)
    got = torch.autograd.grad(_loss(y, h_n, wy, wh), leaves + list(ours._flat_weights))
    y_nn = _padded_time_major(case, out_ref, x)
    want_nn = torch.autograd.grad(_loss(y_nn, h_ref, wy, wh), leaves + list(ref._flat_weights))
    want64 = torch.autograd.grad(_loss(y_ref64, h_ref64, wy, wh), leaves64)
    assert any(g.abs().max() > 0 for g in want64)
    for name, g, w_nn, w64 in zip(names, got, want_nn, want64, strict=True):
        assert g.shape == w_nn.shape, name
        _close(g, w_nn, case.dtype, f"grad of {name} vs nn.GRU")
        _close(g, w64, case.dtype, f"grad of {name} vs float64 reference")

    # Inference (nothing saved for a backward): the same outputs.
    with torch.no_grad():
        out_ng, h_ng = ours(_module_input(case, x), h0)
    _close(_tensors(out_ng), _tensors(out), case.dtype, "output without autograd")
    _close(h_ng, h_n, case.dtype, "h_n without autograd")


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(case=cases())
def test_reference_backend_matches_nn_gru(case: Case, device):
    """backend="reference" (what runs where the kernels cannot) is held to the same standard."""
    torch.manual_seed(case.seed)
    ref = torch.nn.GRU(case.input_size, case.hidden, case.layers, bias=case.bias, batch_first=case.batch_first,
                       bidirectional=case.bidirectional, device=device, dtype=case.dtype)
    ours = tritongru.GRU.from_torch(ref, backend="reference")
    x, h0 = _inputs(case, device)
    out, h_n = ours(_module_input(case, x), h0)
    out_ref, h_ref = ref(_module_input(case, x), h0)
    _close(_tensors(out), _tensors(out_ref), case.dtype, "output")
    _close(h_n, h_ref, case.dtype, "h_n")
    leaves = [x] + ([h0] if h0 is not None else [])
    g = torch.Generator().manual_seed(case.seed + 3)
    w_out = torch.randn(_tensors(out).shape, generator=g, dtype=case.dtype).to(device)
    w_h = torch.randn(h_n.shape, generator=g, dtype=case.dtype).to(device)
    got = torch.autograd.grad((_tensors(out) * w_out).sum() + (h_n * w_h).sum(), leaves + list(ours.parameters()))
    want = torch.autograd.grad((_tensors(out_ref) * w_out).sum() + (h_ref * w_h).sum(), leaves + list(ref.parameters()))
    for a, b in zip(got, want, strict=True):
        _close(a, b, case.dtype, "gradient")


@pytest.mark.parametrize("backend", ["triton", "reference"], ids=["kernels", "reference"])
def test_unbatched_batch_first(backend, device):
    """nn.GRU treats 2-D input as one sequence (T, input_size) whatever batch_first says."""
    torch.manual_seed(0)
    ref = torch.nn.GRU(3, 5, batch_first=True, device=device, dtype=torch.float64)
    ours = tritongru.GRU.from_torch(ref, backend=backend)
    x = torch.randn(4, 3, device=device, dtype=torch.float64)
    h0 = torch.randn(1, 5, device=device, dtype=torch.float64)
    for hx in (None, h0):
        out, h_n = ours(x, hx)
        out_ref, h_ref = ref(x, hx)
        assert out.shape == out_ref.shape and h_n.shape == h_ref.shape
        _close(out, out_ref, torch.float64, "output")
        _close(h_n, h_ref, torch.float64, "h_n")
