"""The GPUs tritongru plans for without one at hand, and what the cost model assumes about them.

:data:`KNOWN_GPUS` names every GPU the compile report can plan and check ahead of time: its compute
capability and SM count (the vendor's specification); the per-SM limits follow from the compute
capability (:func:`tritongru.kernels.limits.arch_limits`). :data:`GPUS` holds the cost model's
figures for the GPUs it prices, every number with its source.

The cost figures are starting points for a model, not measurements of this project's kernels:
figures that others measured with micro-benchmarks, the vendor's specifications, and assumptions
the model needs and nobody has measured for these kernels yet (marked ``assumed``; off Hopper
most are the H200's). A GPU run of the perf suite is what calibrates them (``perf/NOTES.md``).
The B200 has no cost figures yet: neither its clock nor its mma.sync rate is published in a form
this model can cite. The RTX 5090's clock and memory bandwidth are; its mma.sync rate is assumed
to be the RTX 4090's per SM and clock.
"""

from __future__ import annotations

import dataclasses

from .kernels.limits import PROGRAMMING_GUIDE, DeviceLimits, arch_limits

RRZE = "RRZE-HPC/gpu-benches"
HOPPER_BENCH = "Luo et al., Benchmarking and Dissecting the Nvidia Hopper GPU Architecture (arXiv 2402.13499)"


@dataclasses.dataclass(frozen=True)
class KnownGPU:
    """A GPU the planner can be run for ahead of time (``--gpu NAME``)."""

    name: str  # as the driver names it
    arch: int
    sms: int
    source: str

    @property
    def limits(self) -> DeviceLimits:
        return arch_limits(self.arch, self.sms)

    def limits_source(self) -> str:
        return f"{self.sms} SMs: {self.source}; per-SM limits of sm_{self.arch}: {PROGRAMMING_GUIDE}"


def _spec(product: str) -> str:
    return f"NVIDIA {product} specifications"


KNOWN_GPUS = {
    "a100": KnownGPU("NVIDIA A100", 80, 108, _spec("A100 Tensor Core GPU")),
    "a10": KnownGPU("NVIDIA A10", 86, 72, _spec("A10 Tensor Core GPU")),
    "rtx3090": KnownGPU("NVIDIA GeForce RTX 3090", 86, 82, "NVIDIA Ampere GA102 GPU Architecture whitepaper"),
    "l4": KnownGPU("NVIDIA L4", 89, 58, "NVIDIA Ada GPU Architecture whitepaper (AD104 in L4)"),
    "l40s": KnownGPU("NVIDIA L40S", 89, 142, _spec("L40S")),
    "rtx4090": KnownGPU("NVIDIA GeForce RTX 4090", 89, 128, "NVIDIA Ada GPU Architecture whitepaper"),
    "h100-sxm": KnownGPU("NVIDIA H100 SXM", 90, 132, _spec("H100 Tensor Core GPU (SXM5)")),
    "h100-pcie": KnownGPU("NVIDIA H100 PCIe", 90, 114, _spec("H100 Tensor Core GPU (PCIe)")),
    "h200": KnownGPU("NVIDIA H200", 90, 132, _spec("H200 Tensor Core GPU")),
    "b200": KnownGPU("NVIDIA B200", 100, 148, "NVIDIA Blackwell Architecture Technical Brief (B200: 148 SMs)"),
    "rtx5090": KnownGPU("NVIDIA GeForce RTX 5090", 120, 170, "NVIDIA RTX Blackwell GPU Architecture whitepaper"),
}


def known_gpu(name: str) -> KnownGPU:
    try:
        return KNOWN_GPUS[name]
    except KeyError:
        raise ValueError(f"unknown GPU {name!r}; known: {', '.join(KNOWN_GPUS)}") from None


def gpus_of_arch(arch: int) -> list[str]:
    """The known GPUs of compute capability ``arch``."""
    names = [name for name, known in KNOWN_GPUS.items() if known.arch == arch]
    if not names:
        arches = sorted({known.arch for known in KNOWN_GPUS.values()})
        raise ValueError(f"no known GPU of sm_{arch}; the table has sm_{', sm_'.join(map(str, arches))}")
    return names


@dataclasses.dataclass(frozen=True)
class Figure:
    value: float
    source: str


@dataclasses.dataclass(frozen=True)
class GPU:
    """One GPU's figures for the model (clock in GHz, latencies in cycles, times in microseconds)."""

    name: str
    arch: int  # compute capability, e.g. 90
    sms: Figure
    clock_ghz: Figure
    shared_bytes_per_clock: Figure  # per SM
    issue_per_clock: Figure  # warp instructions per SM sub-partition and clock
    mma_latency: Figure  # cycles from an mma.sync's issue to a dependent one
    mma_issue: Figure  # cycles an SM sub-partition is busy per m16n8k16 mma.sync
    cta_barrier: Figure  # cycles a bar.sync costs when all warps arrive together
    l2_round_trip: Figure  # cycles of a load that misses L1 and hits a far L2 partition
    l2_bandwidth_gbs: Figure  # what all SMs together read from L2
    hbm_bandwidth_gbs: Figure
    tensor_tflops_bf16: Figure  # dense
    grid_barrier_us: Figure  # an atomic-counter barrier across ~130 CTAs, per step
    launch_us: Figure  # one kernel launched back to back with the next
    graph_launch_us: Figure  # one kernel node replayed in a CUDA graph
    host_sync_us: Figure  # reading one word back: a device sync and a copy

    def cycles_to_us(self, cycles: float) -> float:
        return cycles / (self.clock_ghz.value * 1e3)

    def figures(self) -> dict[str, Figure]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if isinstance(getattr(self, field.name), Figure)}


_HOPPER_SHARED = dict(
    shared_bytes_per_clock=Figure(128, f"{RRZE} README (V100-H100 shared-memory bandwidth per SM)"),
    issue_per_clock=Figure(1, "one warp instruction per clock per SM sub-partition (NVIDIA Hopper tuning guide; 4 per SM)"),
    mma_latency=Figure(32, f"assumed, the order of mma.sync latencies reported for Ampere and Hopper ({HOPPER_BENCH})"),
    mma_issue=Figure(8, "assumed: a sub-partition's 1024 FLOP/clock at the wgmma rate give 4 cycles per m16n8k16; "
                        "mma.sync reaches about half of it on Hopper"),
    cta_barrier=Figure(24, "assumed: one bar.sync with 8 warps arriving together (tens of cycles); calibrate on a GPU"),
    l2_round_trip=Figure(500, f"{RRZE} gpu-latency (GH200: ~280 cycles near, ~480-520 far L2 partition)"),
    l2_bandwidth_gbs=Figure(7000, "assumed: published H100 L2 read bandwidths range from ~5.5 to ~12 TB/s "
                                  "(chipsandcheese.com, 'Nvidia's H100: Funny L2, and Tons of Bandwidth', and others); "
                                  "calibrate on a GPU"),
)

def _known(name: str) -> dict:
    known = KNOWN_GPUS[name]
    return dict(name=known.name, arch=known.arch, sms=Figure(known.sms, known.source))


GPUS = {
    "h200": GPU(
        **_known("h200"),
        clock_ghz=Figure(1.98, f"{RRZE} (H200 / GH200 SM clock up to 1.98 GHz)"),
        hbm_bandwidth_gbs=Figure(4300, "copy bandwidth measured on an H200 (shared/design/persistent-gru.md, section 7)"),
        tensor_tflops_bf16=Figure(790, "dense bf16 measured on an H200 (shared/design/persistent-gru.md, section 7)"),
        grid_barrier_us=Figure(1.13, f"{RRZE} gpu-small-kernels (H200: atomic-counter barrier 1.04-1.22 us, "
                                     "grid.sync 1.13-1.27 us per step, ~130 CTAs)"),
        launch_us=Figure(2.45, f"{RRZE} gpu-small-kernels (H200: back-to-back launches ~2.4-2.5 us per kernel)"),
        graph_launch_us=Figure(1.3, f"{RRZE} gpu-small-kernels (H200: ~1.3 us per kernel node in a CUDA graph)"),
        host_sync_us=Figure(15, "assumed: cudaStreamSynchronize plus a 4-byte copy back, ~10-30 us"),
        **_HOPPER_SHARED,
    ),
    "h100-sxm": GPU(
        **_known("h100-sxm"),
        clock_ghz=Figure(1.98, "NVIDIA H100 SXM5 specifications (max boost 1.98 GHz)"),
        hbm_bandwidth_gbs=Figure(3350, "NVIDIA H100 SXM5 specifications (HBM3 3.35 TB/s peak)"),
        tensor_tflops_bf16=Figure(989, "NVIDIA H100 SXM5 specifications (dense bf16)"),
        grid_barrier_us=Figure(1.13, f"assumed as the H200's ({RRZE}): the same SMs, L2 and clock"),
        launch_us=Figure(2.45, "assumed as the H200's"),
        graph_launch_us=Figure(1.3, "assumed as the H200's"),
        host_sync_us=Figure(15, "assumed: cudaStreamSynchronize plus a 4-byte copy back, ~10-30 us"),
        **_HOPPER_SHARED,
    ),
}


def _from_specifications(name: str, clock_ghz: Figure, hbm_bandwidth_gbs: Figure, tensor_tflops_bf16: Figure,
                         mma_issue: Figure | None = None) -> GPU:
    """A GPU priced from its specifications (clock, memory bandwidth, dense bf16 peak) and, for
    what no one has measured on it for these kernels, the Hopper figures, each marked as such."""
    known = KNOWN_GPUS[name]
    hopper = GPUS["h200"]
    if mma_issue is None:
        # An m16n8k16 mma is 4096 FLOP; the peak spreads over 4 sub-partitions per SM.
        per_clock = tensor_tflops_bf16.value * 1e12 / (known.sms * 4 * clock_ghz.value * 1e9)
        mma_issue = Figure(round(4096 / per_clock, 1), f"derived: 4096 FLOP per m16n8k16 at the dense bf16 peak "
                                                       f"({tensor_tflops_bf16.value} TFLOPS) over {known.sms} x 4 sub-partitions")
    scale = known.sms * clock_ghz.value / (hopper.sms.value * hopper.clock_ghz.value)

    def as_hopper(field: str) -> Figure:
        return Figure(getattr(hopper, field).value, f"assumed as the H200's ({getattr(hopper, field).source})")

    return GPU(
        **_known(name), clock_ghz=clock_ghz, hbm_bandwidth_gbs=hbm_bandwidth_gbs, tensor_tflops_bf16=tensor_tflops_bf16,
        mma_issue=mma_issue,
        l2_bandwidth_gbs=Figure(round(hopper.l2_bandwidth_gbs.value * scale), "assumed: the H200's figure scaled by SMs x clock"),
        **{field: as_hopper(field) for field in ("shared_bytes_per_clock", "issue_per_clock", "mma_latency", "cta_barrier",
                                                 "l2_round_trip", "grid_barrier_us", "launch_us", "graph_launch_us",
                                                 "host_sync_us")},
    )


# Priced from specifications: (clock GHz, memory GB/s, dense bf16 TFLOPS, where each was published).
# The GeForce parts' peaks are those with fp32 accumulation, which runs at half their fp16 rate.
_ADA = "NVIDIA Ada GPU Architecture whitepaper (RTX 4090)"
_GA102 = "NVIDIA Ampere GA102 GPU Architecture whitepaper (RTX 3090)"
_SPECIFICATIONS = {
    "a100": (1.41, 2039, 312, _spec("A100 (80 GB SXM)")),
    "a10": (1.695, 600, 125, _spec("A10")),
    "l4": (2.04, 300, 121, _spec("L4")),
    "l40s": (2.52, 864, 362, _spec("L40S")),
    "rtx4090": (2.52, 1008, 165.2, _ADA),
    "rtx3090": (1.695, 936, 71, _GA102),
    "h100-pcie": (1.755, 2000, 756, _spec("H100 PCIe")),
}
GPUS.update({
    name: _from_specifications(
        name, Figure(clock, f"{source} (boost clock)"), Figure(memory, f"{source} (memory bandwidth)"),
        Figure(tflops, f"{source} (dense bf16)"),
        # Hopper's mma.sync runs at about half its wgmma peak: the H200's figure, not the peak's.
        mma_issue=_HOPPER_SHARED["mma_issue"] if KNOWN_GPUS[name].arch == 90 else None)
    for name, (clock, memory, tflops, source) in _SPECIFICATIONS.items()
})


# The RTX 5090's tensor peaks are published for FP4 and with sparsity: its dense bf16 rate with
# fp32 accumulation is the RTX 4090's per SM and clock (32 cycles per m16n8k16), assumed.
_RTX5090_CLOCK, _RTX5090_SMS = 2.41, KNOWN_GPUS["rtx5090"].sms
GPUS["rtx5090"] = _from_specifications(
    "rtx5090", Figure(_RTX5090_CLOCK, "NVIDIA GeForce RTX 5090 specifications (boost clock)"),
    Figure(1792, "NVIDIA RTX Blackwell GPU Architecture whitepaper (memory bandwidth)"),
    Figure(round(4096 / 32 * 4 * _RTX5090_SMS * _RTX5090_CLOCK / 1e3, 1),
           "assumed: the RTX 4090's mma.sync rate per SM and clock (32 cycles per m16n8k16, fp32 accumulation at "
           "half rate) over 170 SMs at 2.41 GHz"),
)


def gpu(name: str) -> GPU:
    try:
        return GPUS[name]
    except KeyError:
        raise ValueError(f"unknown GPU {name!r}; the cost model knows {', '.join(sorted(GPUS))}") from None
