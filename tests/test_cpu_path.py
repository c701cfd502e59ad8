"""The CPU path: tritongru.GRU on CPU tensors runs PyTorch's GRU operator on its own weights, so it
gives nn.GRU's numbers, gradients and memory; and the float64 reference, kept for validation, keeps
memory linear in the sequence length.

Speed is measured by the perf suite's ``cpu`` sweep (``make perf`` without a GPU), not here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import tritongru
from tritongru.reference import gru_reference

from helpers import grads


def _saved_bytes(fn) -> int:
    """Bytes autograd keeps for the backward of ``fn()`` (distinct storages)."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch-first"])
def test_matches_nn_gru_forward_and_every_gradient(bidirectional, batch_first):
    torch.manual_seed(5)
    ref = torch.nn.GRU(4, 9, 2, bidirectional=bidirectional, batch_first=batch_first)
    ours = tritongru.GRU.from_torch(ref, backend="torch")
    x = torch.randn((3, 6, 4) if batch_first else (6, 3, 4), requires_grad=True)
    h0 = torch.randn(2 * (2 if bidirectional else 1), 3, 9, requires_grad=True)
    outputs = [ours(x, h0), ref(x, h0)]
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    ours_grads = grads(outputs[0], [x, h0, *ours.parameters()])
    ref_grads = grads(outputs[1], [x, h0, *ref.parameters()])
    for a, b in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_packed_and_lengths_match_nn_gru():
    torch.manual_seed(6)
    ref = torch.nn.GRU(4, 7, 2, bidirectional=True)
    ours = tritongru.GRU.from_torch(ref, backend="torch")
    x, lengths = torch.randn(6, 4, 4), torch.tensor([2, 6, 1, 4])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    (y_ours, h_ours), (y_ref, h_ref) = ours(packed), ref(packed)
    torch.testing.assert_close(y_ours.data, y_ref.data)
    torch.testing.assert_close(h_ours, h_ref)
    y, h = tritongru.gru(x, None, list(ours.parameters()), num_layers=2, bidirectional=True, lengths=lengths,
                         backend="torch")
    torch.testing.assert_close(y, pad_packed_sequence(y_ref, total_length=6)[0])
    torch.testing.assert_close(h, h_ref)


def test_keeps_what_nn_gru_keeps_for_the_backward():
    torch.manual_seed(7)
    ref = torch.nn.GRU(16, 32)
    ours = tritongru.GRU.from_torch(ref, backend="torch")
    x = torch.randn(40, 4, 16, requires_grad=True)
    assert _saved_bytes(lambda: ours(x)) == _saved_bytes(lambda: ref(x))


def test_autocast_on_the_cpu_as_nn_gru():
    torch.manual_seed(8)
    ref = torch.nn.GRU(4, 8)
    ours = tritongru.GRU.from_torch(ref, backend="torch")
    x = torch.randn(5, 2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (y_ours, h_ours), (y_ref, h_ref) = ours(x), ref(x)
    assert y_ours.dtype == y_ref.dtype and h_ours.dtype == h_ref.dtype
    torch.testing.assert_close(y_ours, y_ref, rtol=0, atol=0)


def test_compiles_without_a_graph_break():
    torch.manual_seed(9)
    ours = tritongru.GRU(4, 8, 2, backend="torch")
    x = torch.randn(5, 2, 4)
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x)[0], ours(x)[0])


_AUTO_ON_CPU = """
import torch, tritongru
gru = tritongru.GRU(3, 4)
with torch.autograd.profiler.profile() as profile:
    gru(torch.randn(5, 2, 3))
print(sorted({event.name for event in profile.function_events if event.name.startswith(("aten::gru", "tritongru"))}))
"""


def test_auto_runs_pytorchs_gru_on_cpu_tensors():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", _AUTO_ON_CPU], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['aten::gru']"


def test_reference_memory_is_linear_in_the_length():
    """The reference once wrote each step into a copy of the whole output, keeping T copies for the
    backward; now the saved memory of 2T steps is twice that of T, not four times."""
    torch.manual_seed(10)
    params = [p.detach().requires_grad_() for p in torch.nn.GRU(8, 16, bidirectional=True)._flat_weights]
    lengths = torch.tensor([64, 40, 64])

    def saved(T):
        x = torch.randn(T, 3, 8, requires_grad=True)
        return _saved_bytes(lambda: gru_reference(x, None, params, num_layers=1, bidirectional=True,
                                                  lengths=lengths * T // 64))

    assert saved(128) / saved(64) == pytest.approx(2.0, rel=0.1)
