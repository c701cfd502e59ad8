"""Every layer of a unidirectional stack in one launch, forward and backward, on the CPU: each
program in its own thread (several hidden slices and batch tiles per layer, layers waiting for the
one below, or above in the backward), forward and every gradient against float64; the same dropout masks as layer by layer for one seed; a missing
program raising the timeout; and the planner's choice of the stack on an H200."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import time
from unittest import mock

import pytest
import torch
import triton

import tritongru
from tritongru import dispatch, ops
from tritongru.dispatch import Problem, force_config, heuristic_config
from tritongru.kernels.launch import PersistentConfig
from tritongru.kernels.limits import arch_limits

from concurrent_interpreter import concurrent_programs
from helpers import OneProgramShort, check_kernels_against_float64

forward_module = importlib.import_module("tritongru.kernels.gru_forward")
backward_module = importlib.import_module("tritongru.kernels.gru_backward")

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU interpreter; test_gpu.py covers a GPU")


@pytest.fixture(autouse=True)
def nothing_refused_yet(monkeypatch):
    """A stack refused in one test (found not to fit, and remembered) runs layer by layer in no other."""
    monkeypatch.setattr(dispatch, "_stacks_refused", set())


@pytest.fixture
def patient_waits(monkeypatch):
    """Interpreted programs sharing two cores take seconds per step: a GPU's 2 s wait is too short."""
    monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "120000")


def _sliced(H: int, B: int, block_h: int = 16) -> PersistentConfig:
    """Resident slices of ``block_h`` units and 16-row batch tiles, one program each, per layer."""
    return PersistentConfig(block_b=16, block_h=block_h, block_k=16, num_warps=1,
                            num_programs=triton.cdiv(H, block_h) * triton.cdiv(B, 16), exchange="flags")


@pytest.fixture
def launches(monkeypatch):
    """The forward kernel's launches of a call: (a whole stack, programs)."""
    return _record_launches(monkeypatch, forward_module)


@pytest.fixture
def backward_launches(monkeypatch):
    """The backward kernel's launches of a call: (a whole stack, programs)."""
    return _record_launches(monkeypatch, backward_module)


def _record_launches(monkeypatch, module) -> list:
    seen = []
    launch_persistent = module.launch_persistent

    def record(launch):
        seen.append((launch.constexprs["STACK"], launch.programs))
        return launch_persistent(launch)

    monkeypatch.setattr(module, "launch_persistent", record)
    return seen


@pytest.mark.parametrize("product", ["columns", "rows"])
@pytest.mark.parametrize("layers, lengths", [(2, None), (3, [4, 1, 3, 2])], ids=["layers2", "layers3-lengths"])
def test_concurrent_slices_match_float64(layers, lengths, product, patient_waits, monkeypatch, launches,
                                         backward_launches):
    """H=40 in three resident slices per layer, B=18 in two batch tiles: six programs a layer, all
    running at once, each layer polling the one below (the one above in the backward), whose
    backward takes W_hh by columns or by rows (partials over all H units summed across slices)."""
    B = 18 if lengths is None else 4
    config = dataclasses.replace(_sliced(40, B), product=product)
    products = _record_products(monkeypatch)
    lengths = None if lengths is None else torch.tensor(lengths)
    check_kernels_against_float64(layers, 40, B, 4, torch.float32, 2e-5, seed=31, lengths=lengths, concurrent=True,
                                  config=config)
    assert launches == backward_launches == [(True, layers * config.num_programs)], "one launch each way"
    assert products == [product == "rows"]


@pytest.mark.parametrize("dtype, tolerance", [(torch.bfloat16, 4e-2), (torch.float16, 4e-3)], ids=["bf16", "fp16"])
def test_low_precision_partials_by_rows_match_float64(dtype, tolerance, patient_waits, monkeypatch):
    """By rows, each slice's partial dh is exchanged in the state's dtype, rounded once per slice and
    step: within the tolerance of the columns' sum in fp32."""
    products = _record_products(monkeypatch)
    check_kernels_against_float64(2, 40, 3, 4, dtype, tolerance, seed=31, concurrent=True,
                                  config=dataclasses.replace(_sliced(40, 3), product="rows"))
    assert products == [True]


def _record_products(monkeypatch) -> list:
    """Whether each stack backward launch of a call took W_hh by rows."""
    seen = []
    launch_persistent = backward_module.launch_persistent

    def record(launch):
        seen.append(launch.constexprs["ROW_PRODUCT"])
        return launch_persistent(launch)

    monkeypatch.setattr(backward_module, "launch_persistent", record)
    return seen


@pytest.mark.parametrize("slots", [2, 3], ids=["ring2", "ring3"])
def test_rings_shorter_than_the_sequence_make_the_layer_below_wait(slots, monkeypatch, patient_waits):
    """Inference keeps each layer's states for the layer above in a ring of 2 or 3 slots over 9
    steps (three layers, two slices a layer, every program in its own thread): the layer below
    runs ahead until it would overwrite a state the layer above has not taken, and waits there.
    A writer that did not wait would overwrite values before they were read: a wrong result."""
    rings = []
    monkeypatch.setattr(forward_module, "ring_slots", lambda steps: min(steps, slots))
    launch_persistent = forward_module.launch_persistent

    def record(launch):
        rings.append(tuple(launch.arg("p_hbuf").shape[:2]))
        return launch_persistent(launch)

    monkeypatch.setattr(forward_module, "launch_persistent", record)
    torch.manual_seed(7)
    gru = torch.nn.GRU(5, 24, 3)
    params = [p.detach() for p in gru._flat_weights]
    x, h0 = torch.randn(9, 4, 5), torch.randn(3, 4, 24)
    y_ref, h_ref = tritongru.gru_reference(x.double(), h0.double(), [p.double() for p in params], num_layers=3,
                                           bidirectional=False)
    with concurrent_programs(), force_config(_sliced(24, 4)):
        y, h_n = tritongru.gru(x, h0, params, num_layers=3, bidirectional=False, backend="triton")
    assert rings == [(3, slots)], "one launch, on rings"
    torch.testing.assert_close(y.double(), y_ref, rtol=0, atol=2e-5)
    torch.testing.assert_close(h_n.double(), h_ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize("layers", [4, 6])
def test_sequential_interpreter_runs_the_stack_in_layer_order(layers, launches, backward_launches):
    """The plain interpreter runs programs one after another: each layer's whole history is kept,
    so the layer above finds every state it needs (and in the backward, whose top layer takes the
    first programs, the layer below every gradient)."""
    check_kernels_against_float64(layers, 24, 3, 5, torch.float32, 2e-5, seed=31)
    assert launches == backward_launches == [(True, layers)]


def test_layer_by_layer_backward_where_the_stacks_does_not_fit(monkeypatch, launches, backward_launches):
    """A backward plan that does not keep its weights on chip: the one-layer backward per layer."""
    monkeypatch.setattr(ops, "gru_stack_backward", _refused)
    check_kernels_against_float64(3, 24, 3, 4, torch.float32, 2e-5, seed=31)
    assert launches == [(True, 3)] and backward_launches == [(False, 1)] * 3


def test_layer_by_layer_forward_where_the_stack_does_not_fit(monkeypatch, launches, backward_launches):
    """A forward plan that does not fit: the op itself runs the one-layer kernel per layer (so a
    compiled graph holding the op takes that way too), and what it saves feeds the stack's backward."""
    monkeypatch.setattr(ops, "gru_stack_forward", _refused)
    check_kernels_against_float64(3, 24, 3, 4, torch.float32, 2e-5, seed=31)
    assert launches == [(False, 1)] * 3 and backward_launches == [(True, 3)]


def test_the_ops_layer_by_layer_forward_is_the_layer_by_layer_stack():
    """The same kernels and GEMMs, dropout masks included: the same results."""
    _, _, (separately, in_the_op) = _with_dropout(dispatch.layer_by_layer(),
                                                  mock.patch.object(ops, "gru_stack_forward", _refused))
    for a, b in zip(separately, in_the_op):
        assert torch.equal(a, b)


def _refused(*args, **kwargs):
    raise dispatch.PlanError("tritongru: no plan of the stack's launch keeps its weights on chip (test)")


def _with_dropout(*ways):
    """A 3-layer model with dropout between its layers, its input, and its outputs run each of
    ``ways`` (context managers) from the same seed."""
    model = tritongru.GRU(5, 24, 3, dropout=0.4, backend="triton").train()
    x = torch.randn(4, 3, 5)
    results = []
    for way in ways:
        torch.manual_seed(5)
        with way:
            results.append(model(x))
    return model, x, results


@pytest.mark.parametrize("dtype, tolerance", [(torch.bfloat16, 4e-2), (torch.float16, 4e-3)], ids=["bf16", "fp16"])
def test_low_precision_stack_matches_float64(dtype, tolerance, launches):
    check_kernels_against_float64(2, 24, 3, 4, dtype, tolerance, seed=31)
    assert launches == [(True, 2)]


def test_dropout_masks_are_the_same_in_one_launch_and_layer_by_layer(launches):
    """Masks drawn before any launch: one seed, one result, whichever way the layers run."""
    model, x, results = _with_dropout(contextlib.nullcontext(), dispatch.layer_by_layer())
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=2e-5, atol=2e-6)
    assert [stacked for stacked, _ in launches] == [True, False, False, False]
    torch.manual_seed(5)
    assert not torch.allclose(results[0][0], model.eval()(x)[0]), "dropout was applied"


def test_missing_program_raises_the_timeout(monkeypatch):
    monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "300")
    monkeypatch.setattr(forward_module, "gru_fwd_persistent_kernel", OneProgramShort(forward_module.gru_fwd_persistent_kernel))
    model = tritongru.GRU(3, 40, 2, backend="triton")
    start = time.monotonic()
    with (concurrent_programs(), force_config(_sliced(40, 2)), torch.no_grad(),
          pytest.raises(RuntimeError, match="TRITONGRU_BARRIER_TIMEOUT_MS")):
        model(torch.randn(3, 2, 3))
    assert time.monotonic() - start < 60


def test_missing_program_of_a_backward_by_rows_raises_the_timeout(monkeypatch):
    """The slices of a layer wait for every slice's partial: one program short, they time out."""
    monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "120000")
    model = tritongru.GRU(3, 40, 2, backend="triton")
    x = torch.randn(3, 2, 3, requires_grad=True)
    with concurrent_programs(), force_config(dataclasses.replace(_sliced(40, 2), product="rows")):
        y, _ = model(x)
        monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "300")
        monkeypatch.setattr(backward_module, "gru_bwd_persistent_kernel",
                            OneProgramShort(backward_module.gru_bwd_persistent_kernel))
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="TRITONGRU_BARRIER_TIMEOUT_MS"):
            torch.autograd.grad(y.sum(), x)
    assert time.monotonic() - start < 60


H200 = arch_limits(90, sms=132)


def test_kernelbench_stack_fits_an_h200_at_one_program_per_sm():
    """KernelBench level 3 task 39: fp32, H=256, 6 layers: 16-unit slices hold W_ih and W_hh."""
    config = heuristic_config(Problem(256, 10, torch.float32, False, layers=6), H200)
    assert config.resident and config.exchange == "flags" and config.block_h == 16
    assert 6 * config.num_programs <= H200.sms
    assert 2 * config.weight_bytes(256, torch.float32) <= H200.shared_per_block


def test_a_stack_too_big_for_the_chip_is_not_planned():
    """bf16 H=2048 x 4 layers cannot keep both weight matrices of every layer on chip."""
    config = heuristic_config(Problem(2048, 16, torch.bfloat16, False, layers=4), H200)
    assert not config.resident
    assert dispatch.plan_stack(2048, 16, torch.float64, False, 4, torch.device("cpu")) is None, "no fp64 words"
    assert dispatch.plan_stack(64, 16, torch.float32, False, 1, torch.device("cpu")) is None, "one layer"


def test_bidirectional_stacks_run_layer_by_layer(launches):
    model = tritongru.GRU(3, 16, 2, bidirectional=True, backend="triton")
    with torch.no_grad():
        model(torch.randn(3, 2, 3))
    assert launches and not any(stacked for stacked, _ in launches)


# A stack section of a plan table: 4 layers at H=512, 32-unit slices for a batch of 16; one launch
# per layer for 2 layers in training; 6 layers at H=256 in training, the backward by rows.
STACKS = {
    "2B/inference/l4/h512/b16": {"block_h": 32, "modelled_call_us": 3220.0, "layer_by_layer_us": 5670.0,
                                 "ranked": [{"block_h": 32, "modelled_call_us": 3220.0}]},
    "2B/inference/l4/h512/b1": {"block_h": 16, "modelled_call_us": 1730.0, "layer_by_layer_us": 4330.0,
                                "ranked": [{"block_h": 16, "modelled_call_us": 1730.0}]},
    "2B/training/l2/h512/b16": {"block_h": 0, "modelled_call_us": 7700.0, "layer_by_layer_us": 7700.0,
                                "ranked": [{"block_h": 32, "modelled_call_us": 7990.0}]},
    "2B/training/l6/h256/b16": {"block_h": 16, "backward_product": "rows", "modelled_call_us": 4200.0,
                                "layer_by_layer_us": 18300.0,
                                "ranked": [{"block_h": 16, "backward_product": "rows", "modelled_call_us": 4200.0}]},
    # No width of 6 layers fit: no verdict for 5 layers, which take 4 layers' entry.
    "2B/inference/l6/h512/b16": {"block_h": 0, "modelled_call_us": 8500.0, "layer_by_layer_us": 8500.0, "ranked": []},
}


@pytest.fixture
def stack_table(monkeypatch):
    """The planner of a GPU (sm_90) whose plan table holds :data:`STACKS`."""
    shipped = dispatch.plan_document(90)
    monkeypatch.setattr(dispatch, "plan_document", lambda arch: {**shipped, "stacks": STACKS} if arch == 90 else {})
    monkeypatch.setattr(dispatch, "INTERPRET", False)
    monkeypatch.setattr(dispatch, "limits_of", lambda device: H200)
    monkeypatch.setattr(dispatch, "_fitted", {})
    dispatch.heuristic_config.cache_clear()
    dispatch.planned_stack.cache_clear()
    yield
    dispatch.heuristic_config.cache_clear()
    dispatch.planned_stack.cache_clear()


def test_the_plan_tables_slice_width_of_the_nearest_covered_stack(stack_table):
    """Hidden sizes up to the covered one, other layer counts, and larger batches take the nearest
    entry; a shape the table covers nothing near keeps the planner's own width."""
    for hidden, batch, layers in ((512, 16, 4), (384, 16, 4), (512, 64, 5), (512, 16, 3), (512, 16, 5)):
        config = heuristic_config(Problem(hidden, batch, torch.bfloat16, False, layers=layers), H200)
        assert config.block_h == 32 and layers * config.num_programs <= H200.sms, (hidden, batch, layers)
    assert heuristic_config(Problem(512, 1, torch.bfloat16, False, layers=4), H200).block_h == 16
    assert dispatch.planned_stack(Problem(512, 16, torch.bfloat16, False, layers=6), 90)["block_h"] == 0
    assert dispatch.planned_stack(Problem(1024, 16, torch.bfloat16, False, layers=4), 90) is None, "none >= H"
    assert dispatch.planned_stack(Problem(512, 16, torch.float32, False, layers=4), 90) is None, "another dtype size"


def test_the_plan_tables_backward_product(stack_table):
    """A training entry's product is the backward's; its forward, one layer and inference keep columns."""
    training = Problem(256, 16, torch.bfloat16, True, layers=6)
    assert heuristic_config(training, H200, True).product == "rows"
    assert heuristic_config(training, H200, False).product == "columns"
    assert heuristic_config(Problem(256, 16, torch.bfloat16, True), H200, True, product="rows").product == "columns"
    assert heuristic_config(dataclasses.replace(training, training=False), H200, True).product == "columns"


def test_a_width_narrower_than_the_sms_allow_is_not_taken(stack_table):
    """6 layers of H=512 leave 22 SMs a layer: 16-unit slices (32 programs) would not be co-resident."""
    STACKS["2B/inference/l6/h512/b1"] = {"block_h": 16, "modelled_call_us": 0.0, "layer_by_layer_us": 0.0, "ranked": []}
    try:
        config = heuristic_config(Problem(512, 1, torch.bfloat16, False, layers=6), H200)
    finally:
        del STACKS["2B/inference/l6/h512/b1"]
    assert config.block_h == 32 and 6 * config.num_programs <= H200.sms


def test_where_the_model_ranks_one_launch_per_layer_cheaper_the_stack_is_not_planned(stack_table):
    cuda = torch.device("cuda", 0)
    assert dispatch.plan_stack(512, 16, torch.bfloat16, True, 2, cuda) is None
    assert dispatch.plan_stack(512, 16, torch.bfloat16, True, 3, cuda) is None, "the nearest covered count's verdict"
    assert dispatch.plan_stack(512, 16, torch.bfloat16, False, 4, cuda).forward.block_h == 32
    with force_config(_sliced(512, 16)):  # a forced configuration is what runs
        assert dispatch.plan_stack(512, 16, torch.bfloat16, True, 2, cuda) is not None
