"""The persistent kernels directly, in both work splits and with explicit configurations: several
hidden slices and batch tiles, weights re-read each step, per-row lengths in both directions,
bitwise repeatability and NaN containment."""

from __future__ import annotations

import pytest
import torch

import tritongru
from tritongru.dispatch import force_config
from tritongru.kernels import PersistentConfig
from tritongru.reference import gru_recurrence_reference, gru_reference

from conftest import DEVICE
from helpers import assert_close, grads

# Here one program computes every tile; one program per tile, meeting at the grid barrier, runs in
# test_concurrent_interpreter.py (CPU) and test_gpu.py.
CONFIGS = {
    # W_hh whole in each program; programs are independent batch tiles.
    "whole": lambda H, B: PersistentConfig(block_b=16, block_h=32, block_k=16, num_programs=1),
    # Three hidden slices and two batch tiles, the reduction in several chunks, weights re-read.
    "sliced": lambda H, B: PersistentConfig(block_b=16, block_h=16, block_k=16, num_programs=1, resident=False),
}


def _run(config, x, h0, params, lengths, bidirectional):
    with force_config(config):
        return tritongru.gru(x, h0, params, num_layers=1, bidirectional=bidirectional, lengths=lengths,
                             backend="triton")


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("split", list(CONFIGS), ids=list(CONFIGS))
def test_work_splits_match_reference(split, with_lengths):
    """H=40 gives three hidden slices of 16 in the sliced split; B=18 two batch tiles of 16."""
    torch.manual_seed(3)
    T, B, inputs, H = 3, 18, 3, 40 if split == "sliced" else 20
    dtype = torch.float64
    gru = torch.nn.GRU(inputs, H, bidirectional=True, dtype=dtype)
    params = [p.detach().to(DEVICE).requires_grad_() for p in gru._flat_weights]
    x = torch.randn(T, B, inputs, dtype=dtype, device=DEVICE, requires_grad=True)
    h0 = torch.randn(2, B, H, dtype=dtype, device=DEVICE, requires_grad=True)
    lengths = torch.randint(1, T + 1, (B,)) if with_lengths else None
    config = CONFIGS[split](H, B)
    assert config.num_h_tiles(H) == (3 if split == "sliced" else 1)
    y, h_n = _run(config, x, h0, params, lengths, True)
    y_ref, h_ref = gru_reference(x, h0, params, num_layers=1, bidirectional=True, lengths=lengths)
    assert_close(y, y_ref, dtype, "output")
    assert_close(h_n, h_ref, dtype, "h_n")
    for g, w, name in zip(grads([y, h_n], [x, h0, *params]), grads([y_ref, h_ref], [x, h0, *params]),
                          ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "w_ih_r", "w_hh_r", "b_ih_r", "b_hh_r"]):
        assert_close(g, w, dtype, f"d{name}")


def test_repeat_is_bitwise_identical():
    torch.manual_seed(4)
    x = torch.randn(4, 3, 5, device=DEVICE, requires_grad=True)
    model = tritongru.GRU(5, 24, backend="triton").to(DEVICE)
    first = [t.clone() for t in (*model(x), *grads(model(x), [x, *model.parameters()]))]
    second = [*model(x), *grads(model(x), [x, *model.parameters()])]
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_nan_stays_in_its_sequence():
    torch.manual_seed(5)
    model = tritongru.GRU(4, 20, bidirectional=True, backend="triton").to(DEVICE)
    x = torch.randn(4, 3, 4, device=DEVICE)
    clean, h_clean = model(x)
    x[2, 1, 0] = float("nan")
    dirty, h_dirty = model(x)
    assert torch.isnan(dirty[:, 1]).any() and torch.isnan(h_dirty[:, 1]).any()
    for b in (0, 2):
        assert torch.equal(dirty[:, b], clean[:, b]) and torch.equal(h_dirty[:, b], h_clean[:, b])


def test_config_validation():
    with pytest.raises(ValueError, match="block_h must be a power of two >= 16"):
        PersistentConfig(block_b=16, block_h=24, block_k=16, num_programs=1).validate(40, 4)
    with pytest.raises(ValueError, match="multiple of the 3 hidden slices, got 4"):
        PersistentConfig(block_b=16, block_h=16, block_k=16, num_programs=4).validate(40, 4)


def test_op_matches_recurrence_reference():
    """The operator on its own, with b_hh of r and z folded into gx as the functional layer does."""
    torch.manual_seed(6)
    T, B, H = 4, 3, 20
    gx = torch.randn(T, B, 3 * H, dtype=torch.float64, device=DEVICE)
    w = torch.randn(3 * H, H, dtype=torch.float64, device=DEVICE) / H**0.5
    b_hn, h0 = torch.randn(H, dtype=torch.float64, device=DEVICE), torch.randn(B, H, dtype=torch.float64, device=DEVICE)
    y, h_n, hs, gates = torch.ops.tritongru.gru_recurrence(gx, w, b_hn, h0, None, False, False)
    y_ref, h_ref = gru_recurrence_reference(gx, w, b_hn, h0)
    assert hs.numel() == 0 and gates.numel() == 0
    assert_close(y, y_ref, torch.float64, "y")
    assert_close(h_n, h_ref, torch.float64, "h_n")
