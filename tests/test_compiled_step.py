"""Reading what one step executes from compiled code: SASS parsing and counting on listings with
known contents, the dots' layouts (the replication detector on the old, replicated form), and the
cost model's arithmetic."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tritongru.compiled_step import access_bytes, count_step, dot_layouts, loops, parse_sass, time_loop
from tritongru.cost_model import CallShape, call_cost, input_gemm_us, step_cost
from tritongru.hardware import GPUS, gpu

# A made-up time loop (0x100-0x1a0) around a two-deep HMMA chain and a third independent one,
# with a poll loop inside (0x170-0x180) and a loop without tensor-core work before it.
LISTING = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;                           /* 0x00000a0000017a02 */
        /*0010*/                   LDS R2, [R3] ;                                   /* 0x0000000003027984 */
        /*0020*/              @P0 BRA 0x10 ;                                        /* 0xfffffffc00fc0947 */
        /*0100*/                   LDSM.16.M88.4 R8, [R2+0x100] ;                   /* 0x000100000208783b */
        /*0110*/                   LDS.128 R12, [R4] ;                              /* 0x0000000004107984 */
        /*0120*/                   HMMA.16816.F32.BF16 R16, R8, R12, RZ ;           /* 0x0000000c0810723c */
        /*0130*/                   HMMA.16816.F32.BF16 R16, R8.reuse, R14, R16 ;    /* 0x0000000e0810723c */
        /*0140*/                   HMMA.16816.F32.BF16 R20, R8, R12, RZ ;           /* 0x0000000c0814723c */
        /*0150*/                   STS.U16 [R5], R16 ;                              /* 0x0000001005007388 */
        /*0160*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;                    /* 0x0000000000007b1d */
        /*0170*/                   LDG.E.STRONG.GPU R6, desc[UR4][R2.64] ;          /* 0x0000000402067981 */
        /*0180*/              @!P1 BRA 0x170 ;                                      /* 0xfffffffc00f89947 */
        /*0190*/                   ATOMG.E.ADD.STRONG.GPU PT, R7, desc[UR4][R2.64], R7 ;  /* 0x000000070207798a */
        /*01a0*/              @P2 BRA 0x100 ;                                       /* 0xfffffff800d42947 */
        /*01b0*/                   EXIT ;                                           /* 0x000000000000794d */
"""


def test_listing_is_parsed_into_instructions_and_loops():
    instructions = parse_sass(LISTING)
    assert len(instructions) == 15 and instructions[3].opcode == "LDSM.16.M88.4"
    assert instructions[2].predicate == "@P0" and instructions[2].branch_target() == 0x10
    assert instructions[13].operands == ("0x100",)
    assert sorted(loops(instructions)) == [(1, 2), (3, 13), (10, 11)]
    assert time_loop(instructions) == (3, 13)


def test_sm120_scheduling_annotations_are_not_operands():
    """sm_120 listings end instructions with scoreboard and scheduling annotations."""
    annotated = parse_sass(
        "        /*22f0*/       HMMA.16816.F32.BF16 R40, R88, R56, RZ     &req={0}     ?WAIT15_END_GROUP; /* 0x0 */\n"
        "        /*2300*/   @P3 BRA 0x22f0          ?trans5;           /* 0x0 */\n"
    )
    assert annotated[0].operands == ("R40", "R88", "R56", "RZ")
    assert annotated[1].branch_target() == 0x22F0 and time_loop(annotated) == (0, 1)


def test_step_counts_one_warps_pass_over_the_time_loop():
    counts = count_step(parse_sass(LISTING))
    assert counts.instructions == 11
    assert dict(counts.shared_read) == {"LDSM.16.M88.4": 512, "LDS.128": 32 * 16}
    assert dict(counts.shared_written) == {"STS.U16": 32 * 2}
    assert counts.mma_instructions == 3 and counts.mma_flops == 3 * 2 * 16 * 8 * 16
    assert counts.mma_chain == 2, "the second HMMA accumulates onto the first; the third is independent"
    assert counts.cta_barriers == 1 and counts.wait_loops == 1
    assert dict(counts.global_loads) == {"LDG.E.STRONG.GPU": 128} and counts.atomics["ATOMG.E.ADD.STRONG.GPU"] == 1


# A time loop (0x100-0x160) whose HMMA sit in an inner loop over chunks (0x110-0x140).
STREAMED = """
        /*0100*/                   LDG.E.128 R2, desc[UR4][R6.64] ;
        /*0110*/                   LDSM.16.M88.4 R8, [R2+0x100] ;
        /*0120*/                   HMMA.16816.F32.BF16 R16, R8, R12, R16 ;
        /*0130*/                   IADD3 R3, R3, 0x1, RZ ;
        /*0140*/              @P1 BRA 0x110 ;
        /*0150*/                   STG.E [R4.64], R16 ;
        /*0160*/              @P2 BRA 0x100 ;
"""


def test_inner_product_loops_count_once_per_chunk():
    once = count_step(parse_sass(STREAMED))
    chunks = count_step(parse_sass(STREAMED), product_trips=6)
    assert (once.mma_instructions, chunks.mma_instructions) == (1, 6)
    assert chunks.shared_read_bytes == 6 * 512 and chunks.instructions == 3 + 6 * 4
    assert chunks.global_load_bytes == once.global_load_bytes == 512, "the load outside the chunk loop runs once"
    assert chunks.mma_chain == 6 and chunks.wait_loops == 0


# A time loop (0x100-0x150) with a shuffle whose rarely taken fallback ptxas put after the kernel's
# end (0x1a0-0x1b0), branching back into the loop; between them, code that runs once after the loop.
COLD_BLOCK = """
        /*0100*/                   LDS R8, [R2] ;
        /*0110*/              @P3 BRA 0x1a0 ;
        /*0120*/                   SHFL.BFLY PT, R2, R3, 0x1, 0x1f ;
        /*0130*/                   HMMA.16816.F32.BF16 R16, R8, R12, R16 ;
        /*0140*/                   ATOMG.E.EXCH.STRONG.GPU PT, RZ, desc[UR4][R4.64], R16 ;
        /*0150*/              @P2 BRA 0x100 ;
        /*0160*/                   LDG.E.128.STRONG.SYS R20, desc[UR4][R6.64] ;
        /*0170*/                   HMMA.16816.F32.BF16 R16, R20, R12, R16 ;
        /*0180*/                   EXIT ;
        /*0190*/                   BRA 0x190 ;
        /*01a0*/                   WARPSYNC.COLLECTIVE R5, 0x1b0 ;
        /*01b0*/                   BRA 0x120 ;
"""


def test_a_cold_block_branching_back_is_not_the_time_loop():
    """Its span (0x120-0x1b0) is the longest and holds tensor-core work, but its body is the
    fallback alone: the time loop is the one whose body leads to its branch back, and the code
    after it (a load and a product) is not counted."""
    instructions = parse_sass(COLD_BLOCK)
    assert (2, 11) in loops(instructions)
    assert time_loop(instructions) == (0, 5)
    counts = count_step(instructions)
    assert counts.global_load_bytes == 0 and counts.mma_instructions == 1 and counts.instructions == 6


# sm_80's forms: an inner loop left by a conditional CALL.REL.NOINC past its unconditional branch
# back, the outer loop's branch back unconditional after a predicated EXIT; and a shuffle's
# BRA.DIV, taken only where the warp has diverged.
CALL_EXIT = """
        /*0000*/                   LDS R8, [R2] ;
        /*0010*/                   HMMA.16816.F32.BF16 R16, R8, R12, R16 ;
        /*0020*/              @P3 CALL.REL.NOINC 0x40 ;
        /*0030*/                   BRA 0x10 ;
        /*0040*/                   STS [R5], R16 ;
        /*0050*/             @!P3 EXIT ;
        /*0060*/                   BRA 0x0 ;
"""
DIVERGENT = """
        /*0000*/                   LDS R8, [R2] ;
        /*0010*/                   HMMA.16816.F32.BF16 R16, R8, R12, R16 ;
        /*0020*/                   BRA.DIV 0x60 ;
        /*0030*/                   SHFL.BFLY PT, R2, R3, 0x1, 0x1f ;
        /*0040*/              @P2 BRA 0x0 ;
        /*0050*/                   EXIT ;
        /*0060*/                   WARPSYNC.COLLECTIVE R5, 0x70 ;
        /*0070*/                   BRA 0x30 ;
"""


# sm_120's: a loop over chunks whose branch back takes its uniform predicate as an operand.
UNIFORM = """
        /*0000*/                   LDS R8, [R2] ;
        /*0010*/                   HMMA.16816.F32.BF16 R16, R8, R12, R16 ;
        /*0020*/                   BRA.U UP1, 0x10 ;
        /*0030*/                   STS [R5], R16 ;
        /*0040*/              @P2 BRA 0x0 ;
        /*0050*/                   EXIT ;
"""


@pytest.mark.parametrize("listing, loop", [(CALL_EXIT, (0, 6)), (DIVERGENT, (0, 4)), (UNIFORM, (0, 4))],
                         ids=["call-rel-noinc", "bra-div", "bra-u-operand"])
def test_conditional_transfers_stay_in_the_loops_body(listing, loop):
    assert time_loop(parse_sass(listing)) == loop


def test_a_loop_whose_body_cannot_be_followed_is_refused():
    """An exit this reader does not know (a made-up opcode in the place of CALL.REL.NOINC) cuts the
    outer loop's body short: refused, not counted as the inner loop alone."""
    with pytest.raises(ValueError, match="its body could not be followed"):
        time_loop(parse_sass(CALL_EXIT.replace("CALL.REL.NOINC", "JMPX.REL")))


def test_published_tagged_words_are_stores():
    """The ready-flag words are published by atomic exchange: 32 lanes x 4 bytes through L2."""
    counts = count_step(parse_sass(COLD_BLOCK))
    assert counts.atomics["ATOMG.E.EXCH.STRONG.GPU"] == 1 and dict(counts.global_stores) == {"ATOMG.E.EXCH.STRONG.GPU": 128}


def test_access_widths():
    def width(text):
        return access_bytes(parse_sass(f"        /*0000*/ {text} ;")[0])

    assert width("LDSM.16.M88 R0, [R1]") == 128 and width("LDSM.16.MT88.2 R0, [R1]") == 256
    assert width("LDS.64 R0, [R1]") == 256 and width("STS [R1], R0") == 128 and width("LDG.E.128 R0, desc[UR4][R2.64]") == 512


def test_a_listing_without_tensor_core_loops_has_no_time_loop():
    with pytest.raises(ValueError, match="no loop of this kernel holds a tensor-core instruction"):
        time_loop(parse_sass(LISTING.split("/*0100*/")[0]))


# Compiles both forms of tests/step_forms.py for sm_90 (8 warps, K=256, N=16) and reports what the
# readers find: the dots' replication, and the per-warp counts of one pass over the time loop.
_FORMS = """
import json, sys, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
sys.path.insert(0, "tests")
import step_forms
from tritongru.compile_report import Compiled, _tool
from tritongru.compiled_step import count_step, dot_layouts, parse_sass
import subprocess, tempfile

found = {}
pointers = {"p_h": "*bf16", "p_w": "*bf16", "p_out": "*fp32", "T": "i32"}
for name, extra in (("three_gate_dots_kernel", {}), ("split_dots_kernel", {"SPLIT_K": 8})):
    kernel = getattr(step_forms, name)
    constexprs = {"K": 256, "N": 16, **extra}
    signature = {**pointers, **{k: "constexpr" for k in constexprs}}
    compiled = triton.compile(ASTSource(kernel, signature, constexprs), target=GPUTarget("cuda", 90, 32), options={"num_warps": 8})
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"]); cubin.flush()
        sass = subprocess.run([_tool("cuobjdump"), "-sass", cubin.name], capture_output=True, text=True, check=True).stdout
    counts = count_step(parse_sass(sass))
    found[name] = {
        "replication": [d.replication for d in dot_layouts(compiled.asm["ttgir"])],
        "mma": counts.mma_instructions, "chain": counts.mma_chain, "ldsm": counts.shared_read.get("LDSM.16.M88.4", 0),
    }
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def forms():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", _FORMS], env=env, capture_output=True, text=True, timeout=600,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_replication_detector_flags_the_old_three_gate_form(forms):
    old = forms["three_gate_dots_kernel"]
    assert old["replication"] == [8, 8, 8]
    # Each warp issues the whole step: 3 gates x (256 / 16) k-steps x 2 n8 tiles, all in one 48-deep
    # chain (the sum of the three dots accumulates into one tile), and reads the whole 16 x 256
    # state tile from shared memory itself: 8 KiB a warp, where one copy would do.
    assert old["mma"] == 3 * 16 * 2 and old["chain"] == 48 and old["ldsm"] == 16 * 256 * 2


def test_split_form_gives_every_warp_its_own_part(forms):
    split = forms["split_dots_kernel"]
    assert split["replication"] == [1]
    # One gate, 256 / 8 = 32 of the reduction per warp: 2 k-steps x 2 n8 tiles, a chain of 2, and
    # its own eighth of the state tile.
    assert split["mma"] == 4 and split["chain"] == 2 and split["ldsm"] == 16 * 256 * 2 // 8


def test_dot_layouts_are_read_from_ttgir():
    ttgir = """
#mma = #ttg.nvidia_mma<{versionMajor = 2, versionMinor = 0, warpsPerCTA = [8, 1], instrShape = [16, 8]}>
#mma1 = #ttg.nvidia_mma<{versionMajor = 2, versionMinor = 0, warpsPerCTA = [8, 1, 1], instrShape = [1, 16, 8]}>
    %a = tt.dot %x, %y, %z, inputPrecision = tf32 : tensor<16x64xbf16, #ttg.dot_op<{opIdx = 0, parent = #mma, kWidth = 8}>> * tensor<64x16xbf16, #ttg.dot_op<{opIdx = 1, parent = #mma, kWidth = 8}>> -> tensor<16x16xf32, #mma> loc(#loc1)
    %b = tt.dot %x, %y, %z : tensor<8x16x32xbf16, #ttg.dot_op<{opIdx = 0, parent = #mma1, kWidth = 8}>> * tensor<8x32x16xbf16, #ttg.dot_op<{opIdx = 1, parent = #mma1, kWidth = 8}>> -> tensor<8x16x16xf32, #mma1> loc(#loc2)
"""
    first, second = dot_layouts(ttgir)
    assert first.shape == (16, 16) and first.replication == 8
    assert second.shape == (8, 16, 16) and second.warps_per_cta == (8, 1, 1) and second.replication == 1


def test_step_cost_adds_exchange_to_the_longest_throughput_term():
    counts = count_step(parse_sass(LISTING))
    h200 = gpu("h200")
    cost = step_cost(counts, num_warps=8, exchange="flags", gpu=h200)
    cycles = 1.98e3  # per microsecond
    assert cost.shared == pytest.approx(8 * (512 + 512 + 64) / 128 / cycles)
    assert cost.issue == pytest.approx(11 * 2 / cycles)
    assert cost.tensor == pytest.approx(max(3 * 2 * 8, 2 * 32) / cycles)
    assert cost.l2 == pytest.approx(8 * 128 / 7000e3)  # one 128-byte load per warp, one program
    assert cost.cta_barriers == pytest.approx(24 / cycles)
    assert cost.exchange == pytest.approx(1.5 * 500 / cycles)
    assert cost.step == pytest.approx(cost.exchange + max(cost.shared, cost.issue, cost.tensor, cost.l2) + cost.cta_barriers)
    assert step_cost(counts, 8, "flags", h200, programs=64).l2 == pytest.approx(64 * cost.l2)
    assert cost.bound == "exchange"
    barrier = step_cost(counts, num_warps=8, exchange="barrier", gpu=h200, tiles=2)
    assert barrier.exchange == pytest.approx(1.13 + 500 / cycles) and barrier.step == pytest.approx(barrier.exchange + 2 * barrier.compute)
    with pytest.raises(ValueError, match="exchange must be one of"):
        step_cost(counts, 8, "carrier pigeon", h200)


def test_call_cost_counts_steps_gemms_launches_and_syncs():
    h200 = gpu("h200")
    shape = CallShape(seq_len=100, batch=4, input_size=8, hidden=16, layers=3, directions=2)
    one_launch = call_cost(shape, 1.0, h200, backward_step_us=2.0, directions_per_launch=2, host_syncs=6)
    assert one_launch.recurrence == pytest.approx(100 * 3 * (1.0 + 2.0))
    assert one_launch.launches == pytest.approx(2.45 * 2 * 3 * 2)
    assert one_launch.host_syncs == pytest.approx(6 * 15)
    two_launches = call_cost(shape, 1.0, h200, directions_per_launch=1)
    assert two_launches.recurrence == pytest.approx(100 * 6 * 1.0)
    # A GEMM of 400 x 8 x 96 moves more than it computes on an H200: bandwidth-bound.
    moved = (400 * 8 + 8 * 96 + 400 * 96) * 2
    assert input_gemm_us(shape, 0, h200) == pytest.approx(moved / 4300e3)


def test_every_hardware_figure_has_a_source():
    for name, card in GPUS.items():
        for field, figure in card.figures().items():
            assert figure.source and not math.isnan(figure.value), f"{name}.{field}"
