"""Dynamic sparse training on the sparse CPU kernels: the runner's ``--sparse-kernels`` gives
the losses and masks of masked dense training (RigL's grow step on the dense gradient of its
update iterations, SET and GMP changing masks between steps)."""

from __future__ import annotations

import pytest
import torch

import sparsetorch as st
from sparsetorch.experiments import Hparams, train
from sparsetorch.experiments.flags import add_hparam_arguments, hparams_from_args
from sparsetorch.masking import SUFFIX
from sparsetorch.models.lenet import LeNet300100


def _hparams(method: str, sparse_kernels: bool) -> Hparams:
    hp = Hparams()
    hp.dataset.name = "digits"
    hp.dataset.train_size, hp.dataset.val_size, hp.dataset.test_size = 400, 64, 64
    hp.training.steps, hp.training.batch_size, hp.training.eval_every = 24, 16, 8
    hp.training.sparse_kernels = sparse_kernels
    hp.sparsity.method, hp.sparsity.sparsity = method, 0.9
    hp.sparsity.options = {"delta_t": 5} if method != "gmp" else {"delta_t": 5, "t_end": 20}
    return hp


@pytest.mark.parametrize("method", ["rigl", "set", "gmp"])
def test_runner_sparse_kernels_reproduce_masked_dense_training(method):
    dense = train(_hparams(method, False), progress=False)
    fast = train(_hparams(method, True), progress=False, save_states_at=[1])
    assert type(fast.model.fc1).__name__ == "AcceleratedLinear"
    assert type(dense.model.fc1).__name__ == "Linear"
    assert len(dense.metrics) == len(fast.metrics) == 4
    for a, b in zip(dense.metrics, fast.metrics):
        for key in ("train_loss", "val_loss", "test_loss"):
            if a[key] is not None:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["step"], key)
        assert b["sparsity"] == a["sparsity"]
    masks_a, masks_b = st.masks(dense.model), st.masks(fast.model)
    assert masks_a.keys() == masks_b.keys()
    assert all(torch.equal(masks_a[k], masks_b[k]) for k in masks_a)
    start = fast.state_at(1)  # the topology moved during training: the equality is not trivial
    assert any(not torch.equal(start[k + SUFFIX], m) for k, m in masks_b.items())


def test_rigl_asks_for_the_dense_gradient_only_on_update_iterations():
    torch.manual_seed(0)
    model = LeNet300100((1, 8, 8), 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rigl = st.RigL(model, opt, sparsity=0.9, total_steps=40, delta_t=4)
    st.accelerate_(model)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    kinds = []
    for _ in range(10):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        kinds.append(model.fc1.last_grad_dense)
        rigl.step()
    assert kinds == [t in (4, 8) for t in range(10)]  # updates at t = 4, 8
    assert len(rigl.history) == 2
    # a misaligned counter is caught instead of growing on a sparse gradient
    rigl.t = 11
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    with pytest.raises(RuntimeError, match="RigL grows on the dense gradient"):
        rigl.before_optimizer_step(12)


def test_sparse_kernels_flag_and_its_checks():
    import argparse

    parser = argparse.ArgumentParser()
    add_hparam_arguments(parser)
    assert hparams_from_args(parser.parse_args([])).training.sparse_kernels is False
    hp = hparams_from_args(parser.parse_args(["--sparse-kernels"]))
    assert hp.training.sparse_kernels is True
    assert hp.identity()["training.sparse_kernels"] is True  # its own run directory
    assert "training.sparse_kernels" not in Hparams().identity()
    assert (
        hparams_from_args(parser.parse_args(["--no-sparse-kernels"])).training.sparse_kernels
        is False
    )
    from sparsetorch.experiments.sparse_kernels import check_sparse_kernels

    with pytest.raises(ValueError, match="--sparse-kernels needs --device cpu"):
        check_sparse_kernels(torch.device("cuda"), None)  # (a device object: no GPU needed)
