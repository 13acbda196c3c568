"""A model or tensor on the meta device holds no data: every entry point that would read its
values says so in one TypeError, instead of an internal error from deep inside torch (or, for
loading a checkpoint into it, silently loading nothing)."""

import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch.algorithms.at_init.snip import snip
from sparsetorch.checkpoint import load, save
from sparsetorch.experiments import Hparams, train
from sparsetorch.formats import BSR, COO, CSR, NM


def _meta_model():
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))


def _meta_sgd():
    model = _meta_model()
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


W = torch.zeros(8, 8, device="meta")
CALLS = {
    "prune": lambda: st.prune(_meta_model(), sparsity=0.5),
    "sparsity": lambda: st.sparsity(_meta_model()),
    "density of a tensor": lambda: st.density(W),
    "report": lambda: st.report(_meta_model()),
    "sparsify_": lambda: st.sparsify_(_meta_model()),
    "GMP": lambda: st.GMP(*_meta_sgd(), sparsity=0.5, total_steps=10),
    "RigL": lambda: st.RigL(*_meta_sgd(), sparsity=0.5, total_steps=10),
    "snip": lambda: snip(_meta_model(), (torch.randn(2, 8), torch.tensor([0, 1])), 0.5),
    "CSR.from_dense": lambda: CSR.from_dense(W),
    "COO.from_dense": lambda: COO.from_dense(W),
    "BSR.from_dense": lambda: BSR.from_dense(W, (4, 4)),
    "NM.from_dense": lambda: NM.from_dense(W),
    "save": lambda: save(_meta_model(), "unused.safetensors"),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_meta_inputs_are_one_clear_error(name):
    with pytest.raises(TypeError, match="meta device"):
        CALLS[name]()


def test_loading_a_checkpoint_into_a_meta_model_is_refused(tmp_path):
    path = save(nn.Linear(8, 4), tmp_path / "m.safetensors")
    with torch.device("meta"):
        model = nn.Linear(8, 4)
    with pytest.raises(TypeError, match=r"meta device.*to_empty"):
        load(path, model)


def test_training_a_meta_model_is_refused_before_anything_is_written(tmp_path):
    hp = Hparams()
    hp.dataset.name = "digits"
    hp.training.steps = 2
    with pytest.raises(TypeError, match="meta device"):
        train(hp, tmp_path, model=_meta_model())
    assert list(tmp_path.iterdir()) == []
