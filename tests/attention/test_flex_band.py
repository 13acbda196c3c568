"""The in-graph band block lists (backends/flex_band.py) equal the host closed form, eagerly
and compiled with dynamic shapes (Inductor, one graph for every length)."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch._dynamo.testing import CompileCounterWithBackend

import sparsetorch.attention as A
from sparsetorch.attention.backends.flex_band import _band_attention, band_block_lists


def _equal_to_host(lists, n, bq, bk, lo, hi):
    host = A.band(lo, hi).flex_blocks(n, (bq, bk))
    nqb, nkb = math.ceil(n / bq), math.ceil(n / bk)
    pairs = [(lists[0], lists[1], host.kv_num, host.kv_idx)]
    pairs.append((lists[2], lists[3], host.full_kv_num, host.full_kv_idx))
    for count, idx, want_count, want_idx in pairs:
        assert torch.equal(count, want_count)
        assert idx.shape == (nqb, nkb) and idx.dtype == torch.int32
        assert int(idx.min()) >= 0 and int(idx.max()) < nkb  # unused entries in range too
        for r in range(nqb):
            c = int(count[r])
            assert torch.equal(idx[r, :c], want_idx[r, :c]), r


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 200),
    st.integers(-300, 300),
    st.integers(0, 300),
    st.integers(1, 40),
    st.integers(1, 40),
)
def test_band_block_lists_equal_the_host_closed_form(n, lo, width, bq, bk):
    hi = lo + width  # any non-empty band, also reaching past +-n
    _equal_to_host(band_block_lists(n, bq, bk, lo, hi), n, bq, bk, lo, hi)


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
    attend = torch.compile(_band_attention, dynamic=True)
    g = torch.Generator().manual_seed(0)
    for n in (1000, 1500):
        q, k, v = (torch.randn(1, 2, n, 16, generator=g) for _ in range(3))
        out = attend(q, k, v, -100, 100, (128, 128), 0.25, None)
        mask = A.local(100).mask(n)
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.25)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_a_window_builds_in_graph_on_its_first_call_at_a_length_only(monkeypatch):
    from sparsetorch.attention.backends import flex

    monkeypatch.setattr(flex, "_SEEN", flex._SeenOnce(capacity=2))
    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # only decided here, never used
    window = A.local(64)
    assert flex.use_in_graph_build(window, 4096, cuda, 128)  # first call: in the graph
    assert not flex.use_in_graph_build(window, 4096, cuda, 128)  # then the cached mask
    assert not flex.use_in_graph_build(window, 4096, cuda, 128)
    assert flex.use_in_graph_build(window, 4096, cuda, 64)  # another block size: a new key
    assert flex.use_in_graph_build(A.local(64), 5000, cuda, 128)
    assert flex.use_in_graph_build(window, 4096, cuda, 128)  # forgotten (capacity 2)
    assert not flex.use_in_graph_build(window, 8192, cpu, 128)  # CPU: always the cache
    for other in (A.causal(), A.local(64) | A.global_tokens([0]), A.band(5, 1)):
        assert not flex.use_in_graph_build(other, 4096, cuda, 128)  # not a finite band
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert flex.use_in_graph_build(window, 4096, cuda, 128)  # traced: always in the graph
