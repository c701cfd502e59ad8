"""Export and deployment: a GRU traced, exported or converted at one length and run at another gives
nn.GRU's numbers, and ONNX gets its own GRU operator with PyTorch's formulation.

Each export is run at a length other than the exported one, since a length baked into the graph is
the failure to catch. ONNX models run in onnxruntime and are compared by value: an ONNX GRU with
``linear_before_reset=0`` (the wrong formulation) exports and runs without complaint.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

import tritongru
from tritongru import _compat

onnx = pytest.importorskip("onnx", reason="the ONNX tests need onnx, onnxscript and onnxruntime (make test installs them)")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

# The kernels under the interpreter, and PyTorch's GRU operator (a CPU model without them).
BACKENDS = ["torch"] + (["triton"] if _compat.INTERPRET else [])
EXPORTED_T, RUN_T = 5, 8


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True


CASES = [
    Case("base"),
    Case("layers2-bidirectional", layers=2, bidirectional=True),
    Case("batch-first-no-bias", batch_first=True, bias=False),
]


def _model(case: Case, backend: str) -> tritongru.GRU:
    torch.manual_seed(3)
    return tritongru.GRU(3, 6, case.layers, bias=case.bias, batch_first=case.batch_first,
                         bidirectional=case.bidirectional, backend=backend).eval()


def _x(case: Case, T: int, B: int = 2) -> torch.Tensor:
    return torch.randn((B, T, 3) if case.batch_first else (T, B, 3))


def _time_dim(case: Case) -> int:
    return 1 if case.batch_first else 0


def _expected(model: tritongru.GRU, x: torch.Tensor, *args):
    with torch.no_grad():
        return model.to_torch()(x, *args)


def _assert_matches(actual, expected, what: str) -> None:
    for a, e, name in zip(actual, expected, ("output", "h_n")):
        a = torch.as_tensor(a)
        assert a.shape == e.shape, f"{what} {name}: shape {tuple(a.shape)}, expected {tuple(e.shape)}"
        assert torch.allclose(a, e, atol=1e-5, rtol=1e-5), f"{what} {name}: off by {(a - e).abs().max():.2e}"


def _run_onnx(path, *inputs):
    session = ort.InferenceSession(str(path))
    return session.run(None, {i.name: x.numpy() for i, x in zip(session.get_inputs(), inputs)})


def _onnx_grus(path) -> list:
    return [node for node in onnx.load(str(path)).graph.node if node.op_type == "GRU"]


def _linear_before_reset(node) -> int:
    return next(a.i for a in node.attribute if a.name == "linear_before_reset")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("backend", BACKENDS)
def test_jit_trace_runs_at_any_length(case, backend):
    model = _model(case, backend)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, (_x(case, EXPORTED_T),))
        x = _x(case, RUN_T, B=3)
        _assert_matches(traced(x), _expected(model, x), "traced")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_export_keeps_the_time_axis_dynamic(case, backend):
    model = _model(case, backend)
    T = torch.export.Dim("T", min=2, max=4096)
    program = torch.export.export(model, (_x(case, EXPORTED_T),), dynamic_shapes=({_time_dim(case): T},))
    targets = [node.target for node in program.graph.nodes if node.op == "call_function"]
    assert torch.ops.tritongru.gru.default in targets
    x = _x(case, RUN_T)
    _assert_matches(program.module()(x), _expected(model, x), "exported program")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_torchscript_onnx_export_is_onnx_gru(case, tmp_path):
    """The TorchScript-based exporter, with a dynamic time axis, run in onnxruntime."""
    model, path = _model(case, BACKENDS[-1]), tmp_path / "gru.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (_x(case, EXPORTED_T),), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {_time_dim(case): "T"}})
    grus = _onnx_grus(path)
    assert len(grus) == case.layers and all(_linear_before_reset(g) == 1 for g in grus)
    x = _x(case, RUN_T)
    _assert_matches(_run_onnx(path, x), _expected(model, x), "onnxruntime")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_dynamo_onnx_export_is_onnx_gru(case, tmp_path):
    """The dynamo-based exporter with tritongru's translation, dynamic time axis, in onnxruntime."""
    model, path = _model(case, BACKENDS[-1]), tmp_path / "gru.onnx"
    T = torch.export.Dim("T", min=2, max=4096)
    program = torch.onnx.export(model, (_x(case, EXPORTED_T),), dynamo=True, dynamic_shapes=({_time_dim(case): T},),
                                custom_translation_table=tritongru.onnx_translations(), verbose=False)
    program.save(str(path))
    grus = _onnx_grus(path)
    assert len(grus) == case.layers and all(_linear_before_reset(g) == 1 for g in grus)
    x = _x(case, RUN_T)
    _assert_matches(_run_onnx(path, x), _expected(model, x), "onnxruntime")


class _WithLengths(torch.nn.Module):
    """A padded batch with per-row lengths, the exportable form of a packed sequence."""

    def __init__(self, gru: tritongru.GRU) -> None:
        super().__init__()
        self.gru = gru

    def forward(self, x, lengths):
        return tritongru.gru(x, None, self.gru._flat_weights, num_layers=self.gru.num_layers,
                             bidirectional=self.gru.bidirectional, lengths=lengths, backend=self.gru.backend)


def test_dynamo_onnx_export_with_lengths(tmp_path):
    """ONNX's ``sequence_lens``: each row stops at its own length, the reverse direction starts at
    its own last element, and outputs past the end are zeros, as for nn.GRU on a packed batch."""
    case = Case("lengths", layers=2, bidirectional=True)
    model, path = _model(case, BACKENDS[-1]), tmp_path / "gru.onnx"
    T = torch.export.Dim("T", min=2, max=4096)
    program = torch.onnx.export(_WithLengths(model).eval(), (_x(case, EXPORTED_T, B=3), torch.tensor([5, 2, 4])),
                                dynamo=True, dynamic_shapes=({0: T}, None),
                                custom_translation_table=tritongru.onnx_translations(), verbose=False)
    program.save(str(path))
    x, lengths = _x(case, RUN_T, B=3), torch.tensor([3, 8, 1])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    with torch.no_grad():
        y, h_n = model.to_torch()(packed)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=RUN_T)
    _assert_matches(_run_onnx(path, x, lengths), (y, h_n), "onnxruntime with lengths")


def test_export_in_training_mode_with_dropout_is_refused():
    model = tritongru.GRU(3, 6, 2, dropout=0.5).train()
    with pytest.raises(ValueError, match=r"exported GRU has no dropout .*model.eval\(\)"):
        torch.export.export(model, (torch.randn(EXPORTED_T, 2, 3),))


def test_to_torch_is_the_same_gru():
    torch.manual_seed(4)
    model = tritongru.GRU(3, 6, 2, bidirectional=True, batch_first=True, dropout=0.25, backend="reference").train()
    theirs = model.to_torch()
    assert isinstance(theirs, torch.nn.GRU) and theirs.training and theirs.dropout == 0.25 and theirs.batch_first
    theirs.eval()
    model.eval()
    x = torch.randn(2, 4, 3)
    _assert_matches(model(x), theirs(x), "to_torch")
    assert all(a is not b for a, b in zip(model.parameters(), theirs.parameters())), "parameters are copies"
