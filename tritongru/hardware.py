"""What the cost model assumes about a GPU: one table per GPU, every number with its source.

These are starting points for a model, not measurements of this project's kernels: figures that
others measured with micro-benchmarks, the vendor's specifications, and a few assumptions the
model needs and nobody has measured for these kernels yet (marked ``assumed``). A GPU run of the
perf suite is what calibrates them (``perf/NOTES.md``).
"""

from __future__ import annotations

import dataclasses

RRZE = "RRZE-HPC/gpu-benches"
HOPPER_BENCH = "Luo et al., Benchmarking and Dissecting the Nvidia Hopper GPU Architecture (arXiv 2402.13499)"


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

GPUS = {
    "h200": GPU(
        name="NVIDIA H200",
        arch=90,
        sms=Figure(132, "NVIDIA H200 specifications"),
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
        name="NVIDIA H100 SXM",
        arch=90,
        sms=Figure(132, "NVIDIA H100 SXM5 specifications"),
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


def gpu(name: str) -> GPU:
    try:
        return GPUS[name]
    except KeyError:
        raise ValueError(f"unknown GPU {name!r}; the cost model knows {', '.join(sorted(GPUS))}") from None
