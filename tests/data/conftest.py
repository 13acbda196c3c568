import pytest

from sparsetorch.data import load


@pytest.fixture(scope="session")
def digits():
    return load("digits")
