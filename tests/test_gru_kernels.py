"""The persistent kernels directly, in both work splits and with explicit configurations: several
hidden slices and batch tiles, weights re-read each step, per-row lengths in both directions,
bitwise repeatability and NaN containment."""

from __future__ import annotations

import pytest
import torch

import tritongru
from tritongru import dispatch
from tritongru.dispatch import force_config
from tritongru.kernels.launch import PersistentConfig
from tritongru.reference import gru_recurrence_reference, gru_reference

from conftest import DEVICE
from helpers import assert_close, grads

# Here one program computes every tile; one program per tile, meeting at the grid barrier, runs in
# test_concurrent_interpreter.py (CPU) and test_gpu.py.
CONFIGS = {
    # W_hh whole in each program; programs are independent batch tiles.
    "whole": lambda H, B: PersistentConfig(block_b=16, block_h=32, block_k=16, num_programs=1),
    # The same with the product split four ways: two parts of each chunk's reduction, two of the columns.
    "whole-split": lambda H, B: PersistentConfig(block_b=16, block_h=32, block_k=32, num_programs=1, num_warps=4,
                                                 split_k=2, split_n=2),
    # Three hidden slices and two batch tiles, the reduction in several chunks, weights re-read.
    "sliced": lambda H, B: PersistentConfig(block_b=16, block_h=16, block_k=16, num_programs=1, resident=False),
    "sliced-split": lambda H, B: PersistentConfig(block_b=16, block_h=16, block_k=32, num_programs=1, resident=False,
                                                  num_warps=4, split_k=2, split_n=2),
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
    T, B, inputs, H = 3, 18, 3, 40 if split.startswith("sliced") else 20
    dtype = torch.float64
    gru = torch.nn.GRU(inputs, H, bidirectional=True, dtype=dtype)
    params = [p.detach().to(DEVICE).requires_grad_() for p in gru._flat_weights]
    x = torch.randn(T, B, inputs, dtype=dtype, device=DEVICE, requires_grad=True)
    h0 = torch.randn(2, B, H, dtype=dtype, device=DEVICE, requires_grad=True)
    lengths = torch.randint(1, T + 1, (B,)) if with_lengths else None
    config = CONFIGS[split](H, B)
    assert config.num_h_tiles(H) == (3 if split.startswith("sliced") else 1)
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


@pytest.mark.parametrize("directions", [1, 2], ids=["one-direction", "two-directions"])
def test_op_matches_recurrence_reference(directions):
    """The operator on its own, with b_hh of r and z folded into gx as the functional layer does;
    with two directions in one launch, the second runs reversed and writes the right half of y."""
    torch.manual_seed(6)
    T, B, H, D = 4, 3, 20, directions
    gx = torch.randn(T, B, D * 3 * H, dtype=torch.float64, device=DEVICE)
    w = torch.randn(D, 3 * H, H, dtype=torch.float64, device=DEVICE) / H**0.5
    b_hn, h0 = torch.randn(D, H, dtype=torch.float64, device=DEVICE), torch.randn(D, B, H, dtype=torch.float64, device=DEVICE)
    y, h_n, hs, gates = torch.ops.tritongru.gru_recurrence(gx, w, b_hn, h0, None, False, False)
    assert hs.numel() == 0 and gates.numel() == 0 and y.shape == (T, B, D * H) and h_n.shape == (D, B, H)
    for d in range(D):
        gx_d = gx[..., d * 3 * H : (d + 1) * 3 * H]
        y_ref, h_ref = gru_recurrence_reference(gx_d.flip(0) if d else gx_d, w[d], b_hn[d], h0[d])
        assert_close(y[..., d * H : (d + 1) * H], y_ref.flip(0) if d else y_ref, torch.float64, f"y of direction {d}")
        assert_close(h_n[d], h_ref, torch.float64, f"h_n of direction {d}")


def test_op_names_shapes_it_cannot_take():
    gx, w, b_hn, h0 = torch.randn(4, 3, 60), torch.randn(60, 20), torch.randn(1, 20), torch.randn(1, 3, 20)
    with pytest.raises(ValueError, match=r"w_hh must be \(D, 3H, H\) with D directions \(1 or 2\), got \(60, 20\)"):
        torch.ops.tritongru.gru_recurrence(gx, w, b_hn, h0, None, False, False)
    with pytest.raises(ValueError, match=r"h0 must have shape \(1, 3, 20\) .* got \(2, 3, 20\)"):
        torch.ops.tritongru.gru_recurrence(gx, w[None], b_hn, torch.randn(2, 3, 20), None, False, False)


@pytest.mark.parametrize("split", list(CONFIGS), ids=list(CONFIGS))
def test_one_launch_for_both_directions_equals_one_per_direction(split, monkeypatch):
    """Fusing a layer's directions into one launch changes which programs run, not what they
    compute: the outputs are bitwise those of one launch per direction; the gradients agree to
    rounding (one input GEMM over both directions sums dx in another order)."""
    torch.manual_seed(7)
    T, B, inputs, H = 3, 18, 3, 40 if split.startswith("sliced") else 20
    x = torch.randn(T, B, inputs, device=DEVICE, requires_grad=True)
    model = tritongru.GRU(inputs, H, 2, bidirectional=True, backend="triton").to(DEVICE)
    lengths = torch.randint(1, T + 1, (B,))
    results = {}
    for per_launch in (2, 1):
        monkeypatch.setattr(dispatch, "plan_layer", lambda H, B, dtype, training, bidirectional, device, n=per_launch:
                            dispatch.plan_launch(dispatch.Problem(H, B, dtype, training, n), device))
        with force_config(CONFIGS[split](H, B)):
            y, h_n = tritongru.gru(x, None, list(model._flat_weights), num_layers=2, bidirectional=True,
                                   lengths=lengths, backend="triton")
            results[per_launch] = [y, h_n, *grads([y, h_n], [x, *model.parameters()])]
    assert torch.equal(results[2][0], results[1][0]) and torch.equal(results[2][1], results[1][1])
    for fused, separate in zip(results[2][2:], results[1][2:]):
        assert_close(fused, separate, torch.float32, "gradient")


def test_directions_share_a_launch_while_both_grids_fit(monkeypatch):
    # The planner as on an H200 (under the interpreter every configuration is one program).
    monkeypatch.setattr(dispatch, "INTERPRET", False)
    cpu = torch.device("cpu")
    def per_launch(*shape):
        return dispatch.plan_layer(*shape, bidirectional=True, device=cpu).problem.directions

    assert per_launch(256, 10, torch.float32, True) == 2  # 2 x 16 slices
    assert per_launch(64, 1, torch.bfloat16, False) == 2  # no barrier at all
    assert per_launch(2048, 16, torch.bfloat16, True) == 1  # 2 x 128 slices
    assert dispatch.plan_layer(256, 10, torch.float32, True, False, cpu).problem.directions == 1
