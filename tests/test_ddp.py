"""DistributedDataParallel over a model that contains tritongru.GRU: two CPU processes (gloo) each
train on half of a global batch, and the all-reduced gradients, and the parameters after the
optimizer steps, equal single-process training on the whole batch.

The workers run tritongru's reference backend, and, under TRITON_INTERPRET=1 (set by
tests/conftest.py without a GPU), the Triton kernels through the interpreter. Everything is
float64, so the only differences are the rounding of the all-reduce's sum and of the batch split:
~1e-16 relative, checked at 1e-12 (a gradient of the wrong sample split or scaling is off by O(1)).
"""

from __future__ import annotations

import datetime
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import tritongru
from tritongru import _compat

WORLD_SIZE = 2
T, GLOBAL_BATCH, INPUT, HIDDEN, LAYERS = 5, 4, 3, 8, 1
STEPS = 2
LR = 0.5
DTYPE = torch.float64
TOL = dict(rtol=1e-12, atol=1e-12)
# Kernels under the interpreter only: without it (a GPU machine) the kernels need CUDA tensors, and
# the CPU gloo workers here have none.
BACKENDS = ["reference"] + (["triton"] if _compat.INTERPRET else [])
TIMEOUT_S = 240


class Model(nn.Module):
    """A bidirectional tritongru.GRU between two linear maps; regresses a random target."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.inp = nn.Linear(INPUT, INPUT)
        self.gru = tritongru.GRU(INPUT, HIDDEN, LAYERS, bidirectional=True, backend=backend)
        self.head = nn.Linear(2 * HIDDEN, 2)

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        y, h_n = self.gru(torch.tanh(self.inp(x)), h0)
        return self.head(y), h_n


def build_model(backend: str) -> Model:
    torch.manual_seed(0)
    return Model(backend).to(DTYPE)


def global_batch(step: int):
    """Inputs, initial states and targets of the whole batch at ``step``: random, never zeros."""
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(T, GLOBAL_BATCH, INPUT, generator=g, dtype=DTYPE)
    h0 = torch.randn(2 * LAYERS, GLOBAL_BATCH, HIDDEN, generator=g, dtype=DTYPE)
    target = torch.randn(T, GLOBAL_BATCH, 2, generator=g, dtype=DTYPE)
    target_h = torch.randn(2 * LAYERS, GLOBAL_BATCH, HIDDEN, generator=g, dtype=DTYPE)
    return x, h0, target, target_h


def loss_fn(model, x, h0, target, target_h) -> torch.Tensor:
    """A mean over the batch, so that DDP's mean of per-rank gradients is the global-batch gradient."""
    out, h_n = model(x, h0)
    return (out - target).pow(2).mean() + (h_n - target_h).pow(2).mean()


def train(model, rank: int | None, world_size: int, steps: int = STEPS):
    """SGD steps; ``rank`` None trains on the whole batch, else on this rank's contiguous shard."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    grads = []
    for step in range(steps):
        x, h0, target, target_h = global_batch(step)
        if rank is not None:
            shard = slice(rank * GLOBAL_BATCH // world_size, (rank + 1) * GLOBAL_BATCH // world_size)
            x, h0, target, target_h = x[:, shard], h0[:, shard], target[:, shard], target_h[:, shard]
        optimizer.zero_grad()
        loss_fn(model, x, h0, target, target_h).backward()
        grads.append({name: p.grad.detach().clone() for name, p in _named(model)})
        optimizer.step()
    params = {name: p.detach().clone() for name, p in _named(model)}
    return grads, params


def _named(model):
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    return inner.named_parameters()


def _worker(rank: int, world_size: int, port: int, backends: list[str], out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        results = {}
        for backend in backends:
            model = DistributedDataParallel(build_model(backend))
            results[backend] = train(model, rank, world_size)
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """One two-process run over every backend: [rank0, rank1], each {backend: (grads, params)}."""
    out_dir = tmp_path_factory.mktemp("ddp")
    context = mp.start_processes(
        _worker, args=(WORLD_SIZE, _free_port(), BACKENDS, str(out_dir)), nprocs=WORLD_SIZE, join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=1):  # raises if a worker failed, with its traceback
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail(f"the DDP workers did not finish in {TIMEOUT_S} s")
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: "kernels" if b == "triton" else b)
def test_ddp_gradients_equal_single_process(ddp_results, backend):
    single_grads, single_params = train(build_model(backend), None, 1)
    ddp_grads, ddp_params = ddp_results[0][backend]
    assert len(ddp_grads) == STEPS
    for step in range(STEPS):
        assert ddp_grads[step].keys() == single_grads[step].keys()
        assert any(name.startswith("gru.") for name in ddp_grads[step])
        for name, grad in single_grads[step].items():
            # A gradient that is zero everywhere would make the comparison vacuous.
            assert grad.abs().max() > 1e-3, f"step {step} {name}"
            torch.testing.assert_close(ddp_grads[step][name], grad, **TOL,
                                       msg=lambda m, s=step, n=name: f"step {s}, grad of {n}: {m}")
    for name, param in single_params.items():
        torch.testing.assert_close(ddp_params[name], param, **TOL, msg=lambda m, n=name: f"param {n}: {m}")


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: "kernels" if b == "triton" else b)
def test_ranks_stay_in_sync(ddp_results, backend):
    """After the all-reduce both ranks hold the same gradients and parameters, bit for bit."""
    (grads0, params0), (grads1, params1) = ddp_results[0][backend], ddp_results[1][backend]
    for step in range(STEPS):
        for name, grad in grads0[step].items():
            assert torch.equal(grad, grads1[step][name]), f"step {step}, grad of {name}"
    for name, param in params0.items():
        assert torch.equal(param, params1[name]), name


def test_shards_differ():
    """The two ranks' local gradients differ before the all-reduce (so the all-reduce matters)."""
    local = [train(build_model("reference"), rank, WORLD_SIZE, steps=1)[0][0] for rank in range(WORLD_SIZE)]
    assert set(local[0]) == {name for name, _ in build_model("reference").named_parameters()}
    assert not torch.allclose(local[0]["gru.weight_hh_l0"], local[1]["gru.weight_hh_l0"])
