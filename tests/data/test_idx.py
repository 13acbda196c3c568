import gzip
import struct
import warnings

import numpy as np
import pytest
import torch

from sparsetorch import data
from sparsetorch.data.fashion_mnist import FILES, locate
from sparsetorch.data.idx import read_idx


def _write_idx(path, array, magic_type=0x08):
    header = bytes([0, 0, magic_type, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


def _fake_fashion_dir(tmp_path, n_train=60, n_test=20, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / (FILES["train_images"] + suffix), rng.integers(0, 256, (n_train, 28, 28)))
    _write_idx(tmp_path / (FILES["train_labels"] + suffix), rng.integers(0, 10, (n_train,)))
    _write_idx(tmp_path / (FILES["test_images"] + suffix), rng.integers(0, 256, (n_test, 28, 28)))
    _write_idx(tmp_path / (FILES["test_labels"] + suffix), rng.integers(0, 10, (n_test,)))
    return tmp_path


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    _write_idx(path, arr)
    np.testing.assert_array_equal(read_idx(path), arr)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad)
    good = tmp_path / "good"
    _write_idx(good, np.zeros((4, 5), np.uint8))
    good.write_bytes(good.read_bytes()[:-3])
    with pytest.raises(ValueError, match="payload"):
        read_idx(good)
    with pytest.raises(ValueError, match="rank 3"):
        _write_idx(good, np.zeros((4, 5), np.uint8))
        read_idx(good, expect_ndim=3)


@pytest.mark.parametrize("gz", [True, False])
def test_explicit_dir_split_sizes_and_determinism(tmp_path, gz):
    directory = _fake_fashion_dir(tmp_path, gz=gz)
    # the real split holds out 5000; the fake set is small so use the loader's n_val argument
    from sparsetorch.data.fashion_mnist import load_fashion_mnist

    a = load_fashion_mnist(directory, n_val=10, seed=3)
    b = load_fashion_mnist(directory, n_val=10, seed=3)
    assert (len(a.train), len(a.val), len(a.test)) == (50, 10, 20)
    assert a.train.x.shape[1:] == (1, 28, 28) and a.train.y.dtype == torch.int64
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    c = load_fashion_mnist(directory, n_val=10, seed=4)
    assert not torch.equal(a.val.y, c.val.y) or not torch.equal(a.val.x, c.val.x)
    # train and val partition the training file: no example in both
    assert len(a.train) + len(a.val) == 60


def test_explicit_dir_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="lacks Fashion-MNIST files"):
        locate(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        data.load("fashion-mnist", data_dir=tmp_path / "nope")


def test_fallback_to_digits_warns(monkeypatch):
    monkeypatch.setattr("sparsetorch.data.fashion_mnist.DEFAULT_DIRS", ())
    monkeypatch.delenv("SPARSETORCH_FASHION_MNIST", raising=False)
    with pytest.warns(data.DataFallbackWarning, match="digits"):
        ds = data.load("fashion-mnist")
    assert ds.name == "digits" and (len(ds.train), len(ds.val), len(ds.test)) == (1297, 200, 300)
    assert ds.train.x.shape[1:] == (1, 28, 28)


def test_unknown_dataset_lists_known():
    with pytest.raises(ValueError, match=r"known: .*digits.*fashion-mnist"):
        data.load("cifar-1000")


def test_real_fashion_mnist_split_if_installed():
    if locate() is None:
        pytest.skip("dataset-fashion-mnist not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = data.load("fashion-mnist")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (55000, 5000, 10000)
    assert torch.bincount(ds.test.y).tolist() == [1000] * 10
    assert abs(ds.train.x.mean().item()) < 0.01 and abs(ds.train.x.std().item() - 1) < 0.01
