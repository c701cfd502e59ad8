"""Plans follow the GPU: the limits of every known GPU, the work split they lead to, and the smaller
plans tried where a compiled kernel does not fit (no GPU needed: the launches are stand-ins)."""

from __future__ import annotations

import dataclasses
import re
import types

import pytest
import torch

from tritongru import PlanError, dispatch
from tritongru.dispatch import Problem, force_config
from tritongru.hardware import KNOWN_GPUS, gpus_of_arch, known_gpu
from tritongru.kernels import launch
from tritongru.kernels.launch import DoesNotFit, PersistentConfig
from tritongru.kernels.limits import ARCH_LIMITS, arch_limits

CUDA = torch.device("cuda", 0)


def test_known_gpus_take_their_architectures_limits():
    for name, known in KNOWN_GPUS.items():
        limits = known.limits
        assert limits.sms == known.sms and limits.arch == known.arch
        assert limits.shared_per_block == ARCH_LIMITS[known.arch]["shared_per_sm"] - 1024, name
        assert known.source and "Programming Guide" in known.limits_source()
    assert known_gpu("h200").limits == dispatch.H200
    assert (known_gpu("a100").limits.shared_per_block, known_gpu("l4").limits.shared_per_block) == (163 * 1024, 99 * 1024)
    assert gpus_of_arch(89) == ["l4", "l40s", "rtx4090"]


def test_unknown_gpus_and_architectures_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown GPU 'v100'; known: a100, a10"):
        known_gpu("v100")
    with pytest.raises(ValueError, match="no limits known for sm_70; the table has sm_80"):
        arch_limits(70, 80)
    with pytest.raises(ValueError, match="no known GPU of sm_75"):
        gpus_of_arch(75)


def test_weight_budget_follows_shared_memory():
    assert dispatch.weight_budget(dispatch.H200) == 200 * 1024
    assert dispatch.weight_budget(known_gpu("a10").limits) == 72 * 1024


@pytest.mark.parametrize("gpu, resident", [("h200", True), ("a100", True), ("a10", False), ("l4", False)])
def test_weight_slices_stay_resident_only_where_they_fit(gpu, resident):
    """bf16 H=1024: a 16-unit slice holds 96 KiB of W_hh, over the 72 KiB an sm_86/89 program may
    give its weights, so there the weights stream from L2 every step."""
    limits = known_gpu(gpu).limits
    config = dispatch.heuristic_config(Problem(1024, 16, torch.bfloat16, False), limits)
    assert config.resident is resident
    assert config.num_programs <= limits.sms
    if resident:
        assert config.weight_bytes(1024, torch.bfloat16) <= dispatch.weight_budget(limits)


@pytest.mark.parametrize("gpu", list(KNOWN_GPUS))
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_smaller_plans_shrink_until_weights_stream_and_chunks_are_short(gpu, backward):
    limits = known_gpu(gpu).limits
    problem = Problem(256, 16, torch.float32, True)
    planned = dispatch.heuristic_config(problem, limits, backward)
    smaller = list(dispatch.smaller_plans(problem, limits, backward, planned))
    assert smaller and planned not in smaller and len(set(smaller)) == len(smaller)
    for config in smaller:
        config.validate(problem.hidden, problem.batch, problem.dtype)
        assert config.num_warps == config.split_k * config.split_n  # no warp repeats another's work
    streamed = [config.resident for config in smaller].index(False)
    assert all(not config.resident for config in smaller[streamed:])
    chunks = [config.block_k for config in smaller[streamed:]]
    assert chunks == sorted(chunks, reverse=True) and chunks[-1] == 16


def _refusing(needs_streaming: bool, ran: list, gpu_name: str):
    """A stand-in launcher: a resident plan does not fit (or none does), a streamed one runs."""

    def run(config: PersistentConfig):
        if config.resident or not needs_streaming:
            stand_in = types.SimpleNamespace(describe=lambda: "gru_fwd_persistent_kernel (T=8, B=16, H=1024)", config=config)
            raise DoesNotFit(stand_in, "shared memory (bytes)", 120_000, 101_376, gpu_name)
        ran.append(config)
        return "ran"

    return run


# One GPU of every architecture the kernels run on: re-planning is proved on each.
ONE_PER_ARCH = {f"{name}-sm{KNOWN_GPUS[name].arch}": name for name in ("a100", "a10", "l4", "h100-pcie", "b200", "rtx5090")}


@pytest.fixture(params=list(ONE_PER_ARCH.values()), ids=list(ONE_PER_ARCH))
def on_a_gpu(request, monkeypatch):
    """The planner as it runs on a GPU of each architecture, with nothing tuned and nothing fitted yet."""
    known = KNOWN_GPUS[request.param]
    monkeypatch.setattr(dispatch, "INTERPRET", False)
    monkeypatch.setattr(dispatch, "limits_of", lambda device: known.limits)
    monkeypatch.setattr(dispatch, "device_name", lambda device: known.name)
    monkeypatch.setattr(dispatch, "_fitted", {})
    monkeypatch.setattr(dispatch, "_stacks_refused", set())
    from tritongru import tuned

    monkeypatch.setattr(tuned, "lookup", lambda problem, device: None)
    return known


def test_a_plan_that_does_not_fit_is_replaced_and_remembered(on_a_gpu, monkeypatch):
    problem = Problem(1024, 16, torch.bfloat16, False)
    resident = PersistentConfig(block_b=16, block_h=16, block_k=1024, num_programs=64, num_warps=8, split_k=8)
    monkeypatch.setattr(dispatch, "heuristic_config", lambda problem, limits, backward=False, *args: (
        resident if limits.shared_per_block > 60_000 else PersistentConfig(16, 16, 256, 64, 8, resident=False, split_k=8)))
    ran = []
    plan = dispatch.plan_launch(problem, CUDA)
    assert (plan.source, plan.forward) == ("planned", resident)
    assert dispatch.run_planned(plan, False, CUDA, _refusing(True, ran, on_a_gpu.name)) == "ran"
    [fitted] = ran
    assert not fitted.resident
    # Later plans (and so the planner of bidirectional launches) go straight to the plan that fitted.
    assert dispatch.plan_launch(problem, CUDA) == dispatch.LaunchPlan(problem, fitted, None, "fitted")
    training = dataclasses.replace(problem, training=True)
    assert dispatch.plan_launch(training, CUDA).forward == resident  # another problem: planned afresh


def test_nothing_fitting_is_a_plan_error_naming_gpu_shape_and_plans(on_a_gpu):
    problem = Problem(1024, 16, torch.bfloat16, False)
    known = on_a_gpu
    with pytest.raises(PlanError, match=r"fwd-inf kernel for hidden 1024, batch 16, torch.bfloat16 in 1 direction\(s\) "
                                        rf"fits {re.escape(known.name)} \(sm_{known.arch}, {known.sms} SMs.*tried: "
                                        r".*b16/h\d+/k\d+/.*needs 120000") as error:
        dispatch.run_planned(dispatch.plan_launch(problem, CUDA), False, CUDA, _refusing(False, [], known.name))
    assert isinstance(error.value, RuntimeError) and error.value.__class__.__module__ == "tritongru.errors"


def test_a_forced_configuration_is_never_replaced(on_a_gpu):
    problem = Problem(1024, 16, torch.bfloat16, False)
    forced = PersistentConfig(block_b=16, block_h=16, block_k=1024, num_programs=64, num_warps=8, split_k=8)
    ran = []
    with force_config(forced), pytest.raises(PlanError, match="the forced configuration does not fit"):
        dispatch.run_planned(dispatch.plan_launch(problem, CUDA), False, CUDA, _refusing(True, ran, on_a_gpu.name))
    assert ran == []


def _spilling(spills, ran: list, attempts: list):
    """A stand-in launcher that checks a compiled kernel as launch_persistent does: a plan for which
    ``spills(config)`` holds raises Spills while the planner refuses spills, and runs otherwise."""

    def run(config: PersistentConfig):
        attempts.append(config)
        if spills(config) and launch._spills_refused.get():
            stand_in = types.SimpleNamespace(describe=lambda: "gru_bwd_persistent_kernel (T=8, B=64, H=64)", config=config)
            raise launch.Spills(stand_in, 24, "NVIDIA GeForce RTX 5090")
        ran.append(config)
        return "ran"

    return run


def test_a_plan_that_spills_resident_weights_runs_another_register_setting_and_remembers_it(on_a_gpu):
    problem = Problem(64, 64, torch.bfloat16, True)
    plan = dispatch.plan_launch(problem, CUDA)
    planned = plan.backward
    assert planned.resident and planned.max_registers is None
    ran, attempts = [], []
    run = _spilling(lambda config: config.max_registers is None, ran, attempts)
    assert dispatch.run_planned(plan, True, CUDA, run) == "ran"
    [fitted] = ran
    assert fitted == dataclasses.replace(planned, max_registers=255) and attempts == [planned, fitted]
    assert dispatch.plan_launch(problem, CUDA).backward == fitted
    attempts.clear()
    dispatch.run_planned(dispatch.plan_launch(problem, CUDA), True, CUDA, run)
    assert attempts == [fitted]  # later calls go straight to it


def test_where_every_register_setting_spills_the_planned_plan_runs_and_nothing_smaller(on_a_gpu):
    """A few spilled bytes cost less than what the smaller plans give up (weights streamed from L2)."""
    problem = Problem(512, 1, torch.bfloat16, False)
    plan = dispatch.plan_launch(problem, CUDA)
    ran, attempts = [], []
    dispatch.run_planned(plan, False, CUDA, _spilling(lambda config: True, ran, attempts))
    assert ran == [plan.forward] and all(config.resident for config in attempts)
    assert attempts[0] == plan.forward and len(attempts) == 1 + len(list(dispatch.spill_remedies(plan.forward))) + 1
    attempts.clear()
    dispatch.run_planned(dispatch.plan_launch(problem, CUDA), False, CUDA, _spilling(lambda config: True, ran, attempts))
    assert attempts == [plan.forward]  # remembered: the search is not repeated every call


def test_a_stack_that_spills_with_every_register_setting_runs_layer_by_layer(on_a_gpu):
    """One launch per layer keeps every layer's weights on chip spill-free, so a stack's launch
    never runs spilling; once refused, its shape plans layer by layer without compiling again."""
    problem = Problem(256, 1, torch.bfloat16, False, layers=2)
    assert dispatch.plan_stack(256, 1, torch.bfloat16, False, 2, CUDA) is not None
    ran, attempts = [], []
    plan = dispatch.plan_launch(problem, CUDA)
    with pytest.raises(PlanError):
        dispatch.run_planned(plan, False, CUDA, _spilling(lambda config: True, ran, attempts))
    assert ran == [] and attempts[: 1 + len(list(dispatch.spill_remedies(plan.forward)))] == [
        plan.forward, *dispatch.spill_remedies(plan.forward)]
    assert all(config.resident for config in attempts), "a stack never streams its weights"
    assert dispatch.plan_stack(256, 1, torch.bfloat16, False, 2, CUDA) is None
    assert dispatch.stack_refused(problem, CUDA, backward=False) and not dispatch.stack_refused(problem, CUDA, backward=True)


def test_a_forced_configuration_runs_as_it_is_spills_and_all(on_a_gpu):
    problem = Problem(64, 64, torch.bfloat16, False)
    forced = PersistentConfig(block_b=16, block_h=64, block_k=64, num_programs=4, num_warps=8, split_n=8)
    ran, attempts = [], []
    with force_config(forced):
        dispatch.run_planned(dispatch.plan_launch(problem, CUDA), False, CUDA, _spilling(lambda config: True, ran, attempts))
    assert ran == attempts == [forced]


def test_slices_of_default_tiles_cap_registers_for_one_program_per_sm():
    """Off the plan tables (the architecture no search has ranked tiles for yet, sm_100)
    slices cap registers at 255: ptxas otherwise aims at several programs per SM and spills
    resident tiles (compile-report, sm_80-sm_120); a program holding all of W_hh is left to ptxas."""
    limits = known_gpu("b200").limits
    sliced = dispatch.heuristic_config(Problem(512, 1, torch.bfloat16, False), limits)
    assert sliced.max_registers == 255 and sliced.num_h_tiles(512) > 1 and sliced.num_programs <= limits.sms
    whole = dispatch.heuristic_config(Problem(64, 16, torch.bfloat16, False), limits)
    assert whole.num_h_tiles(64) == 1 and whole.max_registers is None
    # The plan table's tiles keep what the search compiled.
    assert dispatch.heuristic_config(Problem(1024, 16, torch.bfloat16, False), dispatch.H200).max_registers is None


def test_every_priced_gpu_is_a_known_one_with_a_source_for_every_figure():
    from tritongru.hardware import GPUS

    for name, priced in GPUS.items():
        known = known_gpu(name)
        assert (priced.arch, priced.sms.value, priced.name) == (known.arch, known.sms, known.name)
        assert all(figure.source for figure in priced.figures().values()), name
    # The tensor issue rate follows the published dense peak where it is derived: the A100's
    # 312 TFLOPS over 108 x 4 sub-partitions at 1.41 GHz is 512 FLOP per clock, 8 per m16n8k16.
    assert GPUS["a100"].mma_issue.value == 8.0 and "derived" in GPUS["a100"].mma_issue.source


def test_a_stack_backward_by_rows_that_spills_is_tried_by_columns():
    """Its remedies keep the work split; the last of them take W_hh by columns, which holds no
    partial product over all H units."""
    rows = launch.PersistentConfig(16, 16, 512, 32, num_warps=8, split_k=8, max_registers=255, exchange="flags",
                                   product="rows")
    remedies = list(dispatch.spill_remedies(rows))
    assert remedies[0].product == "rows" and remedies[-1].product == "columns"
    assert [r for r in remedies if r.product == "columns"] == list(dispatch.spill_remedies(
        dataclasses.replace(rows, product="columns")))


@pytest.mark.parametrize("config, expected", [
    (launch.PersistentConfig(16, 16, 64, 4, num_warps=16, split_k=4, split_n=2, exchange="flags", product="rows"),
     "at least 8 each"),
    (launch.PersistentConfig(16, 16, 64, 4, exchange="flags", product="diagonals"), "product must be one of"),
    (launch.PersistentConfig(16, 16, 64, 4, exchange="flags", product="rows", num_warps=4, split_k=4), "32-bit offsets"),
], ids=["rows-too-many-warps", "unknown-product", "rows-too-many-partials"])
def test_a_product_the_kernels_cannot_take_is_refused(config, expected):
    batch = 2**31 // (4 * 64) if expected == "32-bit offsets" else 16
    with pytest.raises(ValueError, match=expected):
        config.validate(64, batch)


def test_one_layers_backward_takes_w_hh_by_columns_only():
    from tritongru.kernels.gru_backward import backward_launch
    config = launch.PersistentConfig(16, 16, 64, 4, exchange="flags", product="rows")
    H, B, T = 64, 2, 3
    with pytest.raises(ValueError, match="one layer's backward takes W_hh by columns"):
        backward_launch(torch.zeros(T, B, H), torch.zeros(1, B, H), torch.zeros(1, 3 * H, H), torch.zeros(1, T + 1, B, H),
                        torch.zeros(1, T, B, 4, H), None, False, config, "ieee")
