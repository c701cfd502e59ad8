"""``tritongru.GRU``: a drop-in replacement for ``torch.nn.GRU`` that runs the persistent kernels."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .functional import BACKENDS, Backend, gru


class GRU(nn.GRU):
    """``torch.nn.GRU`` with the recurrence computed by persistent Triton kernels.

    The constructor, parameter names, shapes and initialisation are nn.GRU's own (this class
    derives from it), so state_dicts load both ways and ``isinstance(m, nn.GRU)`` holds.
    ``forward(input, hx=None)`` takes batched, unbatched and ``PackedSequence`` input and returns
    ``(output, h_n)`` exactly as nn.GRU does.

    Args:
        backend: ``"auto"`` (default): the Triton kernels on CUDA tensors, and on CPU tensors when
            ``TRITON_INTERPRET=1``; the PyTorch reference otherwise. ``"triton"``: always the
            kernels, with a clear error where they cannot run. ``"reference"``: always the
            pure-PyTorch reference.
        Every other argument is ``torch.nn.GRU``'s.
    """

    def __init__(self, *args, backend: Backend = "auto", **kwargs) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        super().__init__(*args, **kwargs)
        self.backend = backend

    @classmethod
    def from_torch(cls, module: nn.GRU, backend: Backend = "auto") -> "GRU":
        """A tritongru.GRU with the configuration, parameters, device and dtype of ``module``."""
        if not isinstance(module, nn.GRU):
            raise TypeError(f"from_torch expects a torch.nn.GRU, got {type(module).__name__}")
        weight = module.weight_ih_l0
        new = cls(
            module.input_size, module.hidden_size, module.num_layers, bias=module.bias,
            batch_first=module.batch_first, dropout=module.dropout, bidirectional=module.bidirectional,
            device=weight.device, dtype=weight.dtype, backend=backend,
        )
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend!r}"

    def forward(self, input, hx: torch.Tensor | None = None):  # type: ignore[override]
        if self.proj_size:
            raise ValueError("tritongru.GRU has no proj_size (nor has torch.nn.GRU)")
        num_dirs = 2 if self.bidirectional else 1
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            padded, lengths = pad_packed_sequence(input, batch_first=False)
            x, batched = padded, True
            self._check_input_and_hidden(input.data, hx, input.batch_sizes)
        else:
            batched = input.dim() == 3
            if input.dim() not in (2, 3):
                raise ValueError(f"GRU: expected input with 2 (unbatched) or 3 (batched) dimensions, got {input.dim()}")
            if not batched:
                input = input.unsqueeze(1)
                if hx is not None:
                    if hx.dim() != 2:
                        raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor")
                    hx = hx.unsqueeze(1)
            elif hx is not None and hx.dim() != 3:
                raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor")
            self._check_input_and_hidden(input, hx, None)
            x = input.transpose(0, 1) if self.batch_first else input
        output, h_n = gru(
            x, hx, self._flat_weights, num_layers=self.num_layers, bidirectional=self.bidirectional,
            has_biases=self.bias, batch_first=False, dropout=self.dropout, training=self.training,
            lengths=lengths, backend=self.backend,
        )
        if packed:
            sorted_output = output.index_select(1, input.sorted_indices) if input.sorted_indices is not None else output
            sorted_lengths = lengths[input.sorted_indices.cpu()] if input.sorted_indices is not None else lengths
            data = pack_padded_sequence(sorted_output, sorted_lengths, enforce_sorted=True).data
            return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), h_n
        if self.batch_first:
            output = output.transpose(0, 1)
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
        return output, h_n

    def _check_input_and_hidden(self, x: torch.Tensor, hx: torch.Tensor | None, batch_sizes) -> None:
        """nn.GRU's checks (its own messages), plus the ones nn.GRU leaves to cuDNN."""
        if x.numel() == 0:
            raise ValueError(f"GRU: expected a non-empty input (time steps and batch >= 1), got shape {tuple(x.shape)}")
        if hx is not None:
            self.check_forward_args(x, hx, batch_sizes)
        else:
            self.check_input(x, batch_sizes)
        weight = self.weight_ih_l0
        if x.dtype != weight.dtype:
            raise ValueError(f"GRU: input dtype {x.dtype} does not match the parameters' dtype {weight.dtype}")
        if x.device != weight.device:
            raise ValueError(f"GRU: input is on {x.device} but the parameters are on {weight.device}")
        if hx is not None:
            if hx.dtype != x.dtype:
                raise ValueError(f"GRU: hx dtype {hx.dtype} does not match the input dtype {x.dtype}")
            if hx.device != x.device:
                raise ValueError(f"GRU: hx is on {hx.device} but the input is on {x.device}")
