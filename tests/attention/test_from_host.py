"""FlexBlocks.from_host on index rows of any widths: the device widening (large grids) gives
exactly the host widening (small grids) and the zero-padded rows, for square and non-square
block grids."""

import math
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.attention import layout
from sparsetorch.attention.layout import FlexBlocks
from tests.attention.helpers import patterns_with_n


def _side(rows: int, cols: int, w_partial: int, w_full: int, rng) -> list[np.ndarray]:
    """[count, indices (rows, w_partial), full count, full indices (rows, w_full)], int32."""
    return [
        rng.integers(0, w_partial + 1, rows).astype(np.int32),
        rng.integers(0, cols, (rows, w_partial)).astype(np.int32),
        rng.integers(0, w_full + 1, rows).astype(np.int32),
        rng.integers(0, cols, (rows, w_full)).astype(np.int32),
    ]


def _padded(a: np.ndarray, width: int) -> torch.Tensor:
    out = torch.zeros(a.shape[0], width, dtype=torch.int32)
    out[:, : a.shape[1]] = torch.from_numpy(a)
    return out


@pytest.mark.parametrize("block", [(16, 16), (16, 32)])
@pytest.mark.parametrize("widths", [(3, 5, 4, 2), (5, 3, 2, 4), (4, 4, 4, 4)])
def test_index_rows_of_different_widths(block, widths):
    n = 2100  # 132 x 132 (or 132 x 66) blocks: above HOST_WIDEN_MAX, widened on the device
    nqb, nkb = math.ceil(n / block[0]), math.ceil(n / block[1])
    assert 4 * nqb * nkb > layout.HOST_WIDEN_MAX
    rng = np.random.default_rng(0)
    kv = _side(nqb, nkb, widths[0], widths[1], rng)
    q = _side(nkb, nqb, widths[2], widths[3], rng)
    on_device = FlexBlocks.from_host(n, block, kv, q, None)
    with mock.patch.object(layout, "HOST_WIDEN_MAX", 1 << 30):
        on_host = FlexBlocks.from_host(n, block, kv, q, None)
    expected = {
        "kv_num": torch.from_numpy(kv[0]),
        "kv_idx": _padded(kv[1], nkb),
        "full_kv_num": torch.from_numpy(kv[2]),
        "full_kv_idx": _padded(kv[3], nkb),
        "q_num": torch.from_numpy(q[0]),
        "q_idx": _padded(q[1], nqb),
        "full_q_num": torch.from_numpy(q[2]),
        "full_q_idx": _padded(q[3], nqb),
    }
    for field, want in expected.items():
        for built in (on_host, on_device):
            got = getattr(built, field)
            assert got.is_contiguous() and torch.equal(got, want), field


@settings(max_examples=60, deadline=None)
@given(patterns_with_n(), st.integers(1, 12), st.integers(1, 12))
def test_lists_sent_in_one_copy_equal_the_lists_sent(pattern_n, bq, bk):
    """FlexBlocks.to: the packed copy (what a GPU build of a small grid sends) holds every
    list entry for entry, row-major, with the same shapes."""
    pattern, n = pattern_n
    lists = pattern.flex_blocks(n, (bq, bk))
    sent = lists.to("cpu")
    for got, want in zip(sent.tensors(), lists.tensors(), strict=True):
        assert torch.equal(got, want) and got.is_contiguous()
    assert (sent.n, sent.block) == (n, (bq, bk))
