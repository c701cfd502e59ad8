"""The host side of a synchronised launch without a GPU: a grid that cannot be co-resident is refused
before anything launches, and a stall reported by the kernel's error word becomes a StallError,
at once (eager, and on the CPU) or when the word has come back (async, the default on a GPU)."""

from __future__ import annotations

import collections
import dataclasses
import types

import pytest
import torch

from tritongru.kernels import launch, settings, stalls
from tritongru.kernels.launch import Launch, PersistentConfig
from tritongru.kernels.limits import arch_limits


class FakeKernel:
    """Stands in for a compiled synchronised kernel: records its launch, optionally reports a stall."""

    arg_names = ["p_x", "p_sync", "T", "B", "H"]

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
    """launch as it behaves on a GPU whose SM holds one program of every kernel, with 8 SMs."""
    monkeypatch.setattr(launch, "INTERPRET", False)
    monkeypatch.setattr(launch, "compiled_resources", lambda *args: (128, 150_000, 0))
    monkeypatch.setattr(launch, "device_limits", lambda index: arch_limits(90, 8))


CONFIG = PersistentConfig(block_b=16, block_h=16, block_k=64, num_programs=8)


def _launch(kernel, config=CONFIG, synchronised=True, constexprs=None):
    args = (torch.zeros(4), launch.new_sync_word(torch.device("cpu")), 5, 3, 40)
    return Launch(kernel, args, constexprs or {}, config, directions=1, synchronised=synchronised)


def test_grid_beyond_capacity_is_refused_before_launch(compiled_mode):
    kernel = FakeKernel(stall=False)
    too_many = PersistentConfig(block_b=16, block_h=16, block_k=64, num_programs=9)
    with pytest.raises(RuntimeError, match=r"T=5, B=3, H=40, a grid of 9 programs\) cannot be co-resident on cpu \(at most 8"):
        launch.launch_persistent(_launch(kernel, too_many))
    assert kernel.launches == []


class OversizedKernel(FakeKernel):
    """A kernel whose compiled form needs more shared memory than an sm_86 block may take."""

    def warmup(self, *args, grid, **options):
        return types.SimpleNamespace(metadata=types.SimpleNamespace(shared=120_000), n_regs=64)


@pytest.mark.parametrize("synchronised", [True, False], ids=["synchronised", "independent"])
def test_kernel_larger_than_the_device_does_not_fit_before_it_launches(monkeypatch, synchronised):
    monkeypatch.setattr(launch, "INTERPRET", False)
    monkeypatch.setattr(launch, "device_limits", lambda index: arch_limits(86, 72))
    kernel = OversizedKernel(stall=False)
    with pytest.raises(launch.DoesNotFit, match=r"b16/h16/k64/p8/w4.* needs 120000 of shared memory \(bytes\) per program; cpu allows 101376") as error:
        launch.launch_persistent(_launch(kernel, synchronised=synchronised))
    assert (error.value.required, error.value.limit) == (120_000, 101_376)
    assert kernel.launches == []


class SpillingKernel(FakeKernel):
    """A kernel whose compiled form fits an SM but spills 6 words (24 B) per thread."""

    def warmup(self, *args, grid, **options):
        return types.SimpleNamespace(metadata=types.SimpleNamespace(shared=40_000), n_regs=80, n_spills=6,
                                     _init_handles=lambda: None)


@pytest.mark.parametrize("resident", [True, False], ids=["resident", "streamed"])
def test_spilled_resident_weights_are_refused_only_while_the_planner_asks(monkeypatch, resident):
    monkeypatch.setattr(launch, "INTERPRET", False)
    monkeypatch.setattr(launch, "device_limits", lambda index: arch_limits(120, 170))
    monkeypatch.setattr(launch, "_resources", {})
    kernel = SpillingKernel(stall=False)
    config = dataclasses.replace(CONFIG, num_programs=4, resident=resident)
    with launch.refusing_spills():
        if resident:
            with pytest.raises(launch.Spills, match=r"b16/h16/k64/p4/w4.* spills 24 B per thread to local memory") as error:
                launch.launch_persistent(_launch(kernel, config, synchronised=False))
            assert isinstance(error.value, launch.DoesNotFit) and error.value.short().endswith("spills 24 B")
        else:  # weights read from L2 every step: nothing resident to protect
            launch.launch_persistent(_launch(kernel, config, synchronised=False))
    assert len(kernel.launches) == (0 if resident else 1)
    launch.launch_persistent(_launch(kernel, config, synchronised=False))  # spills allowed: it runs
    assert len(kernel.launches) == (1 if resident else 2)


def test_synchronised_launch_is_cooperative(compiled_mode):
    kernel = FakeKernel(stall=False)
    launch.launch_persistent(_launch(kernel, constexprs={"BLOCK_B": 16}))
    [(grid, options)] = kernel.launches
    assert grid == (8,) and options["launch_cooperative_grid"] is True and options["num_warps"] == CONFIG.num_warps
    assert options["BLOCK_B"] == 16


@pytest.mark.parametrize("mode", ["async", "eager"])
def test_stall_becomes_an_error(compiled_mode, monkeypatch, mode):
    monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "75")
    monkeypatch.setenv("TRITONGRU_STALL_CHECK", mode)
    with pytest.raises(stalls.StallError, match=r"fake_barrier_kernel \(T=5.*waited longer than 75 ms"):
        launch.launch_persistent(_launch(FakeKernel(stall=True)))


def test_stall_check_can_be_turned_off(compiled_mode, monkeypatch):
    monkeypatch.setenv("TRITONGRU_STALL_CHECK", "0")
    launch.launch_persistent(_launch(FakeKernel(stall=True)))


def test_unknown_stall_mode_is_refused(compiled_mode, monkeypatch):
    monkeypatch.setenv("TRITONGRU_STALL_CHECK", "sometimes")
    with pytest.raises(ValueError, match=r"TRITONGRU_STALL_CHECK must be one of \('async', 'eager', '0'\), got 'sometimes'"):
        launch.launch_persistent(_launch(FakeKernel(stall=False)))


def test_kernels_without_synchronisation_launch_plainly(compiled_mode):
    kernel = FakeKernel(stall=True)
    launch.launch_persistent(_launch(kernel, synchronised=False))
    [(_, options)] = kernel.launches
    assert "launch_cooperative_grid" not in options


def test_timeout_outside_int32_microseconds_is_refused(monkeypatch):
    monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "3000000")
    with pytest.raises(ValueError, match=r"must lie in \(0, 2147483\] milliseconds, got 3000000"):
        settings.barrier_timeout_us()


class FakeEvent:
    def __init__(self, landed: bool):
        self.landed = landed
        self.waited = False

    def query(self) -> bool:
        return self.landed

    def synchronize(self) -> None:
        self.waited = True
        self.landed = True


def _pending(*words):
    """Watched launches as a GPU leaves them: ``(error word, landed)`` each, oldest first."""
    return collections.deque(
        stalls._Watched(torch.tensor([error], dtype=torch.int32), FakeEvent(landed), f"launch {i}")
        for i, (error, landed) in enumerate(words)
    )


def test_async_poll_reads_only_words_that_have_landed():
    pending = _pending((0, True), (1, False))
    stalls._settle(pending, wait_for=0)
    assert [w.what for w in pending] == ["launch 1"] and not pending[0].done.waited


def test_async_poll_raises_for_a_landed_stall_naming_its_launch():
    pending = _pending((0, True), (1, True), (0, False))
    with pytest.raises(stalls.StallError, match=r"^launch 1: .* everything computed from them since, are invalid"):
        stalls._settle(pending, wait_for=0)
    assert not pending, "a reported stall clears what is behind it: those launches ran on fresh words"


def test_check_stalls_waits_for_every_launch(monkeypatch):
    device = torch.device("cuda", 0)
    monkeypatch.setitem(stalls._pending, device, _pending((0, False), (1, False)))
    with pytest.raises(stalls.StallError, match="^launch 1: "):
        stalls.check_stalls()
    monkeypatch.setitem(stalls._pending, device, _pending((0, False)))
    stalls.check_stalls(device)
    assert not stalls._pending[device]


def test_device_name_names_a_gpu_and_the_cpu(monkeypatch):
    """The name every refusal and DoesNotFit message carries (a GPU's, without needing one here)."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert launch.device_name(torch.device("cuda", 0)) == "NVIDIA H200"
    assert launch.device_name(torch.device("cpu")) == "cpu"
