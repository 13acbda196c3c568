"""nm_triton edge cases that need no GPU: the kernels run in Triton's CPU interpreter
(TRITON_INTERPRET=1 PYTHONPATH=src:. python -m pytest tests/kernels/test_nm_triton.py);
without Triton they skip."""

import os

import pytest
import torch

from sparsetorch.formats import NM
from sparsetorch.kernels import nm_triton
from tests.kernels.test_nm_reference import random_2to4

needs_interpreter = pytest.mark.skipif(
    not nm_triton.available() or os.environ.get("TRITON_INTERPRET", "0") in ("", "0"),
    reason="needs Triton; on CPU run with TRITON_INTERPRET=1",
)


def _compressed(w):
    nm = NM.from_dense(w, 2, 4)
    return nm.values, nm.meta


@needs_interpreter
@pytest.mark.parametrize("k", [128, 512])  # 512: the decode (GEMV) branch, M <= 16, K % 512 == 0
def test_empty_batch_gives_empty_output(k):
    w, b = random_2to4(32, k), torch.randn(32)
    values, meta = _compressed(w)
    x = torch.randn(0, k)
    gemv = {"BLOCK_N": 32, "BLOCK_K": 128, "num_warps": 4}
    y = nm_triton.nm_linear_triton(x, values, meta, b, gemv_config=gemv)
    assert y.shape == (0, 32) and y.dtype == x.dtype
    y = torch.ops.sparsetorch.nm_linear_2to4(x, values, meta, b)  # the op, autotuned GEMV
    assert y.shape == (0, 32)


@needs_interpreter
def test_decode_branch_equals_dense_for_small_m():
    w, b = random_2to4(32, 512), torch.randn(32)
    values, meta = _compressed(w)
    gemv = {"BLOCK_N": 32, "BLOCK_K": 128, "num_warps": 4}
    for m in (1, 3, 16):
        x = torch.randn(m, 512)
        y = nm_triton.nm_linear_triton(x, values, meta, b, gemv_config=gemv, gemv_max_m=16)
        torch.testing.assert_close(y, x @ w.T + b, rtol=1e-4, atol=1e-4)


SKINNY = {"BLOCK_N": 16, "BLOCK_K": 64, "num_warps": 4}


@needs_interpreter
@pytest.mark.parametrize("m", [5, 16, 33])
@pytest.mark.parametrize("k", [256, 200])  # 200: the last K tile is partly past K (masked)
def test_skinny_branch_equals_dense(m, k):
    """The skinny GEMM's two-select expansion puts each kept value at its position (every
    position pair of a group occurs in random_2to4 weights); rows and columns past M and N
    are masked."""
    w, b = random_2to4(40, k, seed=m), torch.randn(40)
    values, meta = _compressed(w)
    x = torch.randn(m, k)
    y = nm_triton.nm_linear_triton(x, values, meta, b, skinny_config=SKINNY, gemv_max_m=0)
    torch.testing.assert_close(y, x @ w.T + b, rtol=1e-4, atol=1e-4)


@needs_interpreter
def test_strided_bias_equals_contiguous():
    # the kernels read the bias by +1 steps: a strided view must be made contiguous first
    w = random_2to4(32, 128)
    values, meta = _compressed(w)
    b = torch.randn(64)[::2]  # (32,), stride 2
    x = torch.randn(20, 128)
    y = nm_triton.nm_linear_triton(x, values, meta, b, skinny_config=SKINNY)
    torch.testing.assert_close(y, x @ w.T + b, rtol=1e-4, atol=1e-4)
