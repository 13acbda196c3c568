"""FORMATS resolves names to encoders; best_format picks the smallest encoding."""

import pytest
import torch
from hypothesis import given, settings

from sparsetorch.formats import BSR, COO, CSR, FORMATS, NM, best_format, candidates
from tests.formats.strategies import matrices


def test_names_resolve_to_encoders():
    assert FORMATS.names() == ["bsr", "coo", "csr", "dense", "nm", "bsrHxW", "nmN:M"]
    t = torch.zeros(8, 8)
    t[:4, :4] = 1.0
    assert isinstance(FORMATS.build("csr")(t), CSR)
    assert isinstance(FORMATS.build("coo")(t), COO)
    bsr = FORMATS.build("bsr4x4")(t)
    assert isinstance(bsr, BSR) and bsr.blocksize == (4, 4) and bsr.nblocks == 1
    assert FORMATS.build("bsr", blocksize=(2, 8))(t).blocksize == (2, 8)
    nm = FORMATS.build("NM4:8")(t)
    assert isinstance(nm, NM) and (nm.n, nm.m) == (4, 8)
    assert (
        FORMATS.build("nm")(torch.zeros(2, 4)).n,
        FORMATS.build("nm", n=1)(torch.zeros(2, 4)).n,
    ) == (2, 1)
    assert FORMATS.build("dense")(t) is t
    with pytest.raises(
        ValueError, match="unknown format 'ell'; known: bsr, coo, csr, dense, nm, bsrHxW, nmN:M"
    ):
        FORMATS.build("ell")


def _block_sparse(rows, cols, block, keep, seed=0):
    g = torch.Generator().manual_seed(seed)
    blocks = torch.rand(rows // block, cols // block, generator=g) < keep
    mask = blocks.repeat_interleave(block, 0).repeat_interleave(block, 1)
    return torch.randn(rows, cols, generator=g) * mask


def test_best_format_picks_what_fits_the_structure():
    g = torch.Generator().manual_seed(0)
    dense = torch.randn(64, 64, generator=g)
    assert best_format(dense) == ("dense", 64 * 64 * 4)
    half = dense * (torch.rand(64, 64, generator=g) < 0.3)  # 70% sparse, unstructured
    assert best_format(half)[0] == "csr"
    # very sparse: fewer nonzeros than rows, so COO's per-entry row beats CSR's row_ptr
    tiny = dense * (torch.rand(64, 64, generator=g) < 0.005)
    assert best_format(tiny)[0] == "coo"
    assert best_format(_block_sparse(64, 64, 8, 0.3))[0] == "bsr8x8"
    two_four = dense.clone()
    two_four.view(-1, 4)[:, 1:3] = 0  # keep positions 0 and 3 of every group of 4
    assert best_format(two_four) == ("nm2:4", 64 * 32 * 4 + 64 * 8)


@settings(max_examples=30, deadline=None)
@given(t=matrices(dtype=torch.float32, row_multiple=4, col_multiple=4, specials=False))
def test_best_format_is_the_minimum_and_rebuilds(t):
    name, nbytes = best_format(t)
    assert name in candidates(t)
    assert nbytes <= min(t.nbytes, CSR.from_dense(t).nbytes, COO.from_dense(t).nbytes)
    rebuilt = FORMATS.build(name)(t)
    assert rebuilt.nbytes == nbytes
    assert torch.equal(rebuilt if name == "dense" else rebuilt.to_dense(), t)


def test_best_format_views_conv_weights_as_rows_of_the_reduction_dim():
    w = torch.zeros(8, 3, 3, 3)
    w[:, 0, 0, 0] = 1.0  # 1 nonzero in each row of 27
    name, nbytes = best_format(w)
    assert name == "coo" and nbytes == 8 * 12  # 8 entries < 9 row pointers
    with pytest.raises(ValueError, match=r"at least 2 dims, got \(3,\)"):
        best_format(torch.ones(3))


def test_candidates_respect_divisibility():
    t = torch.ones(6, 12)
    t.view(-1, 4)[:, 1:] = 0  # 1 nonzero per group of 4; groups of 8 and 16 do not tile 12
    assert candidates(t) == ["dense", "csr", "coo", "bsr2x2", "nm1:4"]
