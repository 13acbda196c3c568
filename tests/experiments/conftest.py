import pytest

from sparsetorch.data import load
from sparsetorch.experiments import Hparams


@pytest.fixture(scope="session")
def digits():
    return load("digits")


@pytest.fixture
def tiny_hp():
    """LeNet-300-100 on 256 digits: 5 steps per epoch, evaluation every 3 steps."""
    hp = Hparams()
    hp.dataset.name = "digits"
    hp.dataset.train_size = 256
    hp.dataset.val_size = 100
    hp.dataset.test_size = 100
    hp.training.batch_size = 52
    hp.training.steps = 12
    hp.training.eval_every = 3
    return hp
