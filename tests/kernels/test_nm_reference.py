"""The 2:4 reference twin on ``formats.NM``'s arrays, and the compressed weight the 2:4 kernels
read (values + 2-bit positions, four per byte) pinned against a naive decoder."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.formats import NM
from sparsetorch.formats.nm import dense_from_meta, is_nm
from sparsetorch.kernels import nm_linear_reference


def random_2to4(n: int, k: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k // 4, 4, generator=g).to(dtype)
    keep = torch.rand(n, k // 4, 4, generator=g).argsort(-1)[..., :2]
    mask = torch.zeros_like(w, dtype=torch.bool).scatter_(-1, keep, True)
    return (w * mask).reshape(n, k)


def naive_decode(values: torch.Tensor, meta: torch.Tensor, k: int) -> torch.Tensor:
    """The kernels' reading of the compressed weight, one element at a time: byte b of a row
    holds the positions of slots 4b..4b+3 (bits [2j, 2j+1] for slot 4b+j); slot s belongs to
    group s // 2, so it sits at column 4 * (s // 2) + position."""
    out = torch.zeros(values.shape[0], k, dtype=values.dtype)
    for r in range(values.shape[0]):
        for s in range(values.shape[1]):
            position = (int(meta[r, s // 4]) >> (2 * (s % 4))) & 3
            out[r, 4 * (s // 2) + position] = values[r, s]
    return out


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 20),
    groups8=st.integers(1, 8),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    seed=st.integers(0, 1000),
)
def test_compress_round_trip_bitwise(n, groups8, dtype, seed):
    w = random_2to4(n, 8 * groups8, dtype, seed)
    nm = NM.from_dense(w, 2, 4)
    assert nm.values.shape == (n, 4 * groups8) and nm.meta.shape == (n, groups8)
    assert nm.meta.dtype == torch.uint8 and nm.values.is_contiguous() and nm.meta.is_contiguous()
    assert torch.equal(dense_from_meta(nm.values, nm.meta, 2, 4), w)
    assert torch.equal(naive_decode(nm.values, nm.meta, 8 * groups8), w)


def test_golden_meta_byte():
    # row: group 0 keeps positions 1 and 3, group 1 keeps 0 and 2
    w = torch.tensor([[0.0, 5.0, 0.0, 7.0, 1.0, 0.0, 2.0, 0.0]])
    nm = NM.from_dense(w, 2, 4)
    assert nm.values.tolist() == [[5.0, 7.0, 1.0, 2.0]]
    assert nm.meta.tolist() == [[1 | (3 << 2) | (0 << 4) | (2 << 6)]]


def test_groups_with_fewer_than_two_nonzeros():
    w = torch.tensor([[0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0]])
    nm = NM.from_dense(w, 2, 4)
    assert torch.equal(dense_from_meta(nm.values, nm.meta, 2, 4), w)


def test_groups_never_straddle_rows():
    # each row alone is 2:4, but the flattened tensor's groups (if rows of 6 were used) are not
    w = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0] * 2])
    assert is_nm(w, 2, 4)
    assert not is_nm(torch.tensor([[1.0, 1.0, 1.0, 0.0] * 2]), 2, 4)


def test_not_2to4_is_an_error():
    with pytest.raises(ValueError, match="not 2:4"):
        NM.from_dense(torch.ones(2, 8), 2, 4)


def test_reference_linear_equals_dense():
    w = random_2to4(12, 32)
    x, b = torch.randn(5, 32), torch.randn(12)
    nm = NM.from_dense(w, 2, 4)
    torch.testing.assert_close(nm_linear_reference(x, nm.values, nm.meta, b), x @ w.T + b)
