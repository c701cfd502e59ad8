"""``gru()``: a multi-layer, optionally bidirectional GRU over a padded batch.

Where the Triton kernels run, one operator call per layer (both directions in one launch where the
GPU can hold both grids at once, else one call per direction). The input projection of a layer's
directions is a single GEMM over all timesteps (``F.linear``, differentiated by autograd); ``b_hh``
of the r and z gates is folded into its bias, since those gates add it unscaled. The recurrence is
``torch.ops.tritongru.gru_recurrence``.

Elsewhere (CPU tensors, GPUs the kernels do not support, no Triton) PyTorch's own GRU operator, the one
``nn.GRU`` calls, runs on the same weights, with nn.GRU's speed, memory and export behaviour.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import _compat, export
from .reference import gru_reference

if _compat.HAS_TRITON:  # the kernel path; without Triton every call takes PyTorch's operator
    from . import dispatch
    from . import ops as _ops

Backend = Literal["auto", "triton", "torch", "reference"]
BACKENDS = ("auto", "triton", "torch", "reference")
_warned_fallback: set = set()


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"triton"``, ``"torch"`` or ``"reference"`` for tensors on ``device``.

    ``auto`` takes the Triton kernels on CUDA tensors of a supported GPU, and on CPU tensors only
    under ``TRITON_INTERPRET=1``, both where Triton is installed; anything else runs PyTorch's GRU operator (with a one-time
    warning on an unsupported GPU). ``triton`` raises where the kernels cannot run; ``torch`` and
    ``reference`` (the float64-exact, step-by-step PyTorch GRU for validation) run anywhere.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend in ("torch", "reference"):
        return backend
    can_run, why = _compat.kernels_can_run(device)
    if backend == "triton":
        if not can_run:
            raise RuntimeError(f"backend='triton' cannot run here: {why}")
        return "triton"
    if not can_run and device.type == "cuda" and str(device) not in _warned_fallback:
        _warned_fallback.add(str(device))
        warnings.warn(f"tritongru falls back to PyTorch's GRU operator: {why}", RuntimeWarning, stacklevel=3)
    return "triton" if can_run else "torch"


def _check_lengths(lengths: torch.Tensor | None, input: torch.Tensor, batch_first: bool) -> None:
    if lengths is None:
        return
    T, B = (input.shape[1], input.shape[0]) if batch_first else (input.shape[0], input.shape[1])
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},) (one per sequence), got {tuple(lengths.shape)}")
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > T:
        raise ValueError(f"lengths must lie in [1, {T}] (the padded length), got values in [{low}, {high}]")


def _check_dtypes(input: torch.Tensor, hx: torch.Tensor | None, params: Sequence[torch.Tensor]) -> None:
    for name, tensor in [("hx", hx), *((f"params[{i}]", p) for i, p in enumerate(params))]:
        if tensor is not None and tensor.dtype != input.dtype:
            raise RuntimeError(f"{name} has dtype {tensor.dtype}, expected the input's dtype {input.dtype}")
        if tensor is not None and tensor.device != input.device:
            raise RuntimeError(f"{name} is on {tensor.device}, expected the input's device {input.device}")


def _needs_grad(tensors: Sequence[torch.Tensor | None]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def gru(
    input: torch.Tensor,
    hx: torch.Tensor | None,
    params: Sequence[torch.Tensor],
    *,
    num_layers: int,
    bidirectional: bool,
    has_biases: bool = True,
    batch_first: bool = False,
    dropout: float = 0.0,
    training: bool = False,
    lengths: torch.Tensor | None = None,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """A GRU with ``torch.nn.GRU``'s semantics over a padded, batched input.

    Args:
        input: ``(T, B, input_size)``, or ``(B, T, input_size)`` with ``batch_first``.
        hx: ``(num_layers * num_directions, B, hidden_size)`` initial states, or None for zeros.
        params: the weights in ``nn.GRU._flat_weights`` order: ``w_ih, w_hh[, b_ih, b_hh]`` for each
            layer and direction.
        lengths: ``(B,)`` per-sequence lengths (in any order, each in ``[1, T]``), or None when every
            sequence has length T. Outputs past a sequence's length are zero and ``h_n`` is the
            state after its own last element.
        backend: ``"auto"``, ``"triton"`` or ``"reference"`` (see :func:`resolve_backend`).

    Returns:
        ``(output, h_n)``: ``output`` ``(T, B, num_directions * hidden_size)`` (batch first when
        ``batch_first``), ``h_n`` ``(num_layers * num_directions, B, hidden_size)``.
    """
    if input.shape[1 if batch_first else 0] == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    if input.shape[0 if batch_first else 1] == 0:  # an empty batch: nn.GRU's empty results
        return gru_torch(input, hx, params, num_layers, bidirectional, has_biases, batch_first, dropout, training, None)
    if torch.compiler.is_exporting():  # the lengths are data, checked when the program runs
        return export.exported_gru(input, hx, params, num_layers, bidirectional, has_biases, batch_first, dropout,
                                   training, lengths)
    _check_lengths(lengths, input, batch_first)
    # torch.jit.trace (and the TorchScript ONNX exporter, which traces) records PyTorch's GRU
    # operator: the tracer keeps it whole, so a traced model runs at any length, and the exporter
    # translates it into ONNX's GRU. The kernel path works out sizes in Python, which the tracer
    # would freeze at the traced shape.
    resolved = "torch" if torch.jit.is_tracing() else resolve_backend(backend, input.device)
    if resolved == "torch" and (_compat.is_vmapped(input) or _compat.is_vmapped(hx)):
        resolved = "reference"  # PyTorch's GRU operator has no batching rule; the reference has
    if resolved == "reference":
        return gru_reference(
            input, hx, params, num_layers=num_layers, bidirectional=bidirectional, has_biases=has_biases,
            batch_first=batch_first, lengths=lengths, dropout=dropout, training=training,
        )
    if resolved == "torch":
        return gru_torch(input, hx, params, num_layers, bidirectional, has_biases, batch_first, dropout, training,
                         lengths)
    device_type = input.device.type
    if torch.is_autocast_enabled(device_type) and input.dtype != torch.float64:
        # As nn.GRU under autocast: the whole recurrence runs in one low-precision dtype, which is
        # also the dtype of (output, h_n). On CUDA that is fp16 whatever the autocast dtype, the
        # rule PyTorch applies to cuDNN RNNs (aten/src/ATen/cudnn/AutocastRNN.cpp); fp64 is left
        # alone there too. The casts are differentiable: gradients reach the fp32 weights.
        dtype = torch.float16 if device_type == "cuda" else torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            return _gru_kernels(
                input.to(dtype), None if hx is None else hx.to(dtype), [p.to(dtype) for p in params],
                num_layers, bidirectional, has_biases, batch_first, dropout, training, lengths,
            )
    _check_dtypes(input, hx, params)
    return _gru_kernels(input, hx, params, num_layers, bidirectional, has_biases, batch_first, dropout, training, lengths)


def gru_torch(input, hx, params, num_layers, bidirectional, has_biases, batch_first, dropout, training, lengths):
    """PyTorch's GRU operator (``aten::gru``, what nn.GRU calls) with :func:`gru`'s arguments;
    per-row lengths run it on a packed batch, as nn.GRU does for a ``PackedSequence``."""
    num_dirs = 2 if bidirectional else 1
    if hx is None:
        batch = input.size(0 if batch_first else 1)
        hx = input.new_zeros(num_layers * num_dirs, batch, params[1].shape[1])
    if lengths is None:
        return torch.gru(input, hx, params, has_biases, num_layers, dropout, training, bidirectional, batch_first)
    packed = pack_padded_sequence(input, lengths.cpu(), batch_first=batch_first, enforce_sorted=False)
    data, h_n = torch.gru(packed.data, packed.batch_sizes, hx.index_select(1, packed.sorted_indices), params,
                          has_biases, num_layers, dropout, training, bidirectional)
    output, _ = pad_packed_sequence(packed._replace(data=data), batch_first=batch_first,
                                    total_length=input.size(1 if batch_first else 0))
    return output, h_n.index_select(1, packed.unsorted_indices)


def _gru_kernels(input, hx, params, num_layers, bidirectional, has_biases, batch_first, dropout, training, lengths):
    x = input.transpose(0, 1) if batch_first else input
    T, B = x.shape[:2]
    num_dirs = 2 if bidirectional else 1
    per_dir = 4 if has_biases else 2
    H = params[1].shape[1]
    if hx is None:
        hx = x.new_zeros(num_layers * num_dirs, B, H)
    if lengths is not None:
        lengths = lengths.to(device=x.device, dtype=torch.int32)
    save = _needs_grad([input, hx, *params])
    masks = _dropout_masks(x, num_layers, num_dirs * H, dropout, training)
    if not bidirectional:
        if dispatch.plan_stack(H, B, x.dtype, save, num_layers, x.device) is not None:
            output, h_n = _stack(x, hx, params, num_layers, per_dir, H, lengths, masks, save)
            return (output.transpose(0, 1) if batch_first else output), h_n
    per_launch = dispatch.plan_layer(H, B, x.dtype, save, bidirectional, x.device).problem.directions
    h_n = []
    for layer in range(num_layers):
        outputs = []
        for first in range(0, num_dirs, per_launch):
            directions = range(layer * num_dirs + first, layer * num_dirs + first + per_launch)
            y, h_last = _recurrence(x, hx, params, directions, per_dir, H, lengths, first == 1, save)
            outputs.append(y)
            h_n.append(h_last)
        x = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
        if masks is not None and layer < num_layers - 1:
            x = x * masks[layer]
    output = x.transpose(0, 1) if batch_first else x
    return output, torch.cat(h_n)


def _dropout_masks(x, num_layers, width, dropout, training):
    """The dropout multipliers of the inputs of layers 1.. ``(layers - 1, T, B, width)``, drawn
    before any launch from PyTorch's generator, so that a seed gives the same result whether the
    layers run one launch each or all in one; None without dropout."""
    if not (dropout > 0 and training and num_layers > 1):
        return None
    masks = x.new_empty((num_layers - 1, *x.shape[:2], width))
    if dropout == 1:
        return masks.zero_()
    return masks.bernoulli_(1 - dropout).div_(1 - dropout)


def _layer_weights(params, index, per_dir, H):
    """``(w_ih, w_hh, bias, b_hn)`` of the layer direction with flat index ``index``: ``bias`` the
    input projection's, with ``b_hh`` of the r and z gates folded in (None without biases)."""
    w_ih, w_hh, *biases = params[index * per_dir : (index + 1) * per_dir]
    if not biases:
        return w_ih, w_hh, None, w_hh.new_zeros(H)
    b_ih, b_hh = biases
    return w_ih, w_hh, b_ih + torch.cat([b_hh[: 2 * H], b_hh.new_zeros(H)]), b_hh[2 * H :]


def _recurrence(x, hx, params, directions, per_dir, H, lengths, reverse, save):
    """One launch for the layer directions with flat indices ``directions`` (consecutive; the first
    runs reversed when ``reverse``): their input projection is one GEMM and their outputs come
    back side by side, ``(T, B, len(directions) x H)``, with ``h_n`` ``(len(directions), B, H)``."""
    w_ih, w_hh, bias, b_hn = zip(*(_layer_weights(params, index, per_dir, H) for index in directions))
    gx = F.linear(x, _cat(list(w_ih)), None if bias[0] is None else _cat(list(bias)))
    y, h_last, _, _ = _ops.GRURecurrence.apply(
        gx, _stacked(list(w_hh)), _stacked(list(b_hn)), hx[directions.start : directions.stop], lengths, reverse, save
    )
    return y, h_last


def _stack(x, hx, params, num_layers, per_dir, H, lengths, masks, save):
    """Every layer of a unidirectional stack in one launch; layer 0's input projection is one GEMM
    before it, the layers above project their inputs inside it."""
    w_ih, w_hh, bias, b_hn = zip(*(_layer_weights(params, layer, per_dir, H) for layer in range(num_layers)))
    gx = F.linear(x, w_ih[0], bias[0])
    b_ih = torch.stack(bias[1:]) if bias[0] is not None else w_hh[0].new_zeros(num_layers - 1, 3 * H)
    ys, h_n, _, _ = _ops.GRUStack.apply(
        gx, torch.stack(w_ih[1:]), b_ih, torch.stack(w_hh), torch.stack(b_hn), hx, lengths, masks, save
    )
    return (ys[-1] if save else ys), h_n


# One direction's weights go to the kernel as views, not copies: a streaming caller (one timestep
# per call) must not copy W_hh every step. Two directions are stacked, once per whole sequence.
def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _stacked(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)
