"""Launching persistent kernels safely: plans, co-residency, cooperative launch, stall errors.

A kernel whose programs wait for one another (at a grid barrier, or for another program's ready
flags) deadlocks unless every program is resident at once.
Before the first launch of a variant on a device, its compiled resources (registers, shared memory,
warps, spilled bytes) say whether one program fits an SM at all (if not, :class:`DoesNotFit` lets
the planner choose a smaller plan before anything runs; while the planner asks, spilled resident
weights are refused the same way, :class:`Spills`) and how many fit on one SM; a synchronised grid larger
than ``SMs x programs per SM`` is refused with an error instead of hanging. On a GPU the launch is also cooperative, so the driver refuses a
grid that cannot be co-resident, and every wait is bounded, so SMs taken by another process end in
an error, not a hang.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from .settings import INTERPRET
from . import stalls
from .exchange import word_dtype
from .limits import device_limits

EXCHANGES = ("barrier", "flags")
PRODUCTS = ("columns", "rows")


def resident_bytes_per_weight(dtype: torch.dtype) -> int:
    """Shared memory one resident weight element takes. fp32 counts twice: under 3xTF32 (the
    precision unless TF32 is allowed) the compiler hoists the split of each loop-invariant weight
    into a high and a low TF32 part out of the time loop and keeps both on chip (checked by
    compiling for sm_90); plans must hold for either precision."""
    return 2 * dtype.itemsize if dtype == torch.float32 else dtype.itemsize


@dataclasses.dataclass(frozen=True)
class PersistentConfig:
    """How one persistent launch splits its work.

    ``block_h`` hidden units per slice (all H in one slice means programs are independent batch
    tiles), ``block_b`` rows per batch tile, ``block_k`` the reduction chunk, ``num_programs`` the
    grid, ``resident`` whether each program keeps its weight slice on chip for the whole sequence
    (needs ``num_programs`` to be a multiple of the number of hidden slices). ``exchange`` is how
    the forward's hidden slices hand a step's state on: ``"barrier"`` (a grid barrier per step) or
    ``"flags"`` (each element carries its step, ``kernels/exchange.py``; resident weights, 16- and
    32-bit dtypes); the backward hands on its ``dgh`` the same way.

    ``split_k`` x ``split_n`` parts share each step's recurrent product (``kernels/tiles.py``):
    the reduction split ``split_k`` ways, the slice's columns ``split_n`` ways. With as many parts
    as warps, every warp does distinct work; with fewer, Triton gives the extra warps copies of
    the same parts (correct, and slower: the planner never chooses it).

    ``product`` is how a stack's backward takes ``W_hh``: by ``"columns"`` (each program its units'
    columns, every slice's ``dgh`` read each step) or by ``"rows"`` (each program its gates' rows, a
    partial product over all units exchanged: ``kernels/gru_backward.py``).
    """

    block_b: int
    block_h: int
    block_k: int
    num_programs: int
    num_warps: int = 4
    num_stages: int = 1
    resident: bool = True
    max_registers: int | None = None
    exchange: str = "barrier"
    split_k: int = 1
    split_n: int = 1
    product: str = "columns"

    def label(self) -> str:
        """A compact one-line form, e.g. ``b16/h16/k1024/p64/w8/s1/resident/split8x1`` (``/flags``
        when the forward exchanges its state through ready flags, ``/r255`` with a register cap)."""
        return (
            f"b{self.block_b}/h{self.block_h}/k{self.block_k}/p{self.num_programs}/w{self.num_warps}/"
            f"s{self.num_stages}/{'resident' if self.resident else 'streamed'}/split{self.split_k}x{self.split_n}"
            + ("/flags" if self.exchange == "flags" else "")
            + ("/rows" if self.product == "rows" else "")
            + (f"/r{self.max_registers}" if self.max_registers is not None else "")
        )

    def compile_options(self) -> dict:
        """Triton's compile options for this configuration. ``max_registers`` sets ``.maxnreg``:
        with 8 warps ptxas otherwise often stops at 128 registers (room for two programs per SM,
        which a barrier grid does not use) and spills."""
        options = {"num_warps": self.num_warps, "num_stages": self.num_stages}
        if self.max_registers is not None:
            options["maxnreg"] = self.max_registers
        return options

    def num_h_tiles(self, hidden: int) -> int:
        return triton.cdiv(hidden, self.block_h)

    def grid_synchronised(self, hidden: int) -> bool:
        """Whether programs wait for one another every step (at a barrier or for ready flags), so
        the grid must be co-resident: several hidden slices, several programs."""
        return self.num_h_tiles(hidden) > 1 and self.num_programs > 1

    def uses_ready_flags(self, hidden: int) -> bool:
        """Whether the slices exchange a step's state (the forward's ``h``, the backward's ``dgh``)
        through tagged words instead of meeting at a barrier."""
        return self.exchange == "flags" and self.num_h_tiles(hidden) > 1

    def rows_refusal(self, hidden: int, batch: int) -> str | None:
        """Why this configuration's backward cannot take ``W_hh`` by rows at ``hidden`` x ``batch``
        (None where it can): the warps split all the units of the partial product, and a step's
        partials, every slice's ``batch x hidden``, are indexed with 32-bit offsets."""
        if triton.next_power_of_2(hidden) // self.num_warps < 8:
            return (f"product='rows' splits the {hidden} units among the {self.num_warps} warps, at least 8 each "
                    f"(the tensor cores' narrowest tile): use fewer warps or product='columns'")
        if self.num_h_tiles(hidden) * batch * hidden >= 2**31:
            return (f"product='rows' indexes a step's partials (slices x batch x hidden) with 32-bit offsets: "
                    f"{self.num_h_tiles(hidden)} x {batch} x {hidden} is too many; use product='columns'")
        return None

    def num_b_tiles(self, batch: int) -> int:
        return triton.cdiv(batch, self.block_b)

    def num_k(self, reduction: int) -> int:
        """Chunks of ``block_k`` along a reduction of length ``reduction`` (H forward, 3H backward)."""
        return triton.cdiv(reduction, self.block_k)

    def validate(self, hidden: int, batch: int, dtype: torch.dtype | None = None, directions: int = 1) -> None:
        """Raise ValueError unless this configuration can run ``hidden`` x ``batch`` (of ``dtype``,
        when given) in ``directions`` directions per launch."""
        for name in ("block_b", "block_h", "block_k"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two >= 16 (tl.dot), got {value}")
        if self.num_programs < 1:
            raise ValueError(f"num_programs must be >= 1, got {self.num_programs}")
        if self.exchange not in EXCHANGES:
            raise ValueError(f"exchange must be one of {EXCHANGES}, got {self.exchange!r}")
        for name in ("split_k", "split_n", "num_warps"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two >= 1, got {value}")
        if self.block_k // self.split_k < 16:
            raise ValueError(
                f"block_k / split_k is the reduction one part of the product takes per chunk and must be >= 16 "
                f"(tl.dot), got {self.block_k} / {self.split_k}"
            )
        if self.block_h // self.split_n < 8:
            raise ValueError(
                f"block_h / split_n is the columns one part of the product takes and must be >= 8 (the tensor "
                f"cores' narrowest tile), got {self.block_h} / {self.split_n}"
            )
        if self.exchange == "flags" and not self.resident:
            raise ValueError("exchange='flags' needs resident=True (a step polls all its chunks at once, unrolled)")
        if self.product not in PRODUCTS:
            raise ValueError(f"product must be one of {PRODUCTS}, got {self.product!r}")
        if self.product == "rows" and (refusal := self.rows_refusal(hidden, batch)):
            raise ValueError(refusal)
        if dtype is not None and self.uses_ready_flags(hidden):
            word_dtype(dtype)
        check_step_size(batch, hidden, directions)
        if 3 * hidden * hidden >= 2**31:
            raise ValueError(
                f"W_hh of one direction must hold fewer than 2**31 elements (the kernels index it with 32-bit "
                f"offsets), got 3 x {hidden} x {hidden} = {3 * hidden * hidden}"
            )
        if self.resident and self.num_programs % self.num_h_tiles(hidden):
            raise ValueError(
                f"resident weights need num_programs to be a multiple of the {self.num_h_tiles(hidden)} "
                f"hidden slices, got {self.num_programs}"
            )

    def weight_bytes(self, hidden: int, dtype: torch.dtype) -> int:
        """Bytes of shared memory W_hh takes in one program (3 gates, the reduction padded to whole
        chunks), at :func:`resident_bytes_per_weight` of ``dtype``."""
        return self.block_h * self.num_k(3 * hidden) * self.block_k * resident_bytes_per_weight(dtype)


def launch_constexprs(
    config: PersistentConfig, hidden: int, batch: int, dtype: torch.dtype, *, backward: bool, reverse: bool,
    use_lengths: bool, precision: str,
) -> dict:
    """The constexprs both persistent kernels take, for ``config`` at ``hidden`` x ``batch`` (the
    forward's reduction runs over H, the backward's over 3H)."""
    flags = config.uses_ready_flags(hidden)
    constexprs = dict(
        REVERSE=reverse,
        USE_LENGTHS=use_lengths,
        RESIDENT=config.resident,
        BARRIER=config.grid_synchronised(hidden) and not flags,
        BLOCK_B=config.block_b,
        # The rows of a batch tile that hold sequences; batches of a tile or more share a compile.
        ROWS=min(config.block_b, triton.next_power_of_2(batch)),
        BLOCK_H=config.block_h,
        BLOCK_K=config.block_k,
        NUM_K=config.num_k(3 * hidden if backward else hidden),
        SPLIT_K=config.split_k,
        SPLIT_N=config.split_n,
        PRECISION=precision,
        ACC=accumulator_dtype(dtype),
    )
    return dict(constexprs, FLAGS=flags)


def check_step_size(batch: int, hidden: int, directions: int = 1) -> None:
    """The kernels index within one timestep with 32-bit offsets (time offsets are 64-bit)."""
    if batch * directions * 3 * hidden >= 2**31:
        raise ValueError(
            f"batch x directions x 3 x hidden must stay below 2**31 elements per timestep, got {batch} x "
            f"{directions} x 3 x {hidden} = {batch * directions * 3 * hidden}; split the batch"
        )


class DoesNotFit(RuntimeError):
    """A launch whose compiled kernel asks more of one SM than the device has, found before it runs
    (the planner then tries a smaller plan)."""

    def __init__(self, launch: Launch, resource: str, required: int, limit: int, device_name: str, message: str = ""):
        self.launch, self.resource, self.required, self.limit = launch, resource, required, limit
        super().__init__(message or (
            f"{launch.describe()} planned as {launch.config.label()} needs {required} of {resource} per program; "
            f"{device_name} allows {limit}"
        ))

    def short(self) -> str:
        """The plan and what it lacks, for a list of plans tried."""
        return f"{self.launch.config.label()} needs {self.required} of {self.resource}, {self.limit} allowed"


class Spills(DoesNotFit):
    """A launch that keeps its weights resident but whose compiled kernel spills registers to local
    memory, refused before it runs while :func:`refusing_spills` is in force: every step would
    then go through local memory for part of what the plan meant to keep in registers."""

    def __init__(self, launch: Launch, spilled: int, device_name: str):
        super().__init__(
            launch, "spilled bytes", spilled, 0, device_name,
            f"{launch.describe()} planned as {launch.config.label()} spills {spilled} B per thread to local memory "
            f"with its weights resident, on {device_name}",
        )

    def short(self) -> str:
        return f"{self.launch.config.label()} spills {self.required} B"


_spills_refused = contextvars.ContextVar("spills_refused", default=False)


@contextlib.contextmanager
def refusing_spills():
    """Inside the block, a resident-weights launch whose compiled kernel spills raises
    :class:`Spills` before it runs (the planner looks for a register setting that does not)."""
    token = _spills_refused.set(True)
    try:
        yield
    finally:
        _spills_refused.reset(token)


def check_fits(launch: Launch, shared: int, spilled: int, shared_limit: int, device_name: str) -> None:
    """Raise :class:`DoesNotFit` where ``launch``'s compiled kernel (``shared`` bytes of shared
    memory, ``spilled`` bytes of local memory per thread) exceeds a block's ``shared_limit``, or
    :class:`Spills` where it spills resident weights while spills are refused."""
    if shared > shared_limit:
        raise DoesNotFit(launch, "shared memory (bytes)", shared, shared_limit, device_name)
    if spilled and launch.config.resident and _spills_refused.get():
        raise Spills(launch, spilled, device_name)


_resources: dict = {}


def compiled_resources(launch: Launch, options: dict, device: torch.device) -> tuple[int, int, int]:
    """``(registers per thread, shared memory bytes, spilled bytes per thread)`` of ``launch``
    compiled with ``options`` (its launch options, so that the warm-up compiles exactly what is
    launched) for ``device``; raises :class:`DoesNotFit` where the device cannot run one program
    of it (:func:`check_fits`)."""
    # The tensors' dtypes are part of the compiled variant: bf16 and fp32 at the same constexprs
    # differ in shared memory and registers.
    dtypes = tuple(str(arg.dtype) for arg in launch.args if isinstance(arg, torch.Tensor))
    key = (launch.kernel.fn.__name__, device.index, dtypes, tuple(sorted(launch.constexprs.items())),
           tuple(sorted(options.items())))
    if key not in _resources:
        compiled = launch.kernel.warmup(*launch.args, grid=(1,), **options, **launch.constexprs)
        check_fits(launch, compiled.metadata.shared, 0, device_limits(device.index).shared_per_block, device_name(device))
        try:
            compiled._init_handles()
        except OutOfResources as error:
            raise DoesNotFit(launch, error.name, error.required, error.limit, device_name(device)) from error
        # Triton counts local memory in 32-bit words.
        _resources[key] = compiled.n_regs, compiled.metadata.shared, 4 * compiled.n_spills
    regs, shared, spilled = _resources[key]
    check_fits(launch, shared, spilled, device_limits(device.index).shared_per_block, device_name(device))
    return regs, shared, spilled


def new_sync_word(device: torch.device) -> torch.Tensor:
    """A fresh [counter, error] pair for one launch."""
    return torch.zeros(2, dtype=torch.int32, device=device)


@dataclasses.dataclass(frozen=True)
class Launch:
    """One persistent launch, decided once: the kernel, its arguments and constexprs, and the plan
    they come from. The launcher runs it; the compile report and the cost model compile exactly it."""

    kernel: object
    args: tuple
    constexprs: dict
    config: PersistentConfig
    directions: int
    synchronised: bool  # the programs wait for one another: the grid must be co-resident

    @property
    def programs(self) -> int:
        return self.directions * self.config.num_programs

    def arg(self, name: str):
        return self.args[self.kernel.arg_names.index(name)]

    def describe(self) -> str:
        T, B, H = (self.arg(name) for name in ("T", "B", "H"))
        return f"{self.kernel.fn.__name__} (T={T}, B={B}, H={H}, a grid of {self.programs} programs)"


def launch_persistent(launch: Launch) -> None:
    """Run ``launch`` over its grid.

    A launch whose compiled kernel does not fit the device (or spills resident weights while
    spills are refused) raises :class:`DoesNotFit` before it starts. A synchronised launch is refused if its grid cannot be co-resident, launched
    cooperatively, and its error word is watched for a stall (``kernels/stalls.py``).
    """
    sync = launch.arg("p_sync")
    # Triton launches on the current device: make it the tensors' (they may live on another GPU).
    with torch.cuda.device(sync.device) if sync.device.type == "cuda" else contextlib.nullcontext():
        if launch.synchronised:
            stalls.poll(sync.device)
        options = launch.config.compile_options()
        if launch.synchronised and not INTERPRET:
            options["launch_cooperative_grid"] = True
        if not INTERPRET:
            regs, shared, _ = compiled_resources(launch, options, sync.device)
            capacity = device_limits(sync.device.index).co_resident(regs, shared, launch.config.num_warps)
            if launch.synchronised and launch.programs > capacity:
                raise RuntimeError(
                    f"{launch.describe()} cannot be co-resident on {device_name(sync.device)} (at most {capacity} "
                    "programs fit); refusing to launch a kernel whose programs wait for one another and would hang"
                )
        launch.kernel[(launch.programs,)](*launch.args, **launch.constexprs, **options)
        if launch.synchronised:
            stalls.watch(sync, launch.describe())


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


def accumulator_dtype(dtype: torch.dtype, namespace=tl):
    """The dtype a kernel accumulates and carries its state in: fp64 for fp64 inputs, else fp32."""
    return namespace.float64 if dtype == torch.float64 else namespace.float32


def accumulator_state(tensor: torch.Tensor) -> torch.Tensor:
    """A row-major (B, H) copy of ``tensor`` in the accumulator dtype: the running state (or its
    gradient) a kernel reads and writes in place, whatever the strides of what the caller passed."""
    dtype = accumulator_dtype(tensor.dtype, torch)
    return torch.empty(tensor.shape, dtype=dtype, device=tensor.device).copy_(tensor)


# Tests set this so that an element a kernel fails to write is NaN, not whatever memory held.
POISON_OUTPUTS = False


def empty_output(shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if POISON_OUTPUTS:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)
