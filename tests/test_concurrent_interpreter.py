"""Grid-synchronising launches executed on the CPU, every program in its own thread
(``concurrent_interpreter.py``): the grid barrier on its own, its timeout, and both persistent
kernels with resident weight slices, several hidden slices and batch tiles, one program per tile.

On a GPU these launches are covered by ``test_gpu.py``; here they check the protocol."""

from __future__ import annotations

import dataclasses
import importlib
import time

import pytest
import torch
import triton
import triton.language as tl

import tritongru
from tritongru import dispatch
from tritongru.dispatch import force_config
from tritongru.kernels.launch import PersistentConfig
from tritongru.kernels.barrier import grid_barrier
from tritongru.reference import gru_reference

from concurrent_interpreter import concurrent_programs
from helpers import OneProgramShort, assert_close, grads

# The module, not the launcher of the same name that tritongru.kernels exports.
forward_module = importlib.import_module("tritongru.kernels.gru_forward")

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU interpreter; test_gpu.py runs these on a GPU")


@pytest.fixture(autouse=True)
def patient_waits(monkeypatch):
    """Interpreted programs sharing two cores take seconds per step: a GPU's 2 s wait is too short."""
    monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "120000")


@triton.jit
def _rounds_kernel(p_slots, p_sums, p_sync, num_programs, timeout_us, ROUNDS: tl.constexpr):
    """Each round every program publishes a value and, after the barrier, sums everyone's."""
    pid = tl.program_id(0)
    offs = tl.arange(0, 16)
    for step in range(ROUNDS):
        p_slot = p_slots + (step % 2) * 16
        tl.store(p_slot + pid, step * 100 + pid)
        grid_barrier(p_sync, num_programs, timeout_us, True)
        b_all = tl.load(p_slot + offs, mask=offs < num_programs, other=0)
        tl.store(p_sums + step * 16 + pid, tl.sum(b_all))
        # Nobody overwrites this round's slot (two rounds on) before everyone has read it.
        grid_barrier(p_sync, num_programs, timeout_us, True)


def _run_rounds(grid: int, num_programs: int, rounds: int, timeout_us: int):
    slots = torch.full((2, 16), -1, dtype=torch.int32)
    sums = torch.full((rounds, 16), -1, dtype=torch.int32)
    sync = torch.zeros(2, dtype=torch.int32)
    with concurrent_programs():
        _rounds_kernel[(grid,)](slots, sums, sync, num_programs, timeout_us, ROUNDS=rounds)
    return sums, sync


def test_patch_takes_on_this_triton():
    """Programs really run at once: the first one waits at a barrier for the last one to start."""
    sums, sync = _run_rounds(grid=3, num_programs=3, rounds=1, timeout_us=int(20e6))
    assert sync[1] == 0
    assert sums[0, :3].tolist() == [3] * 3


def test_barrier_separates_rounds():
    programs, rounds = 5, 6
    sums, sync = _run_rounds(grid=programs, num_programs=programs, rounds=rounds, timeout_us=int(60e6))
    expected = [[step * 100 * programs + sum(range(programs))] * programs for step in range(rounds)]
    assert sync[1] == 0, "the barrier reported a stall"
    assert sums[:, :programs].tolist() == expected


def test_missing_program_times_out():
    """A program that never runs (another process holds its SM) ends the wait in the error word."""
    start = time.monotonic()
    sums, sync = _run_rounds(grid=2, num_programs=3, rounds=2, timeout_us=int(0.3e6))
    assert sync[1] == 1
    assert time.monotonic() - start < 30


def _grid_case(H: int, B: int, block_h: int, block_b: int, exchange: str = "barrier", split: tuple = (1, 1)):
    split_k, split_n = split
    return PersistentConfig(block_b=block_b, block_h=block_h, block_k=16 * split_k, split_k=split_k, split_n=split_n,
                            num_warps=split_k * split_n, num_programs=triton.cdiv(H, block_h) * triton.cdiv(B, block_b),
                            exchange=exchange)


# Ready flags exchange 16- and 32-bit states only; the interpreter's bf16/fp16 are unreliable, so
# they run in fp32 (exact dots here) and the barrier in fp64.
EXCHANGES = {"barrier": torch.float64, "flags": torch.float32}


# (with_lengths, tiles per program, split of the product): one tile each (3 slices x 2 batch tiles
# = 6 programs per direction), or every batch tile of its slice (3 programs, each with 2 tiles a
# step in turn); the product unsplit, or split in two parts of the reduction and two of the columns.
GRIDS = {
    "full": (False, 1, (1, 1)), "lengths": (True, 1, (1, 1)), "lengths-two-tiles-each": (True, 2, (1, 1)),
    "lengths-split": (True, 1, (2, 2)),
}


@pytest.mark.parametrize("grid", list(GRIDS), ids=list(GRIDS))
@pytest.mark.parametrize("exchange", list(EXCHANGES), ids=list(EXCHANGES))
def test_resident_slices_match_reference(exchange, grid):
    """H=40 in three resident hidden slices, B=18 in two batch tiles, both directions in one
    launch: forward and backward, the programs waiting for one another every step."""
    torch.manual_seed(11)
    T, B, inputs, H = 3, 18, 3, 40
    with_lengths, tiles_each, split = GRIDS[grid]
    dtype = EXCHANGES[exchange]
    gru = torch.nn.GRU(inputs, H, bidirectional=True, dtype=dtype)
    params = [p.detach().requires_grad_() for p in gru._flat_weights]
    x = torch.randn(T, B, inputs, dtype=dtype, requires_grad=True)
    h0 = torch.randn(2, B, H, dtype=dtype, requires_grad=True)
    lengths = torch.randint(1, T + 1, (B,)) if with_lengths else None
    config = _grid_case(H, B, block_h=16, block_b=16, exchange=exchange, split=split)
    config = dataclasses.replace(config, num_programs=config.num_programs // tiles_each)
    assert config.resident and config.grid_synchronised(H) and config.num_programs == 6 // tiles_each
    assert config.uses_ready_flags(H) == (exchange == "flags")
    assert dispatch.plan_layer(H, B, dtype, True, True, torch.device("cpu")).problem.directions == 2
    with concurrent_programs(), force_config(config):
        y, h_n = tritongru.gru(x, h0, params, num_layers=1, bidirectional=True, lengths=lengths, backend="triton")
        ours = grads([y, h_n], [x, h0, *params])
    y_ref, h_ref = gru_reference(x, h0, params, num_layers=1, bidirectional=True, lengths=lengths)
    assert_close(y, y_ref, dtype, "output")
    assert_close(h_n, h_ref, dtype, "h_n")
    names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh", "w_ih_r", "w_hh_r", "b_ih_r", "b_hh_r"]
    for g, w, name in zip(ours, grads([y_ref, h_ref], [x, h0, *params]), names):
        assert_close(g, w, dtype, f"d{name}")


@pytest.mark.parametrize("B", [1, 3, 18], ids=["B1", "B3", "B18"])
def test_flags_and_barrier_agree_bitwise(B):
    """Both exchanges hand on the same rounded states (and the backward the same dgh), so they
    compute the same bits; batches smaller than a tile poll only their own rows (1 and 4 of 16)."""
    torch.manual_seed(12)
    T, H = 5, 64
    gx = torch.randn(T, B, 3 * H)
    w_hh = torch.randn(1, 3 * H, H) / H**0.5
    b_hn, h0 = torch.randn(1, H), torch.randn(1, B, H)
    dy, dh_n = torch.randn(T, B, H), torch.randn(1, B, H)
    results = {}
    for exchange in EXCHANGES:
        config = _grid_case(H, B, block_h=16, block_b=16, exchange=exchange)
        with concurrent_programs(), force_config(config):
            y, h_n, hs, gates = torch.ops.tritongru.gru_recurrence(gx, w_hh, b_hn, h0, None, False, True)
            backward = torch.ops.tritongru.gru_recurrence_backward(dy, dh_n, w_hh, hs, gates, None, False)
        results[exchange] = (y, h_n, hs, gates, *backward)
    for name, a, b in zip(["y", "h_n", "hs", "gates", "dgx", "dgh", "dh0"], results["barrier"], results["flags"]):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("exchange", list(EXCHANGES), ids=list(EXCHANGES))
def test_stalled_launch_raises(exchange, monkeypatch):
    """The launcher turns the kernel's error word into an error naming the timeout."""
    monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "300")
    config = _grid_case(40, 4, block_h=16, block_b=16, exchange=exchange)
    kernel = forward_module.gru_fwd_persistent_kernel
    monkeypatch.setattr(forward_module, "gru_fwd_persistent_kernel", OneProgramShort(kernel))
    x = torch.randn(2, 4, 3, dtype=EXCHANGES[exchange])
    model = tritongru.GRU(3, 40, dtype=EXCHANGES[exchange], backend="triton")
    start = time.monotonic()
    with concurrent_programs(), force_config(config), pytest.raises(RuntimeError, match="TRITONGRU_BARRIER_TIMEOUT_MS"):
        model(x)
    assert time.monotonic() - start < 30, "every later step must give up at once, not wait its own timeout"
