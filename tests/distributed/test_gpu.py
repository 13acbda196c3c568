"""DDP and FSDP2 on two GPUs (NCCL): RigL at 90% and a global one-shot prune give, on every
rank, the masks of the same training on one GPU (float64; see tests/distributed/common.py).
Run on the 2-GPU machine: ``pytest -m gpu tests/distributed``."""

from __future__ import annotations

import pytest
import torch

import sparsetorch as st
from tests.distributed import scenarios
from tests.distributed.common import dataset, full_masks, mlp, save_data, train_api
from tests.distributed.spawn import run_ranks

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def two_gpus(tmp_path_factory):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA GPUs")
    out = tmp_path_factory.mktemp("gpu")
    data_file = save_data(out / "fmnist.pt")
    results = run_ranks(
        scenarios.device_session, 2, out / "results", str(data_file), "cuda", backend="nccl"
    )
    for rank, result in enumerate(results):
        if isinstance(result, tuple) and result[0] == "error":
            pytest.fail(f"rank {rank} failed: {result[1]}: {result[2]}")
    return results, data_file


def test_rigl_on_two_gpus_equals_one_gpu(two_gpus):
    results, data_file = two_gpus
    model = mlp().cuda()
    want = train_api("rigl", model, model, dataset(data_file), device="cuda")
    assert len(want["masks"]) == 4
    for rank in (0, 1):
        for mode in ("ddp", "fsdp"):
            got = results[rank][mode]
            assert got["checked"] == [3, 3, 3]
            assert got["history"] == want["history"]
            for g, w in zip(got["masks"], want["masks"], strict=True):
                for name in w:
                    assert torch.equal(g[name], w[name]), (rank, mode, name)


def test_global_prune_of_gpu_shards_equals_one_gpu(two_gpus):
    results, _ = two_gpus
    model = mlp().cuda()
    st.prune(model, sparsity=0.9, distribution="global")
    for rank in (0, 1):
        for name, mask in full_masks(model).items():
            assert torch.equal(results[rank]["prune"][name], mask), (rank, name)
