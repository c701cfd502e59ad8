"""The GRU as one exportable operator, ``torch.ops.tritongru.gru``, and its ONNX translation.

Under ``torch.export`` (and so under ``torch.onnx.export(..., dynamo=True)``), :func:`tritongru.gru`
records this operator for the whole GRU instead of tracing into it. That keeps the time axis
dynamic: PyTorch's own ``aten::gru`` decomposes into one node per step during export, which fixes
the length. An exported program runs it where it is run: the kernels on a GPU they support,
PyTorch's GRU elsewhere. It is an inference operator (no dropout, no backward), as exported
programs are.

:func:`onnx_translations` maps it onto ONNX's ``GRU`` (``linear_before_reset=1``, PyTorch's
formulation; gate order z, r, h) for the dynamo-based ONNX exporter. The TorchScript-based
exporter needs nothing from here: it traces PyTorch's GRU operator, which it translates itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

import torch
from torch import Tensor


@torch.library.custom_op("tritongru::gru", mutates_args=())
def exportable_gru(
    input: Tensor, hx: Tensor, params: Sequence[Tensor], has_biases: bool, num_layers: int, bidirectional: bool,
    batch_first: bool, lengths: Optional[Tensor],
) -> tuple[Tensor, Tensor]:
    """``(output, h_n)`` of :func:`tritongru.gru` in eval mode, as one operator."""
    from .functional import gru  # the module that records this operator, imported when it runs

    return gru(input, hx, list(params), num_layers=num_layers, bidirectional=bidirectional, has_biases=has_biases,
               batch_first=batch_first, lengths=lengths)


@exportable_gru.register_fake
def _(input, hx, params, has_biases, num_layers, bidirectional, batch_first, lengths):
    H = params[1].shape[1]
    width = (2 if bidirectional else 1) * H
    return input.new_empty(*input.shape[:2], width), hx.new_empty(hx.shape)


def exported_gru(input, hx, params, num_layers, bidirectional, has_biases, batch_first, dropout, training, lengths):
    """What :func:`tritongru.gru` records under ``torch.export``."""
    if training and dropout > 0 and num_layers > 1:
        raise ValueError(
            f"tritongru: an exported GRU has no dropout between layers (dropout={dropout}); "
            "export the model in eval mode (model.eval())"
        )
    if hx is None:
        batch = input.size(0 if batch_first else 1)
        hx = input.new_zeros(num_layers * (2 if bidirectional else 1), batch, params[1].shape[1])
    return torch.ops.tritongru.gru(input, hx, list(params), has_biases, num_layers, bidirectional, batch_first,
                                   lengths)


def onnx_translations() -> dict[Callable, Callable]:
    """The ``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)`` of a model with a
    ``tritongru.GRU`` (or :func:`tritongru.gru`) in it; needs ``onnxscript``."""
    return {torch.ops.tritongru.gru.default: _onnx_gru}


def _onnx_gru(input, hx, params, has_biases: bool, num_layers: int, bidirectional: bool, batch_first: bool,
              lengths=None):
    """ONNX's GRU, layer by layer, on nn.GRU's weights. Traced by the exporter (onnxscript ops on
    its values); the weight reordering is on initialisers, which the exporter folds."""
    from onnxscript import opset18 as op

    num_dirs = 2 if bidirectional else 1
    per_dir = 4 if has_biases else 2
    H = params[1].shape[1]

    def zrh(weight):  # PyTorch stacks the gates r, z, n; ONNX z, r, h
        return op.Concat(*(op.Slice(weight, [gate * H], [(gate + 1) * H], [0]) for gate in (1, 0, 2)), axis=0)

    def stacked(first, index):  # parameter ``index`` of the directions from ``first`` on, (num_dirs, ...)
        directions = range(first, first + num_dirs)
        return op.Concat(*(op.Unsqueeze(zrh(params[d * per_dir + index]), [0]) for d in directions), axis=0)

    x = op.Transpose(input, perm=[1, 0, 2]) if batch_first else input
    sequence_lens = None if lengths is None else op.Cast(lengths, to=6)  # int32
    h_n = []
    for layer in range(num_layers):
        first = layer * num_dirs
        w, r = stacked(first, 0), stacked(first, 1)
        b = op.Concat(stacked(first, 2), stacked(first, 3), axis=1) if has_biases else None
        h0 = op.Slice(hx, [first], [first + num_dirs], [0])
        y, h_last = op.GRU(x, w, r, b, sequence_lens, h0, hidden_size=H, linear_before_reset=1,
                           direction="bidirectional" if bidirectional else "forward")
        # Y is (T, num_dirs, B, H); the next layer reads (T, B, num_dirs x H).
        x = op.Reshape(op.Transpose(y, perm=[0, 2, 1, 3]), [0, 0, -1])
        h_n.append(h_last)
    output = op.Transpose(x, perm=[1, 0, 2]) if batch_first else x
    return output, op.Concat(*h_n, axis=0) if len(h_n) > 1 else h_n[0]
