"""row(i) and col(j) return exactly the dense row/column, in index order, for every format."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.formats import BSR, COO, CSR, NM
from tests.formats.strategies import bits, canonical, matrices, nm_matrices


def check_lines(fmt, t):
    for i in range(t.shape[0]):
        line = fmt.row(i)
        assert line.size == t.shape[1]
        assert (line.indices.diff() > 0).all()  # sorted, each index once
        assert torch.equal(bits(canonical(line.to_dense())), bits(canonical(t[i])))
    for j in range(t.shape[1]):
        line = fmt.col(j)
        assert line.size == t.shape[0]
        assert (line.indices.diff() > 0).all()
        assert torch.equal(bits(canonical(line.to_dense())), bits(canonical(t[:, j])))


@settings(max_examples=30, deadline=None)
@given(t=matrices(row_multiple=2, col_multiple=3))
def test_rows_and_cols_of_csr_coo_bsr(t):
    csr = CSR.from_dense(t)
    for fmt in (csr, COO.from_dense(t), BSR.from_dense(t, (2, 3))):
        check_lines(fmt, t)
    # CSR/COO rows hold exactly the nonzeros
    if t.shape[0]:
        assert csr.row(0).indices.tolist() == (t[0] != 0).nonzero().flatten().tolist()


@settings(max_examples=30, deadline=None)
@given(data=st.data(), nm=st.sampled_from([(2, 4), (1, 4), (3, 8), (1, 2)]))
def test_rows_and_cols_of_nm(data, nm):
    t = data.draw(nm_matrices(*nm))
    check_lines(NM.from_dense(t, *nm), t)


def test_row_access_reads_only_its_slice_of_csr():
    csr = CSR.from_dense(torch.tensor([[0.0, 1, 2], [0, 0, 0], [3, 0, 4]]))
    row = csr.row(2)
    assert row.indices.tolist() == [0, 2] and row.values.tolist() == [3, 4]
    assert row.values.data_ptr() == csr.values[2:].data_ptr()  # a view, located via row_ptr
    assert csr.row(1).indices.numel() == 0
    assert csr.row(-1).values.tolist() == [3, 4]


@pytest.mark.parametrize(
    "fmt",
    [
        lambda t: CSR.from_dense(t),
        lambda t: COO.from_dense(t),
        lambda t: BSR.from_dense(t, (1, 1)),
        lambda t: NM.from_dense(t, 4, 4),
    ],
)
def test_bad_positions_raise(fmt):
    a = fmt(torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"row index must be an int in \[-2, 2\), got 2"):
        a.row(2)
    with pytest.raises(ValueError, match=r"col index must be an int in \[-4, 4\), got -5"):
        a.col(-5)
    with pytest.raises(ValueError, match="row index must be an int"):
        a.row(0.5)
