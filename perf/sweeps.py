"""The perf suite's sweeps, as data.

A sweep is a list of :class:`Case` (one GRU call: shape, dtype, mode, what it returns) and the
providers it compares. Dimensions: batch, hidden, input size, seq_len (T), layers, directions,
dtype, mode (``inference``: forward under ``no_grad``; ``train_fwd``: forward recording the graph;
``fwd_bwd``: forward and backward).
"""

from __future__ import annotations

import dataclasses
import itertools

from tritongru.accuracy import DTYPES, MODES, RETURNS

ALL_PROVIDERS = ("tritongru", "tritongru-layers", "cudnn", "cudnn-graph", "reference", "compile")
# What tritongru is measured against: speedups are over the faster of the two (perf/store.py).
CUDNN_PROVIDERS = ("cudnn", "cudnn-graph")
# On a CPU: tritongru.GRU's path there against nn.GRU (ratios in perf/store.py).
CPU_PROVIDERS = ("tritongru-cpu", "nn-gru-cpu")
# Where a sweep runs: a GPU; the CPU, as a user's model would; the CPU under TRITON_INTERPRET=1.
SWEEP_DEVICES = ("cuda", "cpu", "interpreter")


@dataclasses.dataclass(frozen=True)
class Case:
    """One measured call: ``nn.GRU(input_size, hidden, layers, bidirectional=directions == 2)`` on
    ``(seq_len, batch, input_size)`` input with a random ``h0``."""

    batch: int
    hidden: int
    input_size: int
    seq_len: int
    layers: int
    directions: int
    dtype: str
    mode: str
    returns: str = "both"
    task: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.returns not in RETURNS:
            raise ValueError(f"returns must be one of {RETURNS}, got {self.returns!r}")
        if self.directions not in (1, 2):
            raise ValueError(f"directions must be 1 or 2, got {self.directions}")
        for name in ("batch", "hidden", "input_size", "seq_len", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def case_id(self) -> str:
        """A stable name of the case; the key results are stored and resumed under."""
        prefix = f"{self.task}:" if self.task else ""
        return (
            f"{prefix}T{self.seq_len}-B{self.batch}-I{self.input_size}-H{self.hidden}-L{self.layers}-"
            f"D{self.directions}-{self.dtype}-{self.mode}-{self.returns}"
        )

    @property
    def sequential_steps(self) -> int:
        """Recurrence steps of the case, counted per layer and direction (T x layers x directions):
        the per-step latency divides by this for every provider, whether or not it runs the two
        directions at once (tritongru does where both fit)."""
        return self.seq_len * self.layers * self.directions


@dataclasses.dataclass(frozen=True)
class Sweep:
    name: str
    description: str
    cases: tuple[Case, ...]
    providers: tuple[str, ...]
    device: str  # one of SWEEP_DEVICES

    def __post_init__(self) -> None:
        if self.device not in SWEEP_DEVICES:
            raise ValueError(f"device must be one of {SWEEP_DEVICES}, got {self.device!r}")


def grid(**dimensions) -> tuple[Case, ...]:
    """Every combination of the given dimension values (each a tuple), in the order given."""
    names = list(dimensions)
    return tuple(Case(**dict(zip(names, values))) for values in itertools.product(*dimensions.values()))


def _target_shapes() -> tuple[Case, ...]:
    """The target shapes first (T=1024 bf16), so a run cut short by a time budget measures them."""
    core = grid(
        mode=("inference", "fwd_bwd"), hidden=(256, 512, 1024), batch=(1, 16, 64), input_size=(256,),
        seq_len=(1024,), layers=(1,), directions=(1,), dtype=("bfloat16",),
    )
    edges = grid(
        mode=("inference", "fwd_bwd"), hidden=(64, 128), batch=(1, 16, 64), input_size=(256,),
        seq_len=(1024,), layers=(1,), directions=(1,), dtype=("bfloat16",),
    ) + grid(
        mode=("inference", "fwd_bwd"), hidden=(256, 512, 1024), batch=(256,), input_size=(256,),
        seq_len=(1024,), layers=(1,), directions=(1,), dtype=("bfloat16",),
    )
    fp32 = grid(
        mode=("inference", "fwd_bwd"), hidden=(256, 1024), batch=(1, 64), input_size=(256,),
        seq_len=(1024,), layers=(1,), directions=(1,), dtype=("float32",),
    )
    # Both directions in one launch (perf/NOTES.md predicts ~2x over one launch per direction).
    bidirectional = grid(
        mode=("inference", "fwd_bwd"), hidden=(256, 1024), batch=(16,), input_size=(256,),
        seq_len=(1024,), layers=(1,), directions=(2,), dtype=("bfloat16",),
    )
    return core + edges + fp32 + bidirectional


def _cpu_shapes() -> tuple[Case, ...]:
    """Shapes a user runs on a CPU: a 2-layer inference at T=1024, small and medium training steps,
    and a bf16 one (short: PyTorch's CPU GRU takes about a minute for a bf16 training step at T=1024,
    B=16, H=512 on two cores)."""
    return (
        Case(16, 512, 512, 1024, 2, 1, "float32", "inference"),
        Case(32, 128, 128, 400, 1, 1, "float32", "fwd_bwd"),
        Case(16, 512, 512, 256, 1, 1, "float32", "fwd_bwd"),
        Case(16, 512, 512, 64, 1, 1, "bfloat16", "fwd_bwd"),
    )


def _kernelbench() -> tuple[Case, ...]:
    """KernelBench level 3, tasks 39-42: 6-layer GRU, seq_len 512, batch 10, input 128, hidden 256,
    fp32; 39 returns output, 40 h_n, 41 (bidirectional) output, 42 (bidirectional) h_n."""
    tasks = {39: (1, "output"), 40: (1, "h_n"), 41: (2, "output"), 42: (2, "h_n")}
    return tuple(
        Case(10, 256, 128, 512, 6, directions, "float32", mode, returns, task=f"kernelbench-{task}")
        for task, (directions, returns) in tasks.items()
        for mode in ("inference", "fwd_bwd")
    )


def _stacks() -> tuple[Case, ...]:
    """Unidirectional stacks, which run in one launch where they fit: KernelBench tasks 39/40
    first, then 2-6 bf16 layers at T=1024."""
    kernelbench = tuple(case for case in _kernelbench() if case.directions == 1 and case.mode == "inference")
    return kernelbench + grid(
        layers=(2, 4, 6), hidden=(256, 512, 1024), batch=(1, 16), mode=("inference", "fwd_bwd"), input_size=(256,),
        seq_len=(1024,), directions=(1,), dtype=("bfloat16",),
    )


SWEEPS: dict[str, Sweep] = {
    sweep.name: sweep
    for sweep in (
        Sweep(
            "default",
            "The target shapes on a GPU: T=1024, bf16 (and some fp32), hidden 64-1024, batch 1-256. "
            "Without the eager reference, which takes seconds per call at T=1024 (add it with --provider).",
            _target_shapes(),
            ("tritongru", *CUDNN_PROVIDERS),
            "cuda",
        ),
        Sweep(
            "quick",
            "A few short GPU shapes (T=32), short enough for torch.compile of the reference.",
            grid(
                mode=("inference", "fwd_bwd"), dtype=("bfloat16", "float32"), hidden=(256, 1024), batch=(1, 64),
                input_size=(256,), seq_len=(32,), layers=(1,), directions=(1,),
            ),
            ALL_PROVIDERS,
            "cuda",
        ),
        Sweep("kernelbench", "KernelBench level 3 tasks 39-42 (GRU, 6 layers, uni/bidirectional).", _kernelbench(), ALL_PROVIDERS, "cuda"),
        Sweep(
            "stack",
            "Unidirectional stacks (KernelBench 39/40, then 2-6 bf16 layers): all layers in one launch beside one "
            "launch per layer, eager cuDNN and cuDNN in a CUDA graph.",
            _stacks(),
            ("tritongru", "tritongru-layers", *CUDNN_PROVIDERS),
            "cuda",
        ),
        Sweep(
            "cpu",
            "tritongru.GRU on CPU tensors (PyTorch's GRU operator) beside nn.GRU on the same CPU: CPU numbers, not GPU ones.",
            _cpu_shapes(),
            CPU_PROVIDERS,
            "cpu",
        ),
        Sweep(
            "interpreter",
            "Tiny shapes for the CPU under TRITON_INTERPRET=1: checks the pipeline, measures nothing about GPUs.",
            grid(
                mode=("inference", "fwd_bwd"), hidden=(16, 32), batch=(1, 3), input_size=(8,), seq_len=(4,),
                layers=(1,), directions=(1,), dtype=("float32",),
            )
            + grid(
                mode=("inference", "fwd_bwd"), hidden=(24,), batch=(2,), input_size=(8,), seq_len=(3,),
                layers=(2,), directions=(2,), dtype=("float32",),
            ),
            ("tritongru", "reference"),
            "interpreter",
        ),
    )
}
