"""Streaming inference: a unidirectional tritongru.GRU fed a sequence chunk by chunk (or one step at
a time), carrying h_n into the next call as hx, computes what one call on the whole sequence does;
and, with autograd, backpropagating through the carried states gives the whole sequence's gradients.
(A bidirectional GRU is not streamable: its reverse direction needs the sequence's end first.)

The kernels run through the interpreter on a CPU (tests/conftest.py sets TRITON_INTERPRET=1 without
a GPU). The GPU-only test captures one step in a CUDA graph and replays it over a sequence.
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

import tritongru
from tritongru import _compat
from tritongru.dispatch import force_config
from tritongru.kernels.launch import PersistentConfig

# Chunked and whole calls run the same per-step arithmetic; only the input projection (one GEMM over
# the chunk's steps) may block its sums differently. float64: ~1e-16 relative, checked at 1e-12.
# float32: ~1e-7 relative per step, carried over <= 6 steps and 2 layers; 1e-5 leaves a margin while
# a state that is not carried (restarting from zeros or from h0) is off by >= 1e-2.
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}
T, B, INPUT, HIDDEN = 6, 3, 4, 12


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    layers: int = 2
    chunks: tuple[int, ...] = (2, 3, 1)  # chunk lengths, summing to T
    batch_first: bool = False
    unbatched: bool = False
    bias: bool = True
    dropout: float = 0.0  # in eval mode, so the GRU is deterministic and streamable


CASES = [
    Case("2layers-chunks-2-3-1"),
    Case("2layers-per-step", chunks=(1,) * T),
    Case("1layer-per-step", layers=1, chunks=(1,) * T),
    Case("1layer-chunks-4-2-no-bias", layers=1, chunks=(4, 2), bias=False),
    Case("2layers-batch-first-chunks-3-3", chunks=(3, 3), batch_first=True),
    Case("2layers-unbatched-per-step", chunks=(1,) * T, unbatched=True),
    Case("2layers-dropout-eval-chunks-1-5", chunks=(1, 5), dropout=0.5),
]
BY_ID = {case.id: case for case in CASES}


def _params(pairs):
    """(case, dtype) parameters with ids like "2layers-per-step-fp32"."""
    names = {torch.float64: "fp64", torch.float32: "fp32"}
    return [pytest.param(case, dtype, id=f"{case.id}-{names[dtype]}") for case, dtype in pairs]


# Every case in float64 (exact enough to show any mismatch), the two 2-layer ones in float32 too;
# the interpreter's per-launch cost (one launch per layer and chunk) bounds how many.
INFERENCE = _params([(case, torch.float64) for case in CASES]
                    + [(BY_ID[i], torch.float32) for i in ("2layers-chunks-2-3-1", "2layers-per-step")])
BACKPROP = _params([(BY_ID["2layers-chunks-2-3-1"], torch.float64), (BY_ID["2layers-per-step"], torch.float32),
                    (BY_ID["2layers-batch-first-chunks-3-3"], torch.float64)])


def _setup(case: Case, dtype, device):
    assert sum(case.chunks) == T
    torch.manual_seed(0)
    gru = tritongru.GRU(INPUT, HIDDEN, case.layers, bias=case.bias, batch_first=case.batch_first,
                        dropout=case.dropout, device=device, dtype=dtype, backend="triton").eval()
    g = torch.Generator().manual_seed(1)
    if case.unbatched:
        x_shape, h_shape = (T, INPUT), (case.layers, HIDDEN)
    else:
        x_shape = (B, T, INPUT) if case.batch_first else (T, B, INPUT)
        h_shape = (case.layers, B, HIDDEN)
    x = torch.randn(x_shape, generator=g, dtype=dtype).to(device)
    h0 = torch.randn(h_shape, generator=g, dtype=dtype).to(device)
    return gru, x, h0


def _time_dim(case: Case) -> int:
    return 1 if case.batch_first and not case.unbatched else 0


def _stream(gru, case: Case, x, h0):
    """Feed ``x`` in ``case.chunks``, carrying the state; the outputs concatenated, and the last state."""
    dim = _time_dim(case)
    outputs, h = [], h0
    for chunk in x.split(list(case.chunks), dim=dim):
        y, h = gru(chunk, h)
        outputs.append(y)
    return torch.cat(outputs, dim=dim), h


def _close(actual, expected, dtype, what):
    torch.testing.assert_close(actual, expected, **TOL[dtype], msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize(("case", "dtype"), INFERENCE)
def test_streaming_inference_equals_one_call(case, dtype, device):
    gru, x, h0 = _setup(case, dtype, device)
    with torch.no_grad():
        y_whole, h_whole = gru(x, h0)
        y_stream, h_stream = _stream(gru, case, x, h0)
        # Without h0 the stream starts from zeros, as one call without h0 does.
        y_zero, _ = gru(x)
        y_zero_stream, _ = _stream(gru, case, x, None)
    assert y_stream.shape == y_whole.shape and h_stream.shape == h_whole.shape
    _close(y_stream, y_whole, dtype, "streamed output")
    _close(h_stream, h_whole, dtype, "streamed final state")
    _close(y_zero_stream, y_zero, dtype, "streamed output from a zero state")
    # The carried state matters: the outputs from h0 and from zeros differ (the comparison can fail).
    assert not torch.allclose(y_whole, y_zero, **TOL[dtype])


@pytest.mark.parametrize(("case", "dtype"), BACKPROP)
def test_backprop_through_carried_states_equals_one_call(case, dtype, device):
    """Training on a chunked sequence without detaching h is full backpropagation through time."""
    gru, x, h0 = _setup(case, dtype, device)
    x.requires_grad_()
    h0.requires_grad_()
    g = torch.Generator().manual_seed(2)
    w_y = torch.randn(x.shape[:-1] + (HIDDEN,), generator=g, dtype=dtype).to(device)
    w_h = torch.randn(h0.shape, generator=g, dtype=dtype).to(device)
    leaves = [x, h0, *gru.parameters()]
    names = ["input", "h0", *(name for name, _ in gru.named_parameters())]

    y, h = gru(x, h0)
    whole = torch.autograd.grad((y * w_y).sum() + (h * w_h).sum(), leaves)
    y, h = _stream(gru, case, x, h0)
    streamed = torch.autograd.grad((y * w_y).sum() + (h * w_h).sum(), leaves)
    for name, a, b in zip(names, streamed, whole, strict=True):
        assert b.abs().max() > 0, name
        _close(a, b, dtype, f"grad of {name}")


def test_detached_state_truncates_the_gradient(device):
    """Truncated BPTT: detaching the carried state stops the gradient at the chunk boundary, so the
    first chunk's inputs get none from the second chunk's loss (and the whole-sequence gradient,
    which does reach them, differs)."""
    case = CASES[0]
    gru, x, h0 = _setup(case, torch.float64, device)
    x.requires_grad_()
    first, second = x[:2], x[2:]
    _, h = gru(first, h0)
    y2, _ = gru(second, h.detach())
    (grad,) = torch.autograd.grad(y2.sum(), x)
    assert torch.all(grad[:2] == 0) and grad[2:].abs().max() > 0
    y2_attached, _ = gru(second, gru(first, h0)[1])
    (grad_attached,) = torch.autograd.grad(y2_attached.sum(), x)
    assert grad_attached[:2].abs().max() > 0


# --- GPU only -------------------------------------------------------------------------------------

# "whole": the default configuration at this size, whole W_hh per program and no grid barrier.
# "sliced": the hidden units split over 4 programs that meet at a grid barrier every step, launched
# cooperatively: the variant whose launch path (sync word, co-residency check) has the most to capture.
GRAPH_CONFIGS = {
    "whole": None,
    "sliced-barrier": PersistentConfig(block_b=16, block_h=32, block_k=64, num_programs=4, resident=True),
}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.skipif(_compat.INTERPRET, reason="TRITON_INTERPRET=1 runs the kernels on CPU tensors only")
@pytest.mark.parametrize("config", list(GRAPH_CONFIGS), ids=list(GRAPH_CONFIGS))
def test_cuda_graph_step_replays_a_stream(config):
    """Capture one step (x_t, h_{t-1}) -> (y_t, h_t) in a CUDA graph and replay it over a sequence."""
    device = torch.device("cuda")
    steps, batch, inp, hidden, layers = 8, 8, 32, 128, 2
    torch.manual_seed(0)
    gru = tritongru.GRU(inp, hidden, layers, device=device, backend="triton").eval()
    xs = torch.randn(steps, batch, inp, device=device)
    h0 = torch.randn(layers, batch, hidden, device=device)
    forced = force_config(GRAPH_CONFIGS[config]) if GRAPH_CONFIGS[config] is not None else contextlib.nullcontext()
    with torch.no_grad(), forced:
        y_whole, h_whole = gru(xs, h0)
        eager, h = [], h0
        for t in range(steps):
            y_t, h = gru(xs[t : t + 1], h)
            eager.append(y_t)
        eager = torch.cat(eager)

        static_x = xs[:1].clone()
        static_h = h0.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up: compile, check co-residency, allocate
            for _ in range(3):
                gru(static_x, static_h)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_y, static_h_next = gru(static_x, static_h)

        replayed = []
        static_h.copy_(h0)
        for t in range(steps):
            static_x.copy_(xs[t : t + 1])
            graph.replay()
            replayed.append(static_y.clone())
            static_h.copy_(static_h_next)
        torch.cuda.synchronize()
    replayed = torch.cat(replayed)
    # The replay runs the kernels of the eager steps on the same inputs; only the input projection's
    # GEMM may pick another cuBLAS algorithm under capture, so equal to ~1e-7, checked at 1e-6.
    torch.testing.assert_close(replayed, eager, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(static_h, h, rtol=1e-6, atol=1e-6)
    # And both agree with one call on the whole sequence (fp32 on tensor cores as tf32x3: ~1e-6).
    torch.testing.assert_close(replayed, y_whole, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(static_h, h_whole, rtol=1e-4, atol=1e-5)

