"""cuSPARSELt's algorithm search (CuSparseLtPath._alg_id) on CPU, with torch's _cslt_* ops
replaced by recorders: one search per dispatcher M bucket, none while compiling or capturing."""

import pytest
import torch

from sparsetorch.deploy import compute_paths
from sparsetorch.deploy.compute_paths import CuSparseLtPath
from sparsetorch.deploy.dispatch import m_bucket


@pytest.fixture
def cslt(monkeypatch):
    """A CuSparseLtPath for a (8, 32) weight whose search and matmul are recorded, not run."""
    searched: list[int] = []  # padded M of each search
    used: list[int] = []  # alg_id of each matmul

    def search(compressed, xt, bias=None):
        searched.append(xt.shape[1])
        return 3

    def matmul(compressed, xt, bias=None, transpose_result=False, alg_id=0):
        used.append(alg_id)
        return torch.zeros(xt.shape[1], 8)

    monkeypatch.setattr(torch._C, "_cusparselt", None, raising=False)  # the older search API
    monkeypatch.setattr(torch, "_cslt_sparse_mm_search", search, raising=False)
    monkeypatch.setattr(torch, "_cslt_sparse_mm", matmul, raising=False)
    path = object.__new__(CuSparseLtPath)  # no CUDA here: skip the compression in __init__
    path.compressed, path.bias, path._alg = torch.zeros(1), None, {}
    return path, searched, used


def test_one_search_per_dispatcher_bucket(cslt):
    path, searched, used = cslt
    # tune() probes each bucket at its full size (m_bucket(M) rows); serving then sends any M of
    # the bucket: M = 40 and 64 share bucket 64, M = 80 and 128 bucket 128
    for m in (m_bucket(40), 40, 64, m_bucket(100), 80, 100, 128):
        assert path(torch.zeros(m, 32)).shape == (m, 8)
    assert searched == [64, 128]  # the probes only: serving never searches again
    assert used == [3] * 7


def test_no_search_while_capturing_or_compiling(cslt, monkeypatch):
    path, searched, used = cslt
    path(torch.zeros(16, 32))  # eager: bucket 16 searched
    monkeypatch.setattr(compute_paths, "in_outer_graph", lambda x: True)  # a capture is running
    path(torch.zeros(16, 32))  # searched bucket: its algorithm
    path(torch.zeros(40, 32))  # never searched: cuSPARSELt's default, nothing timed or cached
    assert searched == [16] and used == [3, 3, 0] and list(path._alg) == [16]


def test_the_newer_search_api_is_preferred_where_torch_has_it(cslt, monkeypatch):
    """torch 2.11 deprecates torch._cslt_sparse_mm_search for torch._C._cusparselt.mm_search,
    which returns (alg_id, split_k, split_k mode, max alg_id)."""
    path, searched, used = cslt
    calls = []

    class Cusparselt:
        @staticmethod
        def mm_search(compressed, xt, bias, alpha, out_dtype, transpose_result):
            calls.append((xt.shape[1], transpose_result))
            return (5, 1, -1, 9)

    monkeypatch.setattr(torch._C, "_cusparselt", Cusparselt, raising=False)
    path(torch.zeros(16, 32))
    assert calls == [(16, False)] and searched == [] and used == [5]
