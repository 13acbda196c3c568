"""The one N:M check (formats.nm): group counts and validity against naive loops, the rows
view of weights of any rank, and NM.from_meta (the kernels' arrays back into a format)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.formats import NM
from sparsetorch.formats.nm import (
    as_rows,
    check_nm,
    dense_from_meta,
    from_rows,
    group_counts,
    is_exactly_nm,
    is_nm,
)
from tests.formats.strategies import bits, nm_matrices


def naive_counts(t: torch.Tensor, m: int) -> tuple[list, list | None]:
    """Nonzeros per group of m along the last dim, row by row in Python."""
    rows = t.reshape(-1, t.shape[-1]).tolist()
    full = [[sum(v != 0 for v in row[g : g + m]) for g in range(0, len(row) - m + 1, m)]
            for row in rows]  # fmt: skip
    rest = len(rows[0]) % m if rows else 0
    partial = [sum(v != 0 for v in row[len(row) - rest :]) for row in rows] if rest else None
    return full, partial


def naive_is_nm(t: torch.Tensor, n: int, m: int, partial_n: int | None = None) -> bool:
    full, partial = naive_counts(t, m)
    limit = n if partial_n is None else partial_n
    return all(c <= n for row in full for c in row) and all(c <= limit for c in partial or [])


@st.composite
def tensors(draw):
    """A float or bool tensor of 1-3 dims, zeros in random places, ~N:M or not."""
    lead = draw(st.lists(st.integers(1, 5), min_size=0, max_size=2))
    shape = (*lead, draw(st.integers(1, 13)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    density = draw(st.sampled_from([0.0, 0.25, 0.5, 0.9]))
    t = torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < density)
    return t != 0 if draw(st.booleans()) else t


@settings(max_examples=150, deadline=None)
@given(t=tensors(), m=st.integers(1, 8), data=st.data())
def test_counts_and_validity_equal_naive_loops(t, m, data):
    n = data.draw(st.integers(1, m))
    partial_n = data.draw(st.none() | st.integers(0, m))
    counts, partial = group_counts(t, m)
    full, rest = naive_counts(t, m)
    assert counts.reshape(math.prod(t.shape[:-1]), t.shape[-1] // m).tolist() == full
    assert (partial is None) == (rest is None)
    if rest is not None:
        assert partial.reshape(-1).tolist() == rest
    assert is_nm(t, n, m, partial_n) == naive_is_nm(t, n, m, partial_n)
    exactly = rest is None and all(c == n for row in full for c in row)
    assert is_exactly_nm(t, n, m) == exactly


@settings(max_examples=60, deadline=None)
@given(t=tensors(), nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 8)]))
def test_the_format_accepts_exactly_what_is_nm_accepts(t, nm):
    n, m = nm
    if t.dtype == torch.bool or t.dim() < 2 or t.shape[-1] % m:
        return
    if is_nm(t, n, m):
        assert torch.equal(NM.from_dense(t, n, m).to_dense(), t + 0.0)
    else:
        with pytest.raises(ValueError, match=rf"not {n}:{m} sparse"):
            NM.from_dense(t, n, m)


def test_check_nm_names_the_first_full_group():
    t = torch.zeros(2, 3, 8)
    t[1, 2, 4:7] = 1.0  # batch 1, row 2, group 1 holds 3
    with pytest.raises(ValueError, match=r"w is not 2:4 sparse: group 1 of row \(1, 2\) holds 3"):
        check_nm(t, 2, 4, "w")
    with pytest.raises(ValueError, match="last dim 6 is not a multiple of m=4"):
        check_nm(torch.zeros(2, 6), 2, 4)
    with pytest.raises(ValueError, match="at least 1 dim"):
        group_counts(torch.tensor(1.0), 4)


@pytest.mark.parametrize("n, m", [(5, 4), (0, 4), (2, 0), (2.0, 4), (1, 300)])
def test_every_check_refuses_what_the_format_refuses(n, m):
    ones = torch.ones(1, 4)
    for check in (is_nm, is_exactly_nm, check_nm):
        with pytest.raises(ValueError, match="N:M needs ints 1 <= n <= m <= 256"):
            check(ones, n, m)


@pytest.mark.parametrize("shape", [(7,), (3, 8), (4, 8, 3, 3), (2, 4, 5)])
def test_rows_view_puts_input_channels_last_and_inverts(shape):
    w = torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape)
    rows = as_rows(w)
    in_dim = shape[1] if len(shape) > 1 else shape[0]
    assert rows.shape == (math.prod(shape) // in_dim, in_dim)
    if len(shape) >= 3:  # row (o, k...) lists w[o, :, k...]
        assert torch.equal(rows[0], w[(0, slice(None)) + (0,) * (len(shape) - 2)])
    assert torch.equal(from_rows(rows, shape), w)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), nm=st.sampled_from([(2, 4), (1, 4), (3, 8), (1, 2), (4, 16)]))
def test_from_meta_rebuilds_the_format_bitwise(data, nm):
    n, m = nm
    t = data.draw(nm_matrices(n, m, batch=data.draw(st.booleans())))
    fmt = NM.from_dense(t, n, m)
    back = NM.from_meta(fmt.values, fmt.meta, t.shape, n, m)
    assert torch.equal(back.meta, fmt.meta) and torch.equal(bits(back.values), bits(fmt.values))
    assert torch.equal(bits(dense_from_meta(fmt.values, fmt.meta, n, m)), bits(fmt.to_dense()))


def test_from_meta_checks_its_arrays():
    fmt = NM.from_dense(torch.tensor([[1.0, 0, 2, 0, 0, 3, 0, 4]]), 2, 4)
    with pytest.raises(TypeError, match="meta must be a uint8 tensor"):
        NM.from_meta(fmt.values, fmt.meta.long(), (1, 8), 2, 4)
    with pytest.raises(ValueError, match=r"meta must have shape \(1, 1\)"):
        NM.from_meta(fmt.values, torch.zeros(1, 2, dtype=torch.uint8), (1, 8), 2, 4)
    repeated = torch.tensor([[0 | (0 << 2) | (1 << 4) | (3 << 6)]], dtype=torch.uint8)
    with pytest.raises(ValueError, match="positions of a group strictly increase"):
        NM.from_meta(fmt.values, repeated, (1, 8), 2, 4)
