"""The host side of a barrier launch without a GPU: a grid that cannot be co-resident is refused
before anything launches, and a stall reported by the kernel's error word becomes a RuntimeError."""

from __future__ import annotations

import types

import pytest
import torch

from tritongru.kernels import launch
from tritongru.kernels.launch import PersistentConfig


class FakeKernel:
    """Stands in for a compiled barrier kernel: records its launch, optionally reports a stall."""

    arg_names = ["p_x", "p_sync"]

    def __init__(self, stall: bool):
        self.fn = types.SimpleNamespace(__name__="fake_barrier_kernel")
        self.stall = stall
        self.launches = []

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.launches.append((grid, kwargs))
            if self.stall:
                args[1][1] = 1

        return run


@pytest.fixture
def compiled_mode(monkeypatch):
    """launch as it behaves on a GPU, with a fixed co-residency capacity of 8 programs."""
    monkeypatch.setattr(launch, "INTERPRET", False)
    monkeypatch.setattr(launch, "co_resident_capacity", lambda *args: 8)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)


CONFIG = PersistentConfig(block_b=16, block_h=16, block_k=64, num_programs=8)


def _args():
    return (torch.zeros(4), launch.new_sync_word(torch.device("cpu")))


def test_grid_beyond_capacity_is_refused_before_launch(compiled_mode):
    kernel = FakeKernel(stall=False)
    too_many = PersistentConfig(block_b=16, block_h=16, block_k=64, num_programs=9)
    with pytest.raises(RuntimeError, match="a grid of 9 programs cannot be co-resident on cpu .at most 8 fit."):
        launch.launch_persistent(kernel, too_many, _args(), {}, synchronised=True)
    assert kernel.launches == []


def test_barrier_launch_is_cooperative_and_checked(compiled_mode):
    kernel = FakeKernel(stall=False)
    launch.launch_persistent(kernel, CONFIG, _args(), {"BLOCK_B": 16}, synchronised=True)
    [(grid, options)] = kernel.launches
    assert grid == (8,) and options["launch_cooperative_grid"] is True and options["num_warps"] == CONFIG.num_warps


def test_stall_becomes_an_error(compiled_mode, monkeypatch):
    monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "75")
    with pytest.raises(RuntimeError, match="program waited longer than 75 ms .* for the other programs of its grid of 8"):
        launch.launch_persistent(FakeKernel(stall=True), CONFIG, _args(), {}, synchronised=True)


def test_stall_check_can_be_turned_off(compiled_mode, monkeypatch):
    monkeypatch.setenv("TRITONGRU_STALL_CHECK", "0")
    launch.launch_persistent(FakeKernel(stall=True), CONFIG, _args(), {}, synchronised=True)


def test_kernels_without_a_barrier_launch_plainly(compiled_mode):
    kernel = FakeKernel(stall=True)
    launch.launch_persistent(kernel, CONFIG, _args(), {}, synchronised=False)
    [(_, options)] = kernel.launches
    assert "launch_cooperative_grid" not in options
