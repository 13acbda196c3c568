"""``as_dataset``: tensors, a TensorDataset, a DataLoader, map-style and iterable Datasets and
mappings of them all give the same tensors; missing splits are carved by a seeded shuffle."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset
from torch.utils.data import Dataset as TorchDataset

from sparsetorch.data import Dataset, as_dataset


def data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 3, generator=g), torch.randint(0, 4, (n,), generator=g)


class MapStyle(TorchDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i].numpy(), int(self.y[i])  # arrays and ints, as many datasets return


class Stream(IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y))


SOURCES = {
    "pair": lambda x, y: (x, y),
    "numpy pair": lambda x, y: (x.numpy(), y.numpy()),
    "TensorDataset": lambda x, y: TensorDataset(x, y),
    "DataLoader": lambda x, y: DataLoader(TensorDataset(x, y), batch_size=7),
    "map-style": MapStyle,
    "iterable": Stream,
}


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_every_source_gives_the_same_splits(kind):
    x, y = data()
    ds = as_dataset(SOURCES[kind](x, y), seed=2)
    # independent: test = first 4 of randperm(40, seed 2); val = first 4 of randperm(36, seed 3)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(2))
    rest = perm[4:]
    perm2 = torch.randperm(36, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ds.test.x, x[perm[:4]]) and torch.equal(ds.test.y, y[perm[:4]])
    assert torch.equal(ds.val.x, x[rest[perm2[:4]]])
    assert torch.equal(ds.train.y, y[rest[perm2[4:]]])
    assert ds.name == "custom" and ds.input_shape == (2, 3)
    assert ds.num_classes == int(y.max()) + 1


def test_a_mapping_of_splits_keeps_the_given_ones():
    (x, y), (xt, yt) = data(), data(10, seed=1)
    ds = as_dataset(
        {"train": DataLoader(TensorDataset(x, y), batch_size=8), "test": (xt, yt)},
        "mine",
        num_classes=6,
    )
    assert torch.equal(ds.test.x, xt) and len(ds.train) + len(ds.val) == 40
    assert (ds.name, ds.num_classes) == ("mine", 6)
    full = as_dataset({"train": (x, y), "val": (xt, yt), "test": (xt, yt)})
    assert torch.equal(full.train.x, x) and torch.equal(full.val.y, yt)


def test_a_shuffled_loader_holds_the_same_examples():
    x, y = data()
    loader = DataLoader(TensorDataset(x, y), batch_size=6, shuffle=True)
    ds = as_dataset({"train": loader, "val": (x[:2], y[:2]), "test": (x[:2], y[:2])})
    order = torch.argsort(ds.train.x[:, 0, 0])
    expected = torch.argsort(x[:, 0, 0])
    assert torch.equal(ds.train.x[order], x[expected]) and torch.equal(
        ds.train.y[order], y[expected]
    )


def test_a_sparsetorch_dataset_is_returned_as_it_is(digits):
    assert as_dataset(digits) is digits and isinstance(digits, Dataset)


@pytest.mark.parametrize(
    ("source", "error", "match"),
    [
        (torch.randn(4, 3), TypeError, "must be an \\(inputs, labels\\) pair"),
        ({"val": (torch.randn(4, 2), torch.zeros(4))}, ValueError, "needs the key 'train'"),
        (
            {"train": (torch.randn(9, 2), torch.zeros(9, dtype=torch.long)), "dev": 1},
            ValueError,
            "'dev'",
        ),
        ((torch.randn(9, 2), torch.rand(9)), TypeError, "integer class indices"),
        (
            (torch.randn(9, 2), torch.zeros(8, dtype=torch.long)),
            ValueError,
            "9 inputs but 8 labels",
        ),
        (TensorDataset(torch.randn(9, 2)), ValueError, "TensorDataset of \\(inputs, labels\\)"),
        (
            DataLoader(TensorDataset(torch.randn(9, 2)), batch_size=3),
            TypeError,
            "batch 0 is a list",
        ),
        ((torch.randn(1, 2), torch.zeros(1, dtype=torch.long)), ValueError, "too few"),
    ],
)
def test_bad_data_is_one_clear_error(source, error, match):
    with pytest.raises(error, match=match):
        as_dataset(source)


def test_object_arrays_are_refused():
    with pytest.raises(TypeError, match="array of Python objects"):
        as_dataset((np.array([object()] * 9), np.zeros(9, dtype=np.int64)))
