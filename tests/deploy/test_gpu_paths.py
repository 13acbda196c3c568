"""GPU paths equal the dense result (run on the GPU machine: pytest -m gpu tests/deploy)."""

import pytest
import torch
from torch import nn

from sparsetorch.deploy import PATHS, Dispatcher, sparsify_
from tests.kernels.test_nm_reference import random_2to4

pytestmark = pytest.mark.gpu

DEV = "cuda"


def _weight_2to4(n=256, k=512, dtype=torch.bfloat16):
    return random_2to4(n, k).to(device=DEV, dtype=dtype)


@pytest.mark.parametrize(
    "name", ["semi_structured", "cslt", "cslt_graph", "nm_triton", "nm_reference"]
)
@pytest.mark.parametrize("m", [1, 3, 8, 16, 128, 1000])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_2to4_paths_equal_dense(name, m, dtype):
    w = _weight_2to4(dtype=dtype)
    b = torch.randn(w.shape[0], device=DEV, dtype=dtype)
    reason = PATHS.lookup(name).unsupported(w)
    assert reason is None, reason
    path = PATHS.lookup(name)(w, b)
    x = torch.randn(m, w.shape[1], device=DEV, dtype=dtype)
    expected = torch.nn.functional.linear(x.float(), w.float(), b.float())
    torch.testing.assert_close(path(x).float(), expected, rtol=2e-2, atol=2e-1)


def test_bsr_and_csr_paths_equal_dense():
    w = torch.randn(256, 512, device=DEV)
    blocks = torch.rand(4, 8, device=DEV) < 0.2
    w = w * blocks.repeat_interleave(64, 0).repeat_interleave(64, 1)
    x = torch.randn(33, 512, device=DEV)
    for name, dtype, tol in (("bsr", torch.bfloat16, 2e-1), ("csr", torch.float32, 1e-4)):
        wd = w.to(dtype)
        path = PATHS.lookup(name)(wd, None)
        expected = x.to(dtype).float() @ wd.float().T
        torch.testing.assert_close(path(x.to(dtype)).float(), expected, rtol=2e-2, atol=tol)


def test_sparsify_on_gpu_never_slower_choice_and_equal(tmp_path):
    model = nn.Sequential(nn.Linear(512, 256), nn.GELU(), nn.Linear(256, 512))
    model = model.to(DEV, torch.bfloat16)
    with torch.no_grad():
        model[0].weight.copy_(_weight_2to4(256, 512))
        model[2].weight.copy_(_weight_2to4(512, 256))
    x = torch.randn(64, 512, device=DEV, dtype=torch.bfloat16)
    expected = model(x).float()
    report = sparsify_(model, "2:4", dispatcher=Dispatcher(cache_file=tmp_path / "d.json"))
    assert set(report.swapped) == {"0", "2"}
    torch.testing.assert_close(model(x).float(), expected, rtol=2e-2, atol=2e-1)
    decisions = model[0].dispatcher.decisions
    for d in decisions.values():
        assert d["seconds"][d["choice"]] <= d["seconds"]["dense"]
