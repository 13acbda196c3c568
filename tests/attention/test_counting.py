"""The closed-form pair counts against brute force over the rectangle."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.attention.counting import (
    congruent,
    dilated_band,
    in_band,
    rect_overlaps,
    triangular,
)

small = st.integers(0, 30)
rects = st.tuples(small, st.integers(0, 16), small, st.integers(0, 16))


def _grid(qs, h, ks, w):
    i = torch.arange(qs, qs + h)[:, None]
    j = torch.arange(ks, ks + w)[None, :]
    return i, j, [torch.tensor(x) for x in (qs, qs + h, ks, ks + w)]


def test_triangular_golden():
    assert triangular(torch.tensor([-3, 0, 1, 4])).tolist() == [0, 0, 1, 10]


@settings(max_examples=300, deadline=None)
@given(rects, st.integers(-20, 20), st.integers(-3, 20))
def test_in_band_matches_brute_force(rect, lo, width):
    i, j, bounds = _grid(*rect)
    hi = lo + width
    assert int(in_band(*bounds, lo, hi)) == int(((i - j >= lo) & (i - j <= hi)).sum())


@settings(max_examples=300, deadline=None)
@given(rects, st.integers(1, 9))
def test_congruent_matches_brute_force(rect, k):
    i, j, bounds = _grid(*rect)
    assert int(congruent(*bounds, k)) == int(((i - j) % k == 0).sum())


@settings(max_examples=300, deadline=None)
@given(rects, st.integers(0, 5), st.integers(1, 6))
def test_dilated_band_matches_brute_force(rect, w, d):
    i, j, bounds = _grid(*rect)
    expected = (((i - j).abs() <= w * d) & ((i - j) % d == 0)).sum()
    assert int(dilated_band(*bounds, w, d)) == int(expected)


def test_dilated_band_chunks_over_residues_give_the_same_count():
    bounds = [
        torch.tensor([[0], [40]]),
        torch.tensor([[40], [90]]),
        torch.tensor(3),
        torch.tensor(77),
    ]
    whole = dilated_band(*bounds, 4, 7)
    chunked = dilated_band(*bounds, 4, 7, chunk=2)  # one residue class at a time
    assert torch.equal(whole, chunked)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(1, 12), st.integers(0, 40), st.integers(1, 12)),
        max_size=6,
    ),
    st.integers(1, 9),
    st.integers(1, 9),
)
def test_rect_overlaps_sums_rectangle_areas_per_block(rects, bq, bk):
    n = 52
    dense = torch.zeros(n, n, dtype=torch.int64)
    r0, r1, c0, c1 = [], [], [], []
    for a, h, b, w in rects:
        dense[a : a + h, b : b + w] += 1
        r0.append(a), r1.append(a + h), c0.append(b), c1.append(b + w)
    nqb, nkb = -(-n // bq), -(-n // bk)
    padded = torch.zeros(nqb * bq, nkb * bk, dtype=torch.int64)
    padded[:n, :n] = dense
    expected = padded.view(nqb, bq, nkb, bk).sum((1, 3))
    as_t = [torch.tensor(x, dtype=torch.int64) for x in (r0, r1, c0, c1)]
    assert torch.equal(rect_overlaps(*as_t, bq, bk, nqb, nkb), expected)
