"""kernels, deploy and checkpoint hold formats' representations, not their own: every compute
path's arrays are those of formats.CSR / BSR / NM built from the same weight, the block size
the Triton BSR path picks counts formats.BSR's stored blocks, every "is this 2:4?" answer is
formats.nm.is_nm's, and a 2:4 checkpoint's index part is formats.NM's packed positions."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sparsetorch
from sparsetorch.checkpoint.codecs.nm import detect_nm, view_rows
from sparsetorch.checkpoint.support import Support
from sparsetorch.checkpoint.tensor_codec import encode_tensor
from sparsetorch.deploy import PATHS, Dispatcher, sparsify_
from sparsetorch.formats import BSR, CSR, NM
from sparsetorch.formats.nm import as_rows, is_exactly_nm, is_nm
from sparsetorch.kernels import bsr_triton, nm_linear_reference
from sparsetorch.patterns import get as get_pattern
from tests.kernels.test_nm_reference import random_2to4


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bits (NaN-free here, so torch.equal is exact)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def _sparse(rows, cols, density, seed, block=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(rows // block, cols // block, generator=g) < density
    keep = keep.repeat_interleave(block, 0).repeat_interleave(block, 1)
    return (torch.randn(rows, cols, generator=g) * keep).to(dtype)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 12),
    groups8=st.integers(1, 6),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    seed=st.integers(0, 10_000),
)
def test_2to4_paths_hold_formats_nm(n, groups8, dtype, seed):
    w = random_2to4(n, 8 * groups8, dtype, seed)
    nm = NM.from_dense(w, 2, 4)
    for name in ("nm_reference", "nm_triton", "nm_triton_graph"):  # CPU-constructible
        path = PATHS.lookup(name)(w, None)
        assert isinstance(path.format, NM) and (path.format.n, path.format.m) == (2, 4)
        assert _same(path.values, nm.values) and _same(path.meta, nm.meta), name
        assert path.nbytes() == nm.nbytes, name
    x = torch.randn(3, 8 * groups8).to(dtype)
    path = PATHS.lookup("nm_reference")(w, None)
    assert _same(path(x), nm_linear_reference(x, nm.values, nm.meta))


@settings(max_examples=15, deadline=None)
@given(
    rows=st.integers(1, 3),
    cols=st.integers(1, 3),
    block=st.sampled_from([16, 32, 64]),
    density=st.sampled_from([0.0, 0.25, 0.6, 1.0]),
    seed=st.integers(0, 10_000),
)
def test_bsr_paths_hold_formats_bsr(rows, cols, block, density, seed):
    w = _sparse(64 * rows, 64 * cols, density, seed, block)
    path = PATHS.lookup("bsr_triton")(w, None)  # constructible on CPU, runs on CUDA
    bs = bsr_triton.choose_blocksize(w)
    ours = BSR.from_dense(w, (bs, bs))
    assert isinstance(path.format, BSR) and path.format.blocksize == (bs, bs)
    for got, want in ((path.values, ours.values), (path.crow, ours.row_ptr)):
        assert _same(got, want)
    assert _same(path.col, ours.col_indices) and path.nbytes() == ours.nbytes
    torch_bsr = PATHS.lookup("bsr")(w, None)  # torch's BSR kernel on formats.BSR's arrays
    ours = BSR.from_dense(w, (64, 64))
    assert torch_bsr.weight.layout == torch.sparse_bsr
    assert _same(torch_bsr.weight.values(), ours.values)
    assert _same(torch_bsr.weight.crow_indices(), ours.row_ptr)
    assert _same(torch_bsr.weight.col_indices(), ours.col_indices)
    assert torch_bsr.nbytes() == ours.nbytes


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    density=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 10_000),
)
def test_csr_path_holds_formats_csr(rows, cols, density, dtype, seed):
    w = _sparse(rows, cols, density, seed, dtype=dtype)
    path = PATHS.lookup("csr")(w, None)
    ours = CSR.from_dense(w)
    assert isinstance(path.format, CSR) and path.weight.layout == torch.sparse_csr
    assert _same(path.weight.values(), ours.values)
    assert _same(path.weight.crow_indices(), ours.row_ptr)
    assert _same(path.weight.col_indices(), ours.col_indices)
    assert path.nbytes() == ours.nbytes
    x = torch.randn(5, cols, dtype=dtype)
    torch.testing.assert_close(path(x), x @ w.T)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.sampled_from([(64, 64), (96, 48), (256, 128), (48, 80)]),
    block=st.sampled_from([1, 16, 32, 64]),
    density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    slack=st.sampled_from([1.0, 1.5, 4.0]),
    seed=st.integers(0, 10_000),
)
def test_choose_blocksize_counts_what_formats_bsr_stores(shape, block, density, slack, seed):
    w = _sparse(*shape, density, seed, block if all(s % block == 0 for s in shape) else 1)
    sizes = [b for b in bsr_triton.BLOCK_SIZES if shape[0] % b == 0 and shape[1] % b == 0]
    stored = {b: BSR.from_dense(w, (b, b)).nnz for b in sizes}  # values held, fill included
    want = max(b for b in sizes if stored[b] <= slack * stored[sizes[0]])
    assert bsr_triton.choose_blocksize(w, slack) == want


@st.composite
def near_2to4(draw):
    """A (rows, 64) weight that is 2:4 except, sometimes, for one group holding 3."""
    rows = draw(st.integers(1, 8))
    w = random_2to4(rows, 64, seed=draw(st.integers(0, 10_000)))
    if draw(st.booleans()):
        r, g = draw(st.integers(0, rows - 1)), draw(st.integers(0, 15))
        w[r, 4 * g : 4 * g + 3] = 1.0
    return w


@settings(max_examples=40, deadline=None)
@given(w=near_2to4())
def test_every_2to4_question_has_formats_answer(w):
    valid = is_nm(w, 2, 4)
    assert get_pattern("2:4").is_valid(w != 0) == valid
    assert (PATHS.lookup("nm_reference").unsupported(w) is None) == valid
    model = nn.Sequential(nn.Linear(64, w.shape[0]))
    with torch.no_grad():
        model[0].weight.copy_(w)
    dispatcher = Dispatcher(timer=lambda fn: 1.0, cache_file=None)
    if valid:
        report = sparsify_(model, "2:4", paths=["nm_reference"], dispatcher=dispatcher)
        assert list(report.swapped) == ["0"]
    else:
        with pytest.raises(ValueError, match=r"layer\(s\) 0 are not 2:4 sparse"):
            sparsify_(model, "2:4", paths=["nm_reference"], dispatcher=dispatcher)
    # the checkpoint codec stores exactly-N:M masks: formats' exact count decides
    mask = (w != 0).reshape(-1).numpy()
    found = detect_nm(Support(mask.size, mask=mask), tuple(w.shape))
    numel, nnz = w.numel(), int(mask.sum())
    exactly = any(
        is_exactly_nm(w, nnz * m // numel, m)
        for m in (2, 4, 8, 16)
        if (nnz * m) % numel == 0 and 0 < nnz * m // numel < m
    )
    assert (found is not None) == exactly
    if found is not None:
        n, m, view = found
        assert is_exactly_nm(view_rows(mask, tuple(w.shape), view), n, m)


@pytest.mark.parametrize("make", ["linear", "conv"])
def test_a_2to4_checkpoint_index_is_formats_nm_meta(make):
    torch.manual_seed(0)
    module = nn.Linear(64, 24) if make == "linear" else nn.Conv2d(16, 8, 3)
    sparsetorch.prune(module, pattern="2:4")
    sparsetorch.remove_masks(module)
    w = module.weight.detach() + 0.0  # -0.0 -> 0.0: the checkpoint keeps a -0.0's bits
    encoded = encode_tensor(w)
    assert encoded.entry["encoding"] == "nm" and encoded.entry["params"]["m"] == 4
    nm = NM.from_dense(as_rows(w), 2, 4)  # (out*kh*kw, in) for the conv
    assert torch.equal(encoded.parts["nm_index"], nm.meta.reshape(-1))
    assert torch.equal(encoded.parts["values"], nm.values.reshape(-1)) == (make == "linear")
