"""Arguments a format must refuse: bools where counts are expected, bool or float index
tensors, and the like (each a TypeError/ValueError naming the argument)."""

import numpy as np
import pytest
import torch

from sparsetorch.formats import NM


def _nm_parts():
    t = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 4.0]])
    nm = NM.from_dense(t, 2, 4)
    return t, nm.values, nm.indices


@pytest.mark.parametrize(
    ("n", "m"), [(True, 4), (2, True), (np.bool_(True), 4), (2.0, 4), ("2", 4)]
)
def test_nm_counts_must_be_ints(n, m):
    t, _, _ = _nm_parts()
    with pytest.raises(ValueError, match="N:M needs ints"):
        NM.from_dense(t, n, m)


def test_nm_takes_numpy_integer_counts():
    t, _, _ = _nm_parts()
    nm = NM.from_dense(t, np.int64(2), np.int32(4))
    assert (nm.n, nm.m) == (2, 4) and type(nm.n) is int
    assert torch.equal(nm.to_dense(), t)


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32, torch.complex64])
def test_nm_indices_must_be_integers(dtype):
    t, values, indices = _nm_parts()
    with pytest.raises(TypeError, match="indices must be an integer tensor"):
        NM(values, indices.to(dtype), tuple(t.shape), 2, 4)
    # the same positions as an integer tensor of any width are fine
    for int_dtype in (torch.uint8, torch.int32, torch.int64):
        assert torch.equal(NM(values, indices.to(int_dtype), tuple(t.shape), 2, 4).to_dense(), t)
