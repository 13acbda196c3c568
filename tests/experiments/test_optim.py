import math

import pytest
import torch

from sparsetorch.experiments.data_order import batch_indices, epoch_order, steps_per_epoch
from sparsetorch.experiments.hparams import TrainingHparams
from sparsetorch.experiments.optim import build_optimizer, lr_at


def hp(**kw) -> TrainingHparams:
    return TrainingHparams(lr=0.1, **kw)


def test_constant_schedule():
    assert [lr_at(hp(), s, 10) for s in (0, 5, 9)] == [0.1, 0.1, 0.1]


def test_step_schedule_multiplies_by_gamma_at_each_milestone():
    h = hp(lr_schedule="step", milestones=(3, 6), gamma=0.5)
    assert [lr_at(h, s, 10) for s in range(8)] == [0.1] * 3 + [0.05] * 3 + [0.025] * 2


def test_cosine_schedule_golden_values():
    h = hp(lr_schedule="cosine")
    assert lr_at(h, 0, 100) == pytest.approx(0.1)
    assert lr_at(h, 50, 100) == pytest.approx(0.05)
    assert lr_at(h, 25, 100) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert lr_at(h, 100, 100) == pytest.approx(0.0, abs=1e-12)


def test_linear_warmup_multiplies_any_schedule():
    h = hp(warmup_steps=4, lr_schedule="cosine")
    expected = [0.1 * (s + 1) / 4 * 0.5 * (1 + math.cos(math.pi * s / 20)) for s in range(4)]
    assert [lr_at(h, s, 20) for s in range(4)] == pytest.approx(expected)
    assert lr_at(h, 4, 20) == pytest.approx(0.05 * (1 + math.cos(math.pi * 4 / 20)))


@pytest.mark.parametrize(
    ("name", "cls", "momentum"),
    [
        ("sgd", torch.optim.SGD, 0),
        ("momentum", torch.optim.SGD, 0.8),
        ("adam", torch.optim.Adam, None),
        ("adamw", torch.optim.AdamW, None),
    ],
)
def test_optimizers_by_name(name, cls, momentum):
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = build_optimizer(params, TrainingHparams(optimizer=name, momentum=0.8, weight_decay=0.01))
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["weight_decay"] == 0.01
    if momentum is not None:
        assert group["momentum"] == momentum


def test_unknown_optimizer_lists_known():
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'; known: adam, adamw, momentum"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], TrainingHparams(optimizer="lamb"))


def test_epoch_order_is_a_seeded_permutation():
    a = epoch_order(1000, data_seed=3, epoch=2)
    assert torch.equal(torch.sort(a).values, torch.arange(1000))
    assert torch.equal(a, epoch_order(1000, 3, 2))
    assert not torch.equal(a, epoch_order(1000, 3, 1))
    assert not torch.equal(a, epoch_order(1000, 4, 2))


def test_batches_cover_an_epoch_once_with_a_short_last_batch():
    n, batch = 103, 10
    order = epoch_order(n, 0, 0)
    assert steps_per_epoch(n, batch) == 11
    batches = [batch_indices(order, p, batch) for p in range(11)]
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert torch.equal(torch.cat(batches), order)
