"""GPU-only checks (skipped, and reported as skipped, without CUDA): half precision, the barrier
path with many programs, ready flags against the barrier, long sequences, concurrent streams,
co-residency refusal and a forced stall (barrier and flags) that must end in an error, not a hang."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

import tritongru
from tritongru import _compat, dispatch
from tritongru.dispatch import H200, Problem, force_config, heuristic_config
from tritongru.kernels.gru_backward import gru_backward
from tritongru.kernels.gru_forward import gru_forward, gru_fwd_persistent_kernel
from tritongru.kernels.launch import PersistentConfig
from tritongru.reference import gru_recurrence_reference, gru_reference

from helpers import OneProgramShort

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
# The module, not the launcher of the same name that tritongru.kernels exports.
forward_module = importlib.import_module("tritongru.kernels.gru_forward")


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()


def _against_reference(H, B, T, dtype, bidirectional=False, layers=1, lengths=None):
    torch.manual_seed(0)
    model = tritongru.GRU(32, H, layers, bidirectional=bidirectional, backend="triton", device=CUDA, dtype=dtype)
    x = torch.randn(T, B, 32, device=CUDA, dtype=dtype, requires_grad=True)
    y, h_n = model(x)
    params64 = [p.detach().double().requires_grad_() for p in model._flat_weights]
    x64 = x.detach().double().requires_grad_()
    y_ref, h_ref = gru_reference(x64, None, params64, num_layers=layers, bidirectional=bidirectional, lengths=lengths)
    g = torch.randn_like(y_ref)
    grads = torch.autograd.grad((y * g.to(dtype)).sum(), [x, *model._flat_weights])
    grads_ref = torch.autograd.grad((y_ref * g).sum(), [x64, *params64])
    return _relative_error(y, y_ref), _relative_error(h_n, h_ref), [
        _relative_error(a, b) for a, b in zip(grads, grads_ref)
    ]


# Relative to the largest magnitude: bf16 keeps 8 bits of mantissa, and the state crosses the dot
# in the input dtype every step; fp32 runs its products as TF32x3 (fp32-level accuracy).
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}


# Each case compiles its own kernel variants (a few seconds each): a spread, not a product.
PRECISION_CASES = [
    (torch.bfloat16, 64, 16, True),
    (torch.bfloat16, 256, 3, False),
    (torch.bfloat16, 1024, 16, True),
    (torch.bfloat16, 2048, 4, False),
    (torch.bfloat16, 1000, 70, False),
    (torch.float16, 512, 16, False),
    (torch.float32, 128, 16, True),
    (torch.float32, 1024, 16, False),
    (torch.float32, 1536, 8, False),
]


@pytest.mark.parametrize(
    "dtype, H, B, bidirectional", PRECISION_CASES,
    ids=[f"{str(d).removeprefix('torch.')}-H{h}-B{b}{'-bidir' if bi else ''}" for d, h, b, bi in PRECISION_CASES],
)
def test_precision_against_reference(dtype, H, B, bidirectional):
    out, h, grads = _against_reference(H, B, 64, dtype, bidirectional=bidirectional)
    tol = TOLERANCE[dtype]
    assert out < tol and h < tol, (out, h)
    assert max(grads) < 4 * tol, grads


def test_long_sequence_barrier_path():
    out, h, grads = _against_reference(1024, 8, 4096, torch.bfloat16)
    assert out < 5e-2 and h < 5e-2 and max(grads) < 2e-1, (out, h, grads)


def test_sliced_config_is_resident_with_a_barrier():
    config = heuristic_config(Problem(1024, 16, torch.bfloat16, True), H200)
    assert config.resident and config.grid_synchronised(1024)


@pytest.mark.parametrize("H, B", [(1024, 16), (256, 10)], ids=["H1024-B16", "H256-B10"])
def test_one_launch_for_both_directions_equals_one_per_direction(H, B, monkeypatch):
    """2 x 64 (2 x 16) programs in one grid, each direction's barrier shared with the other's."""
    torch.manual_seed(5)
    model = tritongru.GRU(32, H, bidirectional=True, backend="triton", device=CUDA, dtype=torch.bfloat16)
    x = torch.randn(128, B, 32, device=CUDA, dtype=torch.bfloat16)
    assert dispatch.plan_layer(H, B, torch.bfloat16, False, True, CUDA).problem.directions == 2
    with torch.no_grad():
        fused = model(x)
        monkeypatch.setattr(dispatch, "plan_layer", lambda H, B, dtype, training, bidirectional, device:
                            dispatch.plan_launch(dispatch.Problem(H, B, dtype, training), device))
        separate = model(x)
    assert torch.equal(fused[0], separate[0]) and torch.equal(fused[1], separate[1])


def test_concurrent_streams_agree_with_serial():
    torch.manual_seed(1)
    model = tritongru.GRU(16, 512, backend="triton", device=CUDA, dtype=torch.bfloat16)
    xs = [torch.randn(128, 4, 16, device=CUDA, dtype=torch.bfloat16) for _ in range(4)]
    with torch.no_grad():
        serial = [model(x)[0] for x in xs]
        streams = [torch.cuda.Stream() for _ in xs]
        outs = [None] * len(xs)
        for i, (x, stream) in enumerate(zip(xs, streams)):
            with torch.cuda.stream(stream):
                outs[i] = model(x)[0]
        torch.cuda.synchronize()
    for a, b in zip(outs, serial):
        assert torch.equal(a, b)


def _one_direction(T, B, H, dtype=torch.float32):
    """Random inputs of one direction's recurrence, in the operator's (D, ...) layout with D = 1."""
    gx = torch.randn(T, B, 3 * H, device=CUDA, dtype=dtype)
    w = (torch.randn(1, 3 * H, H, device=CUDA) / H**0.5).to(dtype)
    return gx, w, torch.randn(1, H, device=CUDA, dtype=dtype), torch.randn(1, B, H, device=CUDA, dtype=dtype)


def _reference(gx, w, b_hn, h0):
    """The float64 reference of a one-direction operator call: y (T, B, H) and h_n (1, B, H)."""
    y, h_n = gru_recurrence_reference(gx.double(), w[0].double(), b_hn[0].double(), h0[0].double())
    return y, h_n[None]


def test_grid_that_cannot_be_co_resident_is_refused():
    config = dataclasses.replace(heuristic_config(Problem(1024, 16, torch.bfloat16, False), H200))
    too_many = dataclasses.replace(config, num_programs=config.num_h_tiles(1024) * 1000)
    gx, w, b_hn, h0 = _one_direction(4, 16, 1024, torch.bfloat16)
    with force_config(too_many), pytest.raises(RuntimeError, match="cannot be co-resident"):
        gru_forward(gx, w, b_hn, h0, None, False, False, too_many, "tf32")


@pytest.mark.parametrize("mode", ["eager", "async"])
@pytest.mark.parametrize("exchange", ["barrier", "flags"])
def test_stalled_grid_raises_and_the_next_call_works(exchange, mode, monkeypatch):
    """A grid one program short of what its programs wait for can never finish a step: the bounded
    wait must turn that into a StallError (eager: from the call; async: once its word is back, at
    the next synchronised launch or at tritongru.check_stalls), and the next call must work."""
    monkeypatch.setenv("TRITONGRU_BARRIER_TIMEOUT_MS", "50")
    monkeypatch.setenv("TRITONGRU_STALL_CHECK", mode)
    T, B, H = 3, 16, 256
    config = PersistentConfig(block_b=16, block_h=16, block_k=64, num_programs=16, num_warps=4, split_k=4,
                              exchange=exchange)
    gx, w, b_hn, h0 = _one_direction(T, B, H)
    with monkeypatch.context() as patch:
        patch.setattr(forward_module, "gru_fwd_persistent_kernel", OneProgramShort(gru_fwd_persistent_kernel))
        with pytest.raises(tritongru.StallError, match="program waited longer than 50 ms"):
            gru_forward(gx, w, b_hn, h0, None, False, False, config, "tf32x3")
            if mode == "async":
                tritongru.check_stalls()
    # The default timeout again: other test workers share this GPU, and the clock runs while they do.
    monkeypatch.delenv("TRITONGRU_BARRIER_TIMEOUT_MS")
    y_next, h_next, _, _ = gru_forward(gx, w, b_hn, h0, None, False, False, config, "tf32x3")
    y_ref, h_ref = _reference(gx, w, b_hn, h0)
    assert _relative_error(y_next, y_ref) < 1e-4 and _relative_error(h_next, h_ref) < 1e-4


FLAG_CASES = [(torch.bfloat16, 1024, 16), (torch.bfloat16, 256, 1), (torch.float16, 512, 64), (torch.float32, 512, 16)]


@pytest.mark.parametrize("dtype, H, B", FLAG_CASES, ids=[f"{str(d).removeprefix('torch.')}-H{h}-B{b}" for d, h, b in FLAG_CASES])
@pytest.mark.parametrize("save", [False, True], ids=["inference", "training"])
def test_ready_flags_agree_with_the_barrier_bitwise_and_the_reference(dtype, H, B, save):
    """Both exchanges hand on the same rounded states: the same bits, forward and backward, across
    256 steps of 64 programs polling one another."""
    torch.manual_seed(3)
    T = 256
    barrier = heuristic_config(Problem(H, B, dtype, save), H200, exchange="barrier")
    flags = dataclasses.replace(barrier, exchange="flags")
    assert flags.uses_ready_flags(H) and flags.grid_synchronised(H)
    gx, w, b_hn, h0 = _one_direction(T, B, H, dtype)
    precision = _compat.fp32_dot_precision()
    ours = gru_forward(gx, w, b_hn, h0, None, False, save, flags, precision)
    theirs = gru_forward(gx, w, b_hn, h0, None, False, save, barrier, precision)
    for name, a, b in zip(["y", "h_n", "hs", "gates"], ours, theirs):
        assert torch.equal(a, b), name
    if save:
        # The backward hands on its dgh through ready flags too: the same bits as at the barrier.
        dy, dh_n = torch.randn_like(ours[0]), torch.randn_like(ours[1])
        grads = [gru_backward(dy, dh_n, w, hs, gates, None, False, config, precision)
                 for config, (_, _, hs, gates) in ((flags, ours), (barrier, theirs))]
        for name, a, b in zip(["dgx", "dgh", "dh0"], *grads):
            assert torch.equal(a, b), name
    y_ref, h_ref = _reference(gx, w, b_hn, h0)
    assert _relative_error(ours[0], y_ref) < TOLERANCE[dtype] and _relative_error(ours[1], h_ref) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_autocast_matches_nn_gru_and_grad_scaler_steps(dtype):
    torch.manual_seed(2)
    ref = torch.nn.GRU(16, 256, 2, device=CUDA)
    ours = tritongru.GRU.from_torch(ref, backend="triton")
    x = torch.randn(32, 8, 16, device=CUDA)
    with torch.autocast("cuda", dtype=dtype):
        y, h = ours(x)
        y_ref, h_ref = ref(x)
    # PyTorch runs cuDNN RNNs in fp16 under autocast, whatever its dtype: the drop-in must match.
    assert (y.dtype, h.dtype) == (y_ref.dtype, h_ref.dtype) == (torch.float16, torch.float16)
    assert _relative_error(y, y_ref.double()) < 5e-2
    scaler = torch.amp.GradScaler("cuda")
    optimizer = torch.optim.SGD(ours.parameters(), lr=0.1)
    before = [p.detach().clone() for p in ours.parameters()]
    with torch.autocast("cuda", dtype=dtype):
        loss = ours(x)[0].float().square().mean()
    scaler.scale(loss).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in ours.parameters())
    scaler.step(optimizer)
    scaler.update()
    assert any(not torch.equal(a, b) for a, b in zip(before, ours.parameters()))


def test_no_memory_growth_over_training_steps():
    """What the forward keeps for the backward is released with the graph: no growth over 1,000 steps."""
    torch.manual_seed(3)
    model = tritongru.GRU(32, 256, 2, backend="triton", device=CUDA)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(64, 8, 32, device=CUDA)

    def step():
        optimizer.zero_grad(set_to_none=True)
        model(x)[0].square().mean().backward()
        optimizer.step()

    for _ in range(10):
        step()
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    for _ in range(1000):
        step()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= baseline


def test_saved_state_matches_the_documented_size():
    """The forward keeps 5 H elements per row and step for the backward (plus h0's slot)."""
    T, B, H = 128, 8, 512
    gx, w, b_hn, h0 = _one_direction(T, B, H, torch.bfloat16)
    _, _, hs, gates = torch.ops.tritongru.gru_recurrence(gx, w, b_hn, h0, None, False, True)
    assert hs.numel() + gates.numel() == 5 * H * B * T + H * B


def test_offsets_past_2_pow_31_elements():
    """T x B x 3H > 2**31: the time-indexed addressing must be 64-bit (checked at compile level on
    the CPU by test_offsets.py; here on real memory: 6 GiB of gx in bf16)."""
    T, B, H = 16384, 64, 1024
    assert T * B * 3 * H > 2**31
    torch.manual_seed(4)
    gx, w, b_hn, h0 = _one_direction(T, B, H, torch.bfloat16)
    y, h_n, _, _ = torch.ops.tritongru.gru_recurrence(gx, w, b_hn, h0, None, False, False)
    # Only the last steps are compared: they lie past 2**31 elements of gx and y.
    tail = 4
    y_ref, h_ref = _reference(gx[-tail:], w, b_hn, y[-tail - 1][None])
    assert _relative_error(y[-tail:], y_ref) < 5e-2 and _relative_error(h_n, h_ref) < 5e-2
    del gx, y


STACK_CASES = [(torch.float32, 256, 10, 6), (torch.bfloat16, 512, 16, 4), (torch.float16, 256, 1, 2)]


@pytest.mark.parametrize("dtype, H, B, layers", STACK_CASES,
                         ids=[f"{str(d).removeprefix('torch.')}-H{h}-B{b}-L{n}" for d, h, b, n in STACK_CASES])
def test_stack_in_one_launch_matches_float64(dtype, H, B, layers, monkeypatch):
    """Every layer in one launch on the GPU (KernelBench 39's shape first): forward and every
    gradient against float64, and one launch for the whole stack."""
    stacked = []
    launch_persistent = forward_module.launch_persistent
    monkeypatch.setattr(forward_module, "launch_persistent",
                        lambda launch: (stacked.append(launch.constexprs["STACK"]), launch_persistent(launch))[1])
    out_err, h_err, grad_errs = _against_reference(H, B, 64, dtype, layers=layers)
    assert stacked == [True], "one launch for the whole stack"
    tolerance = TOLERANCE[dtype]
    assert out_err < tolerance and h_err < tolerance, (out_err, h_err)
    assert max(grad_errs) < tolerance, grad_errs


@pytest.mark.parametrize("product", ["columns", "rows"])
def test_stack_backward_by_columns_and_by_rows_matches_float64(product, monkeypatch):
    """Both ways a stack's backward takes W_hh, whichever the plan table chose for the shape: by
    rows, the slices exchange partial products over all units and sum them at the next step."""
    planned = dispatch.planned_stack
    monkeypatch.setattr(dispatch, "planned_stack",
                        lambda problem, arch: {**(planned(problem, arch) or {"block_h": 16}), "backward_product": product})
    monkeypatch.setattr(dispatch, "_fitted", {})
    dispatch.heuristic_config.cache_clear()
    backward_module = importlib.import_module("tritongru.kernels.gru_backward")
    products = []
    run = backward_module.launch_persistent
    monkeypatch.setattr(backward_module, "launch_persistent",
                        lambda launch: (products.append(launch.constexprs["ROW_PRODUCT"]), run(launch))[1])
    try:
        out_err, h_err, grad_errs = _against_reference(512, 16, 64, torch.bfloat16, layers=4)
    finally:
        dispatch.heuristic_config.cache_clear()
    assert products == [product == "rows"], "one backward launch for the whole stack"
    tolerance = TOLERANCE[torch.bfloat16]
    assert out_err < tolerance and h_err < tolerance and max(grad_errs) < tolerance, (out_err, h_err, grad_errs)


def test_launched_kernels_keep_resident_weights_spill_free(monkeypatch):
    """The plans that run keep their resident weights in registers and shared memory: where a
    planned kernel spills (task 39's training forward on sm_90), another register setting or warp
    split of the same work split runs instead, found before the first launch."""
    from tritongru.kernels import launch as launch_module

    backward_module = importlib.import_module("tritongru.kernels.gru_backward")
    launched = []
    for module in (forward_module, backward_module):
        run = module.launch_persistent
        monkeypatch.setattr(module, "launch_persistent", lambda launch, run=run: (launched.append(launch), run(launch))[1])
    _against_reference(256, 10, 16, torch.float32, layers=6)
    _against_reference(1024, 16, 16, torch.bfloat16)
    assert launched
    for launch in launched:
        options = launch.config.compile_options()
        if launch.synchronised:
            options["launch_cooperative_grid"] = True
        _, _, spilled = launch_module.compiled_resources(launch, options, launch.arg("p_sync").device)
        assert not (launch.config.resident and spilled), f"{launch.describe()} {launch.config.label()} spills {spilled} B"
