"""The tagged words of the ready-flag exchange (``kernels/exchange.py``): values and tags survive a
round trip in every exchanged dtype, including negative values, the sign bit of the tag and its
wrap-around, and the host packs step 0 exactly as the kernel packs every later step."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from tritongru.kernels.exchange import pack_initial, pack_tagged, step_tag, unpack_tagged, word_dtype

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter checks; test_gpu.py runs the kernels")


@triton.jit
def _round_trip_kernel(p_values, p_words, p_back, p_tags, step, N: tl.constexpr):
    offs = tl.arange(0, N)
    WORD = p_words.dtype.element_ty
    words = pack_tagged(tl.load(p_values + offs), step_tag(step, WORD), WORD)
    tl.store(p_words + offs, words)
    tl.store(p_back + offs, unpack_tagged(words, p_values.dtype.element_ty))
    if WORD == tl.int32:
        tl.store(p_tags + offs, ((words >> 16) & 0xFFFF).to(tl.int64))
    else:
        tl.store(p_tags + offs, words >> 32)


# The interpreter's bf16 arithmetic is unreliable, but these are bit moves: fp16 stands for the
# 16-bit case here, and bf16 is checked on the host side only.
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "fp32"])
@pytest.mark.parametrize("step", [0, 1, 0x7FFF, 0xFFFF, 70_000], ids=lambda s: f"step{s}")
def test_values_and_tags_round_trip(dtype, step):
    torch.manual_seed(0)
    values = torch.randn(64).to(dtype)
    values[:4] = torch.tensor([-0.0, -1.0, float("inf"), -65504.0]).to(dtype)
    words = torch.empty(64, dtype=word_dtype(dtype))
    back = torch.empty(64, dtype=dtype)
    tags = torch.empty(64, dtype=torch.int64)
    _round_trip_kernel[(1,)](values, words, back, tags, step, N=64)
    assert torch.equal(back.view(torch.int16 if dtype == torch.float16 else torch.int32),
                       values.view(torch.int16 if dtype == torch.float16 else torch.int32))
    expected_tag = step & 0xFFFF if dtype == torch.float16 else step
    assert (tags == expected_tag).all()
    if step == 0:
        assert torch.equal(words, pack_initial(values, dtype))


@pytest.mark.parametrize("dtype, word", [(torch.bfloat16, torch.int32), (torch.float16, torch.int32),
                                         (torch.float32, torch.int64)], ids=["bf16", "fp16", "fp32"])
def test_host_packs_step_zero(dtype, word):
    h0 = torch.randn(3, 5, dtype=torch.float64)
    words = pack_initial(h0, dtype)
    bits = {torch.int32: torch.int16, torch.int64: torch.int32}[word]
    assert words.dtype == word and (words >> (8 * bits.itemsize) == 0).all(), "tag 0, no sign extension"
    assert torch.equal(words.to(bits).view(dtype), h0.to(dtype))


def test_fp64_has_no_word():
    with pytest.raises(ValueError, match="16- and 32-bit states .* got torch.float64; use exchange='barrier'"):
        word_dtype(torch.float64)
