import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.kernels import compress_2to4, decompress_2to4, is_2to4, nm_linear_reference


def random_2to4(n: int, k: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k // 4, 4, generator=g).to(dtype)
    keep = torch.rand(n, k // 4, 4, generator=g).argsort(-1)[..., :2]
    mask = torch.zeros_like(w, dtype=torch.bool).scatter_(-1, keep, True)
    return (w * mask).reshape(n, k)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 20),
    groups8=st.integers(1, 8),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    seed=st.integers(0, 1000),
)
def test_compress_round_trip_bitwise(n, groups8, dtype, seed):
    w = random_2to4(n, 8 * groups8, dtype, seed)
    values, meta = compress_2to4(w)
    assert values.shape == (n, 4 * groups8) and meta.shape == (n, groups8)
    assert meta.dtype == torch.uint8
    assert torch.equal(decompress_2to4(values, meta), w)


def test_golden_meta_byte():
    # row: group 0 keeps positions 1 and 3, group 1 keeps 0 and 2
    w = torch.tensor([[0.0, 5.0, 0.0, 7.0, 1.0, 0.0, 2.0, 0.0]])
    values, meta = compress_2to4(w)
    assert values.tolist() == [[5.0, 7.0, 1.0, 2.0]]
    assert meta.tolist() == [[1 | (3 << 2) | (0 << 4) | (2 << 6)]]


def test_groups_with_fewer_than_two_nonzeros():
    w = torch.tensor([[0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0]])
    values, meta = compress_2to4(w)
    assert torch.equal(decompress_2to4(values, meta), w)


def test_groups_never_straddle_rows():
    # each row alone is 2:4, but the flattened tensor's groups (if rows of 6 were used) are not
    w = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0] * 2])
    assert is_2to4(w)
    assert not is_2to4(torch.tensor([[1.0, 1.0, 1.0, 0.0] * 2]))


def test_not_2to4_is_an_error():
    with pytest.raises(ValueError, match="not 2:4"):
        compress_2to4(torch.ones(2, 8))
    with pytest.raises(ValueError, match="divisible by 8"):
        compress_2to4(torch.zeros(2, 4))


def test_reference_linear_equals_dense():
    w = random_2to4(12, 32)
    x, b = torch.randn(5, 32), torch.randn(12)
    values, meta = compress_2to4(w)
    torch.testing.assert_close(nm_linear_reference(x, values, meta, b), x @ w.T + b)
