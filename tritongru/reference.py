"""A pure-PyTorch GRU with exactly torch.nn.GRU's semantics, usable in float64.

Written step by step from the equations (gate order r, z, n; "reset after": r multiplies
``W_hn h + b_hn``), independent of the kernels' algebra, so tests and the perf suite can hold the
kernels against it. Handles layers, both directions, dropout between layers and per-sequence
lengths (a finished sequence keeps its state and outputs zeros; the reverse direction starts at
each sequence's own last element).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def gru_cell_reference(x: torch.Tensor, h: torch.Tensor, w_ih, w_hh, b_ih=None, b_hh=None) -> torch.Tensor:
    """One GRU step: ``x`` (B, I), ``h`` (B, H) -> new ``h`` (B, H)."""
    return _step(F.linear(x, w_ih, b_ih), h, w_hh, b_hh)


def gru_recurrence_reference(gx: torch.Tensor, w_hh: torch.Tensor, b_hn: torch.Tensor, h0: torch.Tensor):
    """What ``torch.ops.tritongru.gru_recurrence`` computes for one forward direction (full
    lengths), without its leading direction axis: ``gx`` (T, B, 3H) the input projection with
    ``b_hh`` of r and z folded in, ``w_hh`` (3H, H), ``b_hn`` (H,), ``h0`` (B, H) -> ``(y, h_n)``."""
    b_hh = torch.cat([b_hn.new_zeros(2 * b_hn.numel()), b_hn])
    h, ys = h0, []
    for gx_t in gx:
        h = _step(gx_t, h, w_hh, b_hh)
        ys.append(h)
    return torch.stack(ys), h


def _step(gx: torch.Tensor, h: torch.Tensor, w_hh, b_hh) -> torch.Tensor:
    gh = F.linear(h, w_hh, b_hh)
    x_r, x_z, x_n = gx.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def gru_reference(
    input: torch.Tensor,
    hx: torch.Tensor | None,
    params: Sequence[torch.Tensor],
    *,
    num_layers: int,
    bidirectional: bool,
    has_biases: bool = True,
    batch_first: bool = False,
    lengths: torch.Tensor | None = None,
    dropout: float = 0.0,
    training: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A multi-layer GRU over a padded batch.

    ``input`` (T, B, I) (or (B, T, I) with ``batch_first``); ``hx`` (layers * directions, B, H) or
    None; ``params`` in nn.GRU's ``_flat_weights`` order (``w_ih, w_hh[, b_ih, b_hh]`` per layer and
    direction); ``lengths`` (B,) per-sequence lengths or None. Returns ``(output, h_n)`` like nn.GRU,
    with zeros in ``output`` past each sequence's length.
    """
    x = input.transpose(0, 1) if batch_first else input
    T, B, _ = x.shape
    per_dir = 4 if has_biases else 2
    num_dirs = 2 if bidirectional else 1
    H = params[1].shape[1]
    if hx is None:
        hx = x.new_zeros(num_layers * num_dirs, B, H)
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long)
    lengths = lengths.to(device=x.device, dtype=torch.long)
    h_n = []
    for layer in range(num_layers):
        outputs = []
        for direction in range(num_dirs):
            index = layer * num_dirs + direction
            weights = list(params[index * per_dir : (index + 1) * per_dir])
            if not has_biases:
                weights += [None, None]
            # Step s of a row reads time t(s): s forward; L-1-s reversed while the row runs, and s
            # once it has finished (it then outputs zeros). t is an involution, so the outputs,
            # gathered by step, return to time order through the same index.
            steps = torch.arange(T, device=x.device)[:, None].expand(T, B)
            running = steps < lengths
            time = torch.where(running, lengths - 1 - steps, steps) if direction == 1 else steps
            # unbind, not indexing per step: the backward of an index writes a full-size gradient
            # each step; that of unbind stacks them once.
            x_by_step = x.gather(0, time[:, :, None].expand(T, B, x.shape[-1])).unbind(0)
            h, by_step = hx[index], []
            for x_t, running_t in zip(x_by_step, running[:, :, None]):
                h = torch.where(running_t, gru_cell_reference(x_t, h, *weights), h)
                by_step.append(torch.where(running_t, h, 0.0))
            outputs.append(torch.stack(by_step).gather(0, time[:, :, None].expand(T, B, H)))
            h_n.append(h)
        x = torch.cat(outputs, dim=-1)
        if dropout > 0 and training and layer < num_layers - 1:
            x = F.dropout(x, p=dropout, training=True)
    output = x.transpose(0, 1) if batch_first else x
    return output, torch.stack(h_n)
