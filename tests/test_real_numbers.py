"""Every fraction-like argument (sparsity, density, rate, alpha, temperature) takes any real
number the way numpy users pass it (np.float32, np.float64, np.int64) with the same result as
the Python float, and refuses bools (Python and numpy) with one clear error; counts take numpy
integers too."""

import numpy as np
import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch.algorithms.at_init.synflow import synflow
from sparsetorch.criteria.grasp import grasp_scores
from sparsetorch.distributions import get as get_distribution
from sparsetorch.experiments import Hparams
from sparsetorch.lottery import IMPConfig
from sparsetorch.lottery.rounds import check_rate
from sparsetorch.patterns import get as get_pattern
from sparsetorch.post_training.pipeline import make_target
from sparsetorch.post_training.sparsegpt import SparseGPT
from sparsetorch.schedules.cosine import CosineDecay
from sparsetorch.schedules.gradual import Gradual

REALS = [np.float32(0.5), np.float64(0.5), np.float16(0.5)]
BOOLS = [True, np.bool_(True)]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))


def _sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1)


def _masks(model):
    return {k: v.clone() for k, v in model.state_dict().items() if k.endswith("_mask")}


CALLS = {
    "prune": lambda x: _masks(st.prune(_model(), sparsity=x)),
    "GMP": lambda x: st.GMP((m := _model()), _sgd(m), sparsity=x, total_steps=10).sparsity,
    "SET alpha": lambda x: (
        st.SET((m := _model()), _sgd(m), sparsity=0.5, alpha=x, total_steps=10, seed=0).alpha
    ),
    "RigL": lambda x: _masks(
        st.RigL((m := _model()), _sgd(m), sparsity=x, total_steps=10, seed=0).model
    ),
    "synflow": lambda x: _masks(synflow(_model(), (16,), x, iterations=2)),
    "distribution": lambda x: get_distribution("erk").densities({"a": (8, 8), "b": (4, 8)}, x),
    "pattern": lambda x: get_pattern("unstructured").units_for((8, 8), x),
    "schedule": lambda x: Gradual(x, 0, 10).sparsity_at(10),
    "cosine": lambda x: CosineDecay(x, 10).fraction_at(0),
    "lottery rate": lambda x: check_rate(x),
    "lottery hparams": lambda x: IMPConfig(prune_rate=x).validate().prune_rate,
    "hparams": lambda x: Hparams.from_dict({"sparsity": {"sparsity": x}}).sparsity.sparsity,
    "oneshot sparsity": lambda x: make_target(x, None).density,
    "sparsegpt dampening": lambda x: SparseGPT(dampening=x).dampening,
    "grasp temperature": lambda x: grasp_scores(
        _model(), ["0.weight"], (torch.randn(4, 16), torch.tensor([0, 1, 2, 3])), temperature=x
    )["0.weight"],
}


def _same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b and type(a) is type(b)


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("value", REALS, ids=lambda v: type(v).__name__)
def test_numpy_reals_give_the_python_float_result(name, value):
    _same(CALLS[name](value), CALLS[name](0.5))


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("value", BOOLS, ids=lambda v: type(v).__name__)
def test_bools_are_refused(name, value):
    with pytest.raises((TypeError, ValueError), match="must be"):
        CALLS[name](value)


def test_numpy_integer_counts():
    model = _model()
    algo = st.GMP(model, _sgd(model), sparsity=0.5, total_steps=np.int64(20), delta_t=np.int32(5))
    assert algo.delta_t == 5 and type(algo.delta_t) is int
    assert CosineDecay(0.3, np.int64(10), np.int64(2)).frequency == 2
    frequency = Gradual(0.5, 0, 10, np.int64(2)).frequency
    assert frequency == 2 and type(frequency) is int
    rounds = IMPConfig(rounds=np.int64(3)).validate().rounds
    assert rounds == 3 and type(rounds) is int
    blocksize = SparseGPT(blocksize=np.int32(64)).blocksize
    assert blocksize == 64 and type(blocksize) is int
    for refused in (lambda: Gradual(0.5, 0, 10, np.bool_(True)), lambda: SparseGPT(blocksize=True)):
        with pytest.raises(ValueError, match="must be an int"):
            refused()
    hp = Hparams.from_dict({"training": {"steps": np.int64(12), "lr": np.float32(0.25)}})
    assert hp.training.steps == 12 and type(hp.training.steps) is int
    assert hp.training.lr == 0.25 and type(hp.training.lr) is float
    with pytest.raises(TypeError, match="must be"):
        Hparams.from_dict({"training": {"steps": np.bool_(True)}})
