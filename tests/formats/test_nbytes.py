"""nbytes is the exact size of the arrays held; NM metadata packs 1/2/4/8 bits per slot."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.formats import BSR, COO, CSR, NM
from sparsetorch.formats._base import index_dtype
from sparsetorch.formats.nm import meta_bits, pack, unpack
from tests.formats.strategies import matrices, nm_matrices

SETTINGS = settings(max_examples=30, deadline=None)


@SETTINGS
@given(t=matrices(row_multiple=2, col_multiple=2))
def test_nbytes_formulas(t):
    rows = t.shape[0]
    item = t.element_size()
    nnz = int((t != 0).sum())
    csr, coo, bsr = CSR.from_dense(t), COO.from_dense(t), BSR.from_dense(t, (2, 2))
    assert csr.nnz == coo.nnz == nnz
    assert csr.nbytes == nnz * (item + 4) + (rows + 1) * 4
    assert coo.nbytes == nnz * (item + 8)
    nb = bsr.nblocks
    assert bsr.nbytes == nb * 4 * item + (nb + rows // 2 + 1) * 4
    assert csr.density == (nnz / t.numel() if t.numel() else 0.0)


@SETTINGS
@given(data=st.data(), nm=st.sampled_from([(1, 2), (2, 4), (3, 8), (2, 16), (5, 32)]))
def test_nm_nbytes_counts_packed_metadata(data, nm):
    n, m = nm
    t = data.draw(nm_matrices(n, m))
    fmt = NM.from_dense(t, n, m)
    slots = t.shape[1] // m * n
    bits = {2: 1, 4: 2, 8: 4, 16: 4, 32: 8}[m]
    assert fmt.meta.dtype == torch.uint8 and fmt.bits == bits
    assert fmt.nbytes == t.shape[0] * (slots * t.element_size() + math.ceil(slots * bits / 8))


def test_meta_bits():
    assert [meta_bits(m) for m in (1, 2, 3, 4, 5, 16, 17, 256)] == [1, 1, 2, 2, 4, 4, 8, 8]


@settings(max_examples=50, deadline=None)
@given(
    bits=st.sampled_from([1, 2, 4, 8]),
    rows=st.integers(0, 3),
    slots=st.integers(0, 17),
    seed=st.integers(0, 1000),
)
def test_pack_unpack_round_trip(bits, rows, slots, seed):
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 1 << bits, (rows, slots), generator=g)
    packed = pack(values, bits)
    assert packed.shape == (rows, math.ceil(slots * bits / 8)) and packed.dtype == torch.uint8
    assert torch.equal(unpack(packed, bits, slots), values)


def test_index_dtype_grows_only_when_needed():
    assert index_dtype(2**31 - 1) == torch.int32
    assert index_dtype(2**31) == torch.int64
    # int64 input indices are narrowed to int32 when they fit
    csr = CSR(torch.tensor([0, 1]), torch.tensor([0]), torch.ones(1), (1, 1))
    assert csr.row_ptr.dtype == csr.col_indices.dtype == torch.int32
