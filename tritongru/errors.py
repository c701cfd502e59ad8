"""The errors tritongru raises of its own (a stalled wait raises :class:`~tritongru.kernels.stalls.StallError`,
which the kernels define), importable without Triton."""


class PlanError(RuntimeError):
    """No plan of a recurrence fits the GPU it was asked to run on."""
