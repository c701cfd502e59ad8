"""What a GPU allows one launch: its SMs and the per-SM limits that decide whether a compiled
variant fits at all and how many of its programs can be resident at once.

At run time the figures come from the device (``torch.cuda.get_device_properties``); ahead of time,
without a GPU, from the compute capability's row of the CUDA C++ Programming Guide's table
"Technical Specifications per Compute Capability" (:data:`ARCH_LIMITS`) and a known SM count.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import triton

KiB = 1024
PROGRAMMING_GUIDE = 'CUDA C++ Programming Guide, "Technical Specifications per Compute Capability"'


@dataclasses.dataclass(frozen=True)
class DeviceLimits:
    """One GPU's limits for a launch. ``arch`` is the compute capability as ``10 x major + minor``;
    ``shared_per_block`` is the opt-in maximum one block may take, ``shared_per_sm`` what all
    blocks on an SM share (each also pays ``reserved_shared_per_block`` to the system)."""

    arch: int
    sms: int
    shared_per_block: int
    shared_per_sm: int
    max_threads_per_sm: int
    max_blocks_per_sm: int
    regs_per_sm: int = 64 * KiB
    reserved_shared_per_block: int = 1 * KiB

    def programs_per_sm(self, n_regs: int, shared: int, num_warps: int) -> int:
        """How many programs of a compiled kernel (``n_regs`` per thread, ``shared`` bytes) fit on
        one SM at once; 0 where one does not fit at all."""
        if shared > self.shared_per_block:
            return 0
        # Registers are allocated per warp in units of 256.
        regs_per_warp = triton.cdiv(max(n_regs, 1) * 32, 256) * 256
        by_regs = self.regs_per_sm // (regs_per_warp * num_warps)
        by_threads = self.max_threads_per_sm // (32 * num_warps)
        by_shared = self.shared_per_sm // (shared + self.reserved_shared_per_block)
        return max(0, min(by_regs, by_threads, by_shared, self.max_blocks_per_sm))

    def co_resident(self, n_regs: int, shared: int, num_warps: int) -> int:
        """The largest grid of such programs that can be resident at once."""
        return self.sms * self.programs_per_sm(n_regs, shared, num_warps)

    def describe(self) -> str:
        return (f"sm_{self.arch}, {self.sms} SMs, {self.shared_per_block} B of shared memory per block, "
                f"{self.max_threads_per_sm} threads per SM")


# Per compute capability (every row: PROGRAMMING_GUIDE): shared memory per SM, resident threads and
# blocks per SM. A block may opt in to all of an SM's shared memory but the 1 KiB the system keeps.
ARCH_LIMITS = {
    80: dict(shared_per_sm=164 * KiB, max_threads_per_sm=2048, max_blocks_per_sm=32),
    86: dict(shared_per_sm=100 * KiB, max_threads_per_sm=1536, max_blocks_per_sm=16),
    87: dict(shared_per_sm=164 * KiB, max_threads_per_sm=1536, max_blocks_per_sm=16),
    89: dict(shared_per_sm=100 * KiB, max_threads_per_sm=1536, max_blocks_per_sm=24),
    90: dict(shared_per_sm=228 * KiB, max_threads_per_sm=2048, max_blocks_per_sm=32),
    100: dict(shared_per_sm=228 * KiB, max_threads_per_sm=2048, max_blocks_per_sm=32),
    103: dict(shared_per_sm=228 * KiB, max_threads_per_sm=2048, max_blocks_per_sm=32),
    120: dict(shared_per_sm=100 * KiB, max_threads_per_sm=1536, max_blocks_per_sm=24),
}
# The fewest resident blocks per SM of any architecture the kernels support: the bound used for a
# GPU newer than this table (it only matters for grids of several programs per SM).
FEWEST_BLOCKS_PER_SM = min(row["max_blocks_per_sm"] for row in ARCH_LIMITS.values())


def arch_limits(arch: int, sms: int) -> DeviceLimits:
    """The limits of a GPU of compute capability ``arch`` with ``sms`` SMs, from the table."""
    try:
        row = ARCH_LIMITS[arch]
    except KeyError:
        known = ", ".join(f"sm_{a}" for a in sorted(ARCH_LIMITS))
        raise ValueError(f"no limits known for sm_{arch}; the table has {known}") from None
    return DeviceLimits(arch=arch, sms=sms, shared_per_block=row["shared_per_sm"] - 1 * KiB, **row)


@functools.lru_cache(maxsize=None)
def device_limits(index: int) -> DeviceLimits:
    """The limits of CUDA device ``index``, as its driver reports them (the table's figures for
    what an older PyTorch's device properties lack)."""
    props = torch.cuda.get_device_properties(index)
    arch = 10 * props.major + props.minor
    table = arch_limits(arch, props.multi_processor_count) if arch in ARCH_LIMITS else None

    def reported(name: str, field: str) -> int:
        value = getattr(props, name, None)
        if value is None and table is None:
            raise RuntimeError(f"{props.name} (sm_{arch}) does not report {name}, and sm_{arch} is not in the limits table")
        return value if value is not None else getattr(table, field)

    return DeviceLimits(
        arch=arch,
        sms=props.multi_processor_count,
        shared_per_block=reported("shared_memory_per_block_optin", "shared_per_block"),
        shared_per_sm=reported("shared_memory_per_multiprocessor", "shared_per_sm"),
        max_threads_per_sm=reported("max_threads_per_multi_processor", "max_threads_per_sm"),
        # Not among torch's device properties: the table's, else the fewest of any architecture.
        max_blocks_per_sm=table.max_blocks_per_sm if table else FEWEST_BLOCKS_PER_SM,
        regs_per_sm=reported("regs_per_multiprocessor", "regs_per_sm"),
    )
