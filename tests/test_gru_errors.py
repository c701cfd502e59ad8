"""Bad input gets a clear error naming the expected and the actual value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import tritongru

from conftest import DEVICE


@pytest.fixture
def model():
    return tritongru.GRU(4, 6, 2, backend="triton").to(DEVICE)


def _x(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype, device=DEVICE)


@pytest.mark.parametrize(
    "make_args, error, match",
    [
        (lambda: (_x(2, 3, 4, 5),), ValueError, "Expected input to be 2D or 3D, got 4D"),
        (lambda: (_x(3, 2, 5),), RuntimeError, "input_size. Expected 4, got 5"),
        (lambda: (_x(3, 2, 4), _x(1, 2, 6)), RuntimeError, r"Expected hidden size \(2, 2, 6\), got \[1, 2, 6\]"),
        (lambda: (_x(3, 2, 4), _x(2, 6)), RuntimeError, "hx should also be 3-D but got 2-D"),
        (lambda: (_x(3, 4), _x(2, 1, 6)), RuntimeError, "hx should also be 2-D but got 3-D"),
        (lambda: (_x(3, 2, 4, dtype=torch.float64),), ValueError, r"input dtype \(torch.float64\) does not match weight dtype \(torch.float32\)"),
        (lambda: (_x(3, 2, 4), _x(2, 2, 6, dtype=torch.float64)), RuntimeError, "hx dtype torch.float64 does not match the input dtype torch.float32"),
        (lambda: (_x(0, 2, 4),), RuntimeError, "Expected sequence length to be larger than 0"),
        (lambda: (_x(0, 4),), RuntimeError, "Expected sequence length to be larger than 0"),
    ],
    ids=["rank4", "feature-size", "hidden-shape", "hidden-rank", "unbatched-hidden-rank", "input-dtype", "hx-dtype",
         "empty-time", "unbatched-empty-time"],
)
@pytest.mark.parametrize("backend", ["triton", "torch", "reference"])
def test_bad_input_raises_what_nn_gru_raises(model, backend, make_args, error, match):
    model.backend = backend
    args = make_args()
    with pytest.raises(error, match=match):
        model(*args)
    with pytest.raises(error):
        model.to_torch()(*args)


@pytest.mark.parametrize("backend", ["triton", "torch", "reference"])
def test_empty_batch_gives_empty_results_as_nn_gru(model, backend):
    model.backend = backend
    x = _x(3, 0, 4, dtype=torch.float32).requires_grad_()
    y, h_n = model(x)
    expected_y, expected_h = model.to_torch()(x)
    assert y.shape == expected_y.shape == (3, 0, 6) and h_n.shape == expected_h.shape == (2, 0, 6)
    (y.sum() + h_n.sum()).backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("lengths, match", [
    (torch.tensor([3, 0]), r"lengths must lie in \[1, 3\] .* got values in \[0, 3\]"),
    (torch.tensor([4, 2]), r"lengths must lie in \[1, 3\] .* got values in \[2, 4\]"),
    (torch.tensor([3, 2, 1]), r"lengths must have shape \(2,\) .* got \(3,\)"),
], ids=["zero", "too-long", "wrong-count"])
def test_bad_lengths(model, lengths, match):
    with pytest.raises(ValueError, match=match):
        tritongru.gru(_x(3, 2, 4), None, model._flat_weights, num_layers=2, bidirectional=False, lengths=lengths)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="backend must be one of .* got 'cudnn'"):
        tritongru.GRU(4, 6, backend="cudnn")
    with pytest.raises(ValueError, match="hidden_size must be greater than zero, got 0"):
        tritongru.GRU(4, 0)
    with pytest.raises(TypeError, match="num_layers should be of type int, got: float"):
        tritongru.GRU(4, 6, 2.0)
    with pytest.raises(ValueError, match=r"dropout should be a number in range \[0, 1\], got 1.5"):
        tritongru.GRU(4, 6, dropout=1.5)
    with pytest.raises(TypeError, match="from_torch expects a torch.nn.GRU, got LSTM"):
        tritongru.GRU.from_torch(torch.nn.LSTM(4, 6))


def test_triton_backend_without_gpu_or_interpreter_is_refused():
    """backend='triton' on CPU tensors without TRITON_INTERPRET=1: a clear error, not a Triton crash."""
    code = (
        "import torch, tritongru\n"
        "m = tritongru.GRU(3, 4, backend='triton')\n"
        "try:\n    m(torch.randn(2, 1, 3))\nexcept RuntimeError as e:\n    print('ERR', e)\n"
        "print('AUTO', tuple(tritongru.GRU(3, 4)(torch.randn(2, 1, 3))[0].shape))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "ERR backend='triton' cannot run here: the Triton kernels need a CUDA device" in out.stdout, out.stderr
    # auto runs PyTorch's GRU operator on CPU tensors.
    assert "AUTO (2, 1, 4)" in out.stdout, out.stderr


def test_device_mismatch_is_named():
    """Tensors on different devices (the meta device stands in for a second device on a CPU)."""
    model = tritongru.GRU(4, 6, backend="reference")
    with pytest.raises(RuntimeError, match="input is on meta but the parameters are on cpu"):
        model(torch.empty(3, 2, 4, device="meta"))
    with pytest.raises(RuntimeError, match="hx is on meta but the input is on cpu"):
        model(torch.randn(3, 2, 4), torch.empty(1, 2, 6, device="meta"))
    with pytest.raises(RuntimeError, match=r"params\[1\] is on meta, expected the input's device cpu"):
        params = [p.detach() for p in model._flat_weights]
        params[1] = params[1].to("meta")
        tritongru.gru(torch.randn(3, 2, 4), None, params, num_layers=1, bidirectional=False, backend="triton")


def test_dropout_with_one_layer_warns_as_nn_gru():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        tritongru.GRU(4, 6, dropout=0.5)
