"""The ``cpu_sparse`` compute path (sparsetorch's CPU kernels) behind ``sparsify_(m, "csr")``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsetorch.deploy import PATHS, Dispatcher, SparseLinear, sparsify_
from sparsetorch.kernels.cpu import available

pytestmark = pytest.mark.skipif(
    not available(), reason="the compiled CPU kernels did not build on this machine"
)
CPUSparsePath = PATHS.lookup("cpu_sparse")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch", [1, 5, 33])
def test_cpu_sparse_path_equals_dense(dtype, batch):
    g = torch.Generator().manual_seed(batch)
    w = (torch.randn(48, 40, generator=g) * (torch.rand(48, 40, generator=g) < 0.1)).to(dtype)
    b = torch.randn(48, generator=g).to(dtype)
    x = torch.randn(batch, 40, generator=g).to(dtype)
    path = CPUSparsePath(w, b)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    expected = (x.double() @ w.double().T + b.double()).to(dtype)
    torch.testing.assert_close(path(x), expected, atol=tol, rtol=tol)
    assert torch.equal(path.dense_weight(), w)
    # 4-byte values + 2-byte column indices + row pointers: fp32 smaller than torch CSR
    nnz = int((w != 0).sum())
    assert path.nbytes() == nnz * (w.element_size() + 2) + 8 * 49


def test_cpu_sparse_path_refuses_what_it_cannot_run():
    assert "float32/bfloat16" in CPUSparsePath.unsupported(torch.zeros(4, 4, dtype=torch.float64))
    assert "2-D" in CPUSparsePath.unsupported(torch.zeros(4, 4, 4))


def test_sparsify_csr_measures_the_cpu_kernels_too(tmp_path):
    model = nn.Sequential(nn.Linear(64, 32))
    with torch.no_grad():
        model[0].weight.mul_(torch.rand(32, 64) < 0.05)
    x = torch.randn(3, 64)
    expected = model(x)
    timed = []

    def timer(fn):  # the CPU kernels measured fastest
        name = fn.__defaults__[0].name
        timed.append(name)
        return {"dense": 3.0, "csr": 2.0, "csr_torch": 2.5, "cpu_sparse": 1.0}[name]

    report = sparsify_(model, "csr", dispatcher=Dispatcher(timer=timer, cache_file=None))
    assert report.swapped == {"0": ["dense", "csr", "csr_torch", "cpu_sparse"]}
    layer = model[0]
    assert isinstance(layer, SparseLinear)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    assert timed == ["dense", "csr", "csr_torch", "cpu_sparse"] and layer.chosen == {
        3: "cpu_sparse"
    }
