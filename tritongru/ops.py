"""The recurrence as PyTorch operators: ``torch.ops.tritongru.gru_recurrence`` and its backward.

One call is one layer in ``D`` directions (``D = w_hh.shape[0]``: 1, or 2 for forward and reverse
in one launch). The input projection stays outside (an ordinary ``F.linear``, differentiated by
autograd), so the operator's inputs are the projection ``gx`` (T, B, D x 3H), ``W_hh`` (D, 3H, H),
the n gate's ``b_hh`` (D, H) and ``h0`` (D, B, H). Both operators have fake (meta) implementations, so
``torch.compile`` traces through them without a graph break, and the forward has an autograd
formula whose backward is the second operator.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _compat
from .dispatch import PlanError, Problem, plan_launch, run_planned
from .kernels.gru_backward import gru_backward, gru_stack_backward
from .kernels.gru_forward import gru_forward, gru_stack_forward
from .kernels.launch import accumulator_dtype


def _run_planned(gx: Tensor, w_hh: Tensor, training: bool, backward: bool, run, stack: bool = False):
    """``run(config)`` with the plan of this launch on ``gx``'s device (:func:`dispatch.plan_launch`,
    :func:`dispatch.run_planned`): ``w_hh``'s leading axis is the launch's directions, or with
    ``stack`` the layers it runs (a stack that fits no plan with its weights on chip raises
    :class:`PlanError` before anything runs). An operator's schema takes tensors and scalars, not
    a plan, so the op asks :func:`dispatch.plan_launch` for the plan the caller decided by: the
    same problem gives the same plan (memoised, a few microseconds)."""
    can_run, why = _compat.kernels_can_run(gx.device)
    if not can_run:
        raise RuntimeError(f"tritongru: {why}")
    groups, _, hidden = w_hh.shape
    directions, layers = (1, groups) if stack else (groups, 1)
    problem = Problem(hidden, gx.shape[1], gx.dtype, training, directions=directions, layers=layers)
    return run_planned(plan_launch(problem, gx.device), backward, gx.device, run)


def _check_shapes(gx: Tensor, w_hh: Tensor, b_hn: Tensor, h0: Tensor) -> None:
    if w_hh.dim() != 3 or w_hh.shape[0] not in (1, 2) or w_hh.shape[1] != 3 * w_hh.shape[2]:
        raise ValueError(f"w_hh must be (D, 3H, H) with D directions (1 or 2), got {tuple(w_hh.shape)}")
    D, _, H = w_hh.shape
    T, B = gx.shape[:2]
    for name, tensor, shape in (("gx", gx, (T, B, D * 3 * H)), ("b_hn", b_hn, (D, H)), ("h0", h0, (D, B, H))):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} for w_hh of shape {tuple(w_hh.shape)}, got {tuple(tensor.shape)}")


@torch.library.custom_op("tritongru::gru_recurrence", mutates_args=(), device_types=("cuda", "cpu"))
def gru_recurrence(
    gx: Tensor, w_hh: Tensor, b_hn: Tensor, h0: Tensor, lengths: Optional[Tensor], reverse: bool, save: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Run one layer in ``D`` directions: ``(y, h_n, hs, gates)``, see :func:`tritongru.kernels.gru_forward.gru_forward`;
    ``hs`` and ``gates`` are empty unless ``save``."""
    _check_shapes(gx, w_hh, b_hn, h0)
    gx, w_hh, b_hn, h0 = gx.contiguous(), w_hh.contiguous(), b_hn.contiguous(), h0.contiguous()
    precision = _compat.fp32_dot_precision()
    return _run_planned(gx, w_hh, save, False,
                        lambda config: gru_forward(gx, w_hh, b_hn, h0, lengths, reverse, save, config, precision))


@gru_recurrence.register_fake
def _(gx, w_hh, b_hn, h0, lengths, reverse, save):
    T, B, _ = gx.shape
    D, _, H = w_hh.shape
    hs = gx.new_empty(D, T + 1, B, H) if save else gx.new_empty(0)
    gates = gx.new_empty(D, T, B, 4, H) if save else gx.new_empty(0)
    return gx.new_empty(T, B, D * H), gx.new_empty(D, B, H), hs, gates


@torch.library.custom_op("tritongru::gru_recurrence_backward", mutates_args=(), device_types=("cuda", "cpu"))
def gru_recurrence_backward(
    dy: Tensor, dh_n: Tensor, w_hh: Tensor, hs: Tensor, gates: Tensor, lengths: Optional[Tensor], reverse: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dgx, dgh, dh0)`` of one layer in ``D`` directions; see :func:`tritongru.kernels.gru_backward.gru_backward`."""
    dy, dh_n, w_hh = dy.contiguous(), dh_n.contiguous(), w_hh.contiguous()
    precision = _compat.fp32_dot_precision()
    return _run_planned(dy, w_hh, True, True,
                        lambda config: gru_backward(dy, dh_n, w_hh, hs, gates, lengths, reverse, config, precision))


@gru_recurrence_backward.register_fake
def _(dy, dh_n, w_hh, hs, gates, lengths, reverse):
    T, B, _ = dy.shape
    D, _, H = w_hh.shape
    return hs.new_empty(T, B, D * 3 * H), hs.new_empty(D, T, B, 3 * H), hs.new_empty(D, B, H)


def _setup_context(ctx, inputs, output):
    gx, w_hh, b_hn, h0, lengths, reverse, save = inputs
    _, _, hs, gates = output
    ctx.reverse = reverse
    ctx.saved = save
    ctx.save_for_backward(w_hh, hs, gates, lengths)
    ctx.mark_non_differentiable(hs, gates)


def _backward(ctx, dy, dh_n, _dhs, _dgates):
    if not ctx.saved:
        raise RuntimeError(
            "tritongru::gru_recurrence was called with save=False, so nothing was kept for the backward; "
            "call it with save=True when gradients are needed"
        )
    w_hh, hs, gates, lengths = ctx.saved_tensors
    dgx, dgh, dh0 = _RecurrenceBackward.apply(dy, dh_n, w_hh, hs, gates, lengths, ctx.reverse)
    D, T, B, H3 = dgh.shape
    dgh_rows = dgh.reshape(D, T * B, H3)
    dw_hh = torch.bmm(dgh_rows.transpose(1, 2), hs[:, :T].reshape(D, T * B, H3 // 3))
    db_hn = dgh_rows[:, :, 2 * H3 // 3 :].sum(1, dtype=accumulator_dtype(dgh.dtype, torch)).to(dgh.dtype)
    return dgx, dw_hh, db_hn, dh0, None, None, None


gru_recurrence.register_autograd(_backward, setup_context=_setup_context)


# ``register_autograd`` serves torch.autograd, torch.compile and torch.export, but the
# autograd.Function it generates has no ``setup_context``, which torch.func's grad, vjp and jacrev
# require (pytorch/pytorch#168393), for the forward operator and for the backward one that its
# backward calls. These two Functions have the same forward, context and backward in the form
# torch.func accepts; the functional API calls the first.
class GRURecurrence(torch.autograd.Function):

    generate_vmap_rule = True

    @staticmethod
    def forward(gx, w_hh, b_hn, h0, lengths, reverse, save):
        return torch.ops.tritongru.gru_recurrence(gx, w_hh, b_hn, h0, lengths, reverse, save)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, dy, dh_n, dhs, dgates):
        return _backward(ctx, dy, dh_n, dhs, dgates)


class _NotDifferentiable(torch.autograd.Function):
    """A backward operator's call in the form torch.func accepts, with no backward of its own."""

    generate_vmap_rule = True

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("tritongru: the GRU's backward is not differentiable (no double backward)")


class _RecurrenceBackward(_NotDifferentiable):
    @staticmethod
    def forward(dy, dh_n, w_hh, hs, gates, lengths, reverse):
        return torch.ops.tritongru.gru_recurrence_backward(dy, dh_n, w_hh, hs, gates, lengths, reverse)


@torch.library.custom_op("tritongru::gru_stack", mutates_args=(), device_types=("cuda", "cpu"))
def gru_stack(
    gx: Tensor, w_ih: Tensor, b_ih: Tensor, w_hh: Tensor, b_hn: Tensor, h0: Tensor, lengths: Optional[Tensor],
    masks: Optional[Tensor], save: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every layer of a unidirectional stack in one launch: ``(y, h_n, hs, gates)``, see
    :func:`tritongru.kernels.gru_forward.gru_stack_forward` (``y`` holds every layer's output when ``save``);
    layer by layer where no plan of that launch fits, found before anything runs."""
    L, H3, H = w_hh.shape
    T, B = gx.shape[:2]
    for name, tensor, shape in (("gx", gx, (T, B, H3)), ("w_ih", w_ih, (L - 1, H3, H)), ("b_ih", b_ih, (L - 1, H3)),
                                ("b_hn", b_hn, (L, H)), ("h0", h0, (L, B, H))):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} for w_hh of shape {tuple(w_hh.shape)}, got {tuple(tensor.shape)}")
    if masks is not None and tuple(masks.shape) != (L - 1, T, B, H):
        raise ValueError(f"masks must have shape {(L - 1, T, B, H)}, got {tuple(masks.shape)}")
    args = [t.contiguous() for t in (gx, w_ih, b_ih, w_hh, b_hn, h0)]
    masks = None if masks is None else masks.contiguous()
    precision = _compat.fp32_dot_precision()
    try:
        return _run_planned(gx, w_hh, save, False, lambda config: gru_stack_forward(
            *args, lengths, masks, save, config, precision), stack=True)
    except PlanError:  # found before anything ran; inside the op, so that a compiled graph takes it too
        return _stack_layer_by_layer(*args, lengths, masks, save, precision)


def _stack_layer_by_layer(gx, w_ih, b_ih, w_hh, b_hn, h0, lengths, masks, save, precision):
    """What the stack's launch returns, from the one-layer kernel layer by layer, each layer above
    projecting its (masked) input with a GEMM: the arithmetic of a stack run one launch per layer."""
    outputs = []
    for layer in range(w_hh.shape[0]):
        if layer > 0:
            below = outputs[-1][0]
            gx = F.linear(below if masks is None else below * masks[layer - 1], w_ih[layer - 1], b_ih[layer - 1])
        w, b, h = w_hh[layer : layer + 1], b_hn[layer : layer + 1], h0[layer : layer + 1]
        outputs.append(_run_planned(gx, w, save, False, lambda config: gru_forward(
            gx, w, b, h, lengths, False, save, config, precision)))
    ys, h_n, hs, gates = zip(*outputs)
    if not save:
        return ys[-1], torch.cat(h_n), hs[-1], gates[-1]
    return torch.stack(ys), torch.cat(h_n), torch.cat(hs), torch.cat(gates)


@gru_stack.register_fake
def _(gx, w_ih, b_ih, w_hh, b_hn, h0, lengths, masks, save):
    T, B, _ = gx.shape
    L, _, H = w_hh.shape
    if not save:
        return gx.new_empty(T, B, H), gx.new_empty(L, B, H), gx.new_empty(0), gx.new_empty(0)
    return gx.new_empty(L, T, B, H), gx.new_empty(L, B, H), gx.new_empty(L, T + 1, B, H), gx.new_empty(L, T, B, 4, H)


@torch.library.custom_op("tritongru::gru_stack_backward", mutates_args=(), device_types=("cuda", "cpu"))
def gru_stack_backward_op(
    dy: Tensor, dh_n: Tensor, w_ih: Tensor, w_hh: Tensor, hs: Tensor, gates: Tensor, lengths: Optional[Tensor],
    masks: Optional[Tensor],
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dgx, dgh, dh0)`` of every layer of a stack, (L, T, B, 3H) twice and (L, B, H): in one
    launch (:func:`tritongru.kernels.gru_backward.gru_stack_backward`), or, where no plan of it keeps its weights
    on chip, layer by layer from the top through the one-layer backward kernel."""
    dy, dh_n, w_ih, w_hh = dy.contiguous(), dh_n.contiguous(), w_ih.contiguous(), w_hh.contiguous()
    masks = None if masks is None else masks.contiguous()
    precision = _compat.fp32_dot_precision()
    try:
        return _run_planned(dy, w_hh, True, True, lambda config: gru_stack_backward(
            dy, dh_n, w_ih, w_hh, hs, gates, lengths, masks, config, precision), stack=True)
    except PlanError:  # found before anything ran
        pass
    grads = []
    for layer in reversed(range(w_hh.shape[0])):
        w, dh = w_hh[layer : layer + 1], dh_n[layer : layer + 1]
        saved = hs[layer : layer + 1], gates[layer : layer + 1]
        dgx, dgh, dh0 = _run_planned(dy, w, True, True, lambda config: gru_backward(
            dy, dh, w, *saved, lengths, False, config, precision))
        grads.append((dgx, dgh[0], dh0[0]))
        if layer > 0:  # the gradient of the layer below's output
            dy = dgx @ w_ih[layer - 1] if masks is None else (dgx @ w_ih[layer - 1]) * masks[layer - 1]
    return tuple(torch.stack(parts[::-1]) for parts in zip(*grads))


@gru_stack_backward_op.register_fake
def _(dy, dh_n, w_ih, w_hh, hs, gates, lengths, masks):
    T, B, _ = dy.shape
    L, H3, _ = w_hh.shape
    return hs.new_empty(L, T, B, H3), hs.new_empty(L, T, B, H3), hs.new_empty(L, B, H3 // 3)


class GRUStack(torch.autograd.Function):
    """The stack's launch with its backward: in one launch too where it fits (the top layer
    leading), else the layers top down through the one-layer backward kernel; the weights'
    gradients from batched GEMMs, as autograd differentiates a layer-by-layer stack's input
    projections."""

    generate_vmap_rule = True

    @staticmethod
    def forward(gx, w_ih, b_ih, w_hh, b_hn, h0, lengths, masks, save):
        return torch.ops.tritongru.gru_stack(gx, w_ih, b_ih, w_hh, b_hn, h0, lengths, masks, save)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, w_ih, _, w_hh, _, _, lengths, masks, save = inputs
        ys, _, hs, gates = output
        ctx.saved = save
        ctx.save_for_backward(w_ih, w_hh, ys, hs, gates, lengths, masks)
        ctx.mark_non_differentiable(hs, gates)

    @staticmethod
    def backward(ctx, dy, dh_n, _dhs, _dgates):
        if not ctx.saved:
            raise RuntimeError("tritongru::gru_stack was called with save=False, so nothing was kept for the backward")
        w_ih, w_hh, ys, hs, gates, lengths, masks = ctx.saved_tensors
        # Only the top layer's output leaves tritongru.gru: the others' gradients are zeros.
        dgx, dgh, dh0 = _StackBackward.apply(dy[-1], dh_n, w_ih, w_hh, hs, gates, lengths, masks)
        L, T, B, H3 = dgh.shape
        dw_hh = torch.bmm(dgh.reshape(L, T * B, H3).transpose(1, 2), hs[:, :T].reshape(L, T * B, H3 // 3))
        db_hn = dgh[..., 2 * H3 // 3 :].sum((1, 2), dtype=accumulator_dtype(dgh.dtype, torch)).to(dgh.dtype)
        x = ys[:-1] if masks is None else ys[:-1] * masks
        rows = dgx[1:].reshape(L - 1, T * B, H3)
        dw_ih = torch.bmm(rows.transpose(1, 2), x.reshape(L - 1, T * B, H3 // 3))
        db_ih = rows.sum(1, dtype=accumulator_dtype(rows.dtype, torch)).to(rows.dtype)
        return dgx[0], dw_ih, db_ih, dw_hh, db_hn, dh0, None, None, None


class _StackBackward(_NotDifferentiable):
    @staticmethod
    def forward(dy, dh_n, w_ih, w_hh, hs, gates, lengths, masks):
        return torch.ops.tritongru.gru_stack_backward(dy, dh_n, w_ih, w_hh, hs, gates, lengths, masks)
