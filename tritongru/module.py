"""``tritongru.GRU``: a drop-in replacement for ``torch.nn.GRU`` that runs the persistent kernels."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .functional import BACKENDS, Backend, gru


class GRU(nn.Module):
    """``torch.nn.GRU`` with the recurrence computed by persistent Triton kernels.

    The constructor, parameter names, shapes, registration order and initialisation are nn.GRU's,
    so the same seed gives the same weights and state_dicts load both ways. ``forward(input,
    hx=None)`` takes batched, unbatched and ``PackedSequence`` input and returns ``(output, h_n)``
    exactly as nn.GRU does. (It is deliberately not a subclass of nn.GRU: TorchDynamo refuses to
    trace RNN modules, and this one must compile with ``fullgraph=True``.)

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device,
            dtype: as ``torch.nn.GRU``.
        backend: ``"auto"`` (default): the Triton kernels on CUDA tensors of a GPU they support,
            and on CPU tensors when ``TRITON_INTERPRET=1``; PyTorch's own GRU operator (nn.GRU's,
            at its speed) otherwise. ``"triton"``: always the kernels, with a clear error where they
            cannot run. ``"torch"``: always PyTorch's GRU operator. ``"reference"``: the
            step-by-step pure-PyTorch GRU, exact in float64, for validation.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be greater than zero, got {value}")
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout should be a number in range [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                UserWarning, stacklevel=2,
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.backend = bidirectional, backend
        self.proj_size = 0
        factory = {"device": device, "dtype": dtype}
        num_dirs = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            for direction in range(num_dirs):
                layer_input = input_size if layer == 0 else hidden_size * num_dirs
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = {"weight_ih": (3 * hidden_size, layer_input), "weight_hh": (3 * hidden_size, hidden_size)}
                if bias:
                    shapes |= {"bias_ih": (3 * hidden_size,), "bias_hh": (3 * hidden_size,)}
                for kind, shape in shapes.items():
                    setattr(self, kind + suffix, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(kind + suffix)
        self.reset_parameters()

    @property
    def _flat_weights(self) -> list[torch.Tensor]:
        """The parameters in nn.GRU's ``_flat_weights`` order (read fresh, so ``.to()`` and
        ``functional_call`` are always seen)."""
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[torch.Tensor]]:
        per_dir = 4 if self.bias else 2
        weights = self._flat_weights
        return [weights[i : i + per_dir] for i in range(0, len(weights), per_dir)]

    def reset_parameters(self) -> None:
        """nn.GRU's initialisation: every parameter uniform in ``[-1/sqrt(H), 1/sqrt(H)]``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """A no-op kept for code written for nn.GRU (the kernels need no flat cuDNN buffer)."""

    @classmethod
    def from_torch(cls, module: nn.GRU, backend: Backend = "auto") -> "GRU":
        """A tritongru.GRU with the configuration, parameters, device, dtype and mode of ``module``."""
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

    def to_torch(self) -> nn.GRU:
        """The equivalent ``torch.nn.GRU``: same configuration, parameters (copied), device, dtype
        and mode, for tools that need nn.GRU itself."""
        weight = self.weight_ih_l0
        module = nn.GRU(
            self.input_size, self.hidden_size, self.num_layers, bias=self.bias, batch_first=self.batch_first,
            dropout=self.dropout, bidirectional=self.bidirectional, device=weight.device, dtype=weight.dtype,
        )
        module.load_state_dict(self.state_dict())
        return module.train(self.training)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s + f", backend={self.backend!r}"

    def forward(
        self, input: torch.Tensor | PackedSequence, hx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | PackedSequence, torch.Tensor]:
        """nn.GRU's forward: ``input`` (T, B, input_size) (``(B, T, input_size)`` with
        ``batch_first``), (T, input_size) unbatched, or a ``PackedSequence``; ``hx``
        (num_layers * num_directions, B, hidden_size) or None for zeros. Returns ``(output, h_n)``
        with nn.GRU's shapes, dtypes and layout (a ``PackedSequence`` output for packed input)."""
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            self._check_input(input.data, expected_dim=2)
            x, lengths = pad_packed_sequence(input, batch_first=False)
            batched = True
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"GRU: Expected input to be 2D or 3D, got {input.dim()}D instead")
            batched = input.dim() == 3
            # nn.GRU reads 2-D input as one sequence, whatever batch_first says.
            batch_dim = 0 if self.batch_first else 1
            if not batched:
                input = input.unsqueeze(batch_dim)
                if hx is not None:
                    if hx.dim() != 2:
                        raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor")
                    hx = hx.unsqueeze(1)
            elif hx is not None and hx.dim() != 3:
                raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor")
            self._check_input(input, expected_dim=3)
            x = input.transpose(0, 1) if self.batch_first else input
        self._check_hidden(x, hx)
        output, h_n = gru(
            x, hx, self._flat_weights, num_layers=self.num_layers, bidirectional=self.bidirectional,
            has_biases=self.bias, batch_first=False, dropout=self.dropout, training=self.training,
            lengths=lengths, backend=self.backend,
        )
        if packed:
            return _repack(output, lengths, input), h_n
        if self.batch_first:
            output = output.transpose(0, 1)
        if not batched:
            output, h_n = output.squeeze(batch_dim), h_n.squeeze(1)
        return output, h_n

    def _check_input(self, input: torch.Tensor, expected_dim: int) -> None:
        """nn.GRU's input checks and messages, plus the ones nn.GRU leaves to cuDNN."""
        weight = self.weight_ih_l0
        if input.dtype != weight.dtype and not torch.is_autocast_enabled(input.device.type):
            raise ValueError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). "
                f"Convert input: input.to({weight.dtype}), or convert model: model.to({input.dtype})"
            )
        if input.dim() != expected_dim:
            raise RuntimeError(f"input must have {expected_dim} dimensions, got {input.dim()}")
        if input.size(-1) != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {input.size(-1)}"
            )
        if input.device != weight.device:
            raise RuntimeError(f"GRU: input is on {input.device} but the parameters are on {weight.device}")

    def _check_hidden(self, x: torch.Tensor, hx: torch.Tensor | None) -> None:
        if hx is None:
            return
        expected = (self.num_layers * (2 if self.bidirectional else 1), x.size(1), self.hidden_size)
        if hx.size() != expected:
            raise RuntimeError(f"Expected hidden size {expected}, got {list(hx.size())}")
        if hx.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
            raise RuntimeError(f"GRU: hx dtype {hx.dtype} does not match the input dtype {x.dtype}")
        if hx.device != x.device:
            raise RuntimeError(f"GRU: hx is on {hx.device} but the input is on {x.device}")


def _repack(output: torch.Tensor, lengths: torch.Tensor, like: PackedSequence) -> PackedSequence:
    """Pack a padded output (original batch order) with the layout of the input ``like``."""
    if like.sorted_indices is not None:
        output = output.index_select(1, like.sorted_indices)
        lengths = lengths[like.sorted_indices.cpu()]
    data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)
