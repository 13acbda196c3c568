"""The in-graph band block lists (backends/flex_band.py) equal the host closed form, eagerly
and compiled with dynamic shapes (Inductor, one graph for every length)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch._dynamo.testing import CompileCounterWithBackend

import sparsetorch.attention as A
from sparsetorch.attention.backends.flex_band import (
    band_block_lists,
    band_flat_blocks,
    compiled_band_attention,
)
from sparsetorch.attention.layout import FlexBlocks, block_mask_from_flat
from tests.attention.helpers import block_mask_equals_host, equal_lists, flex_blocks_equal

# (n, lo, width, bq, bk): any non-empty band lo <= i - j <= lo + width, also reaching past +-n
BANDS = (
    st.integers(1, 200),
    st.integers(-300, 300),
    st.integers(0, 300),
    st.integers(1, 40),
    st.integers(1, 40),
)


def _equal_to_host(lists, n, bq, bk, lo, hi):
    host = A.band(lo, hi).flex_blocks(n, (bq, bk))
    equal_lists(lists[0], lists[1], host.kv_num, host.kv_idx)
    equal_lists(lists[2], lists[3], host.full_kv_num, host.full_kv_idx)


def _flat_equal_to_host(flat, n, bq, bk, lo, hi):
    """Both sides, partial and full, as FlexAttention reads them from the flat buffer."""
    host = A.band(lo, hi).flex_blocks(n, (bq, bk))
    flex_blocks_equal(FlexBlocks.from_flat(n, (bq, bk), flat), host)


@settings(max_examples=300, deadline=None)
@given(*BANDS)
def test_band_block_lists_equal_the_host_closed_form(n, lo, width, bq, bk):
    hi = lo + width  # any non-empty band, also reaching past +-n
    _equal_to_host(band_block_lists(n, bq, bk, lo, hi), n, bq, bk, lo, hi)


@settings(max_examples=300, deadline=None)
@given(*BANDS)
def test_flat_block_lists_equal_the_host_build_on_both_sides(n, lo, width, bq, bk):
    hi = lo + width
    flat = band_flat_blocks(n, (bq, bk), lo, hi, None)
    nqb, nkb = math.ceil(n / bq), math.ceil(n / bk)
    assert flat.shape == (2 * (nqb + nkb) + 4 * nqb * nkb,)
    _flat_equal_to_host(flat, n, bq, bk, lo, hi)


def test_flat_block_lists_are_one_kernel_for_every_length():
    """One pointwise expression: Inductor writes the whole buffer in one kernel (each kernel
    is a launch on the GPU, paid on a window's first call at a length)."""
    import torch._inductor.metrics as metrics

    counter = CompileCounterWithBackend("inductor")
    build = torch.compile(
        lambda x: band_flat_blocks(x.shape[0], (128, 64), -300, 500, x.device),
        backend=counter,
        dynamic=True,
    )
    metrics.reset()
    for n in (1000, 4096, 5000):
        _flat_equal_to_host(build(torch.empty(n)), n, 128, 64, -300, 500)
    assert counter.frame_count == 1
    assert metrics.generated_kernel_count == 1


def test_compiled_with_dynamic_shapes_one_graph_for_every_length():
    counter = CompileCounterWithBackend("inductor")
    build = torch.compile(
        lambda x: band_block_lists(x.shape[0], 128, 128, -512, 512, x.device),
        backend=counter,
        dynamic=True,
    )
    for n in (1000, 4096, 5000, 16384):
        _equal_to_host(build(torch.empty(n)), n, 128, 128, -512, 512)
    assert counter.frame_count == 1


def test_in_graph_band_attention_equals_masked_attention():
    attend = compiled_band_attention()
    g = torch.Generator().manual_seed(0)
    for n in (1000, 1500):
        q, k, v = (torch.randn(1, 2, n, 16, generator=g) for _ in range(3))
        out, flat = attend(q, k, v, -100, 100, (128, 128), 0.25, None)
        mask = A.local(100).mask(n)
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.25)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
        _flat_equal_to_host(flat, n, 128, 128, -100, 100)  # the lists it used, returned


def test_a_window_builds_in_the_graph_once_per_length_and_keeps_those_lists(monkeypatch):
    """The routing of the flex backend (CUDA only; here on the CPU, without gradients): a
    window's first call at a length builds its lists in the compiled call and caches them as
    the length's BlockMask; later calls use it and build nothing; other patterns build on the
    host."""
    from sparsetorch.attention.backends import flex

    monkeypatch.setattr(flex, "IN_GRAPH_DEVICES", {"cuda", "cpu"})
    monkeypatch.setattr(flex, "_MASKS", flex._MaskCache())
    calls = []

    def counted():
        calls.append(1)
        return compiled_band_attention()

    monkeypatch.setattr(flex, "compiled_band_attention", counted)
    g = torch.Generator().manual_seed(1)

    def check(pattern, n):
        q, k, v = (torch.randn(1, 2, n, 16, generator=g) for _ in range(3))
        with torch.no_grad():
            out = flex.flex_attention(q, k, v, pattern, 0.25)
        mask = pattern.mask(n)
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.25)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)

    window = A.local(100)
    check(window, 1000)
    assert len(calls) == 1 and len(flex._MASKS) == 1
    kept = flex._MASKS.get((window, 1000, torch.device("cpu"), (128, 128)))
    block_mask_equals_host(kept, window, 1000, 128)
    monkeypatch.setattr(A.Band, "flex_blocks", lambda *a: pytest.fail("built on the host"))
    check(A.local(100), 1000)  # an equal pattern: the kept lists, no build at all
    assert len(calls) == 1
    check(window, 1200)  # a new length: in the graph again
    assert len(calls) == 2 and len(flex._MASKS) == 2
    monkeypatch.undo()


def test_a_kept_mask_of_inference_tensors_is_not_used_where_gradients_are_needed():
    """FlexAttention saves its block lists for backward, which inference tensors refuse: lists
    a window kept from a call under inference mode are rebuilt for a call with gradients; a
    host-built mask is always made of normal tensors."""
    from sparsetorch.attention.backends import flex

    with torch.inference_mode():
        made = A.local(8).flex_blocks(100, 16).to_block_mask(None)
        host = flex.block_mask(A.local(8) | A.global_tokens([0]), 100, torch.device("cpu"), 16)
    assert not flex._usable(made, needs_grad=True)
    assert flex._usable(made, needs_grad=False)
    assert not host.kv_num_blocks.is_inference() and flex._usable(host, needs_grad=True)
    assert not flex._usable(None, needs_grad=False)


def test_a_block_mask_straight_from_a_flat_buffer_equals_the_one_through_flexblocks():
    """The strided views the first call keeps equal the FlexBlocks views (every entry), also
    on a non-square grid and from a buffer that starts inside its storage."""
    n, block, lo, hi = 1000, (128, 64), -300, 500
    flat = band_flat_blocks(n, block, lo, hi, None)
    shifted = torch.cat([torch.full((3,), -7, dtype=torch.int32), flat])[3:]
    ours = block_mask_from_flat(n, block, shifted, None)
    via = FlexBlocks.from_flat(n, block, flat).to_block_mask(None)
    for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices"):
        for side in (name, name.replace("kv", "q")):
            got, want = getattr(ours, side), getattr(via, side)
            assert torch.equal(got, want) and got.shape == want.shape, side
            assert got[0, 0].is_contiguous(), side
    block_mask_equals_host(ours, A.band(lo, hi), n, block)
