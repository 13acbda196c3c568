"""``--dataset PATH.npz``: arrays in, the runner's tensors out, validation carved by a seeded
shuffle; every malformed file is one clear error."""

import numpy as np
import pytest
import torch

from sparsetorch.data import check_name, digest, load
from sparsetorch.data.npz import load_npz


def arrays(n_train=50, n_test=20, shape=(3, 4), classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.standard_normal((n_train, *shape)),  # float64
        "y_train": rng.integers(0, classes, n_train),
        "x_test": rng.standard_normal((n_test, *shape)),
        "y_test": rng.integers(0, classes, n_test),
    }


def write(path, **data):
    np.savez(path, **data)
    return path


def test_arrays_become_float32_inputs_and_int64_labels_with_a_seeded_validation_split(tmp_path):
    data = arrays()
    path = write(tmp_path / "mine.npz", **data)
    ds = load(str(path), seed=3, val_fraction=0.2)
    assert ds.name == str(path) and ds.input_shape == (3, 4)
    assert ds.num_classes == int(max(data["y_train"].max(), data["y_test"].max())) + 1
    assert (len(ds.train), len(ds.val), len(ds.test)) == (40, 10, 20)
    # the validation split: the first 10 of randperm(50) seeded with split_seed (independent)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(3))
    x = torch.from_numpy(data["x_train"]).float()
    y = torch.from_numpy(data["y_train"]).long()
    assert torch.equal(ds.val.x, x[perm[:10]]) and torch.equal(ds.val.y, y[perm[:10]])
    assert torch.equal(ds.train.x, x[perm[10:]]) and torch.equal(ds.train.y, y[perm[10:]])
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert torch.equal(ds.test.x, torch.from_numpy(data["x_test"]).float())


def test_uint8_pixels_are_scaled_and_integer_inputs_are_token_ids(tmp_path):
    data = arrays()
    pixels = np.arange(50 * 12, dtype=np.uint8).reshape(50, 3, 4)
    data.update(x_train=pixels, x_test=pixels[:20])
    ds = load_npz(write(tmp_path / "u8.npz", **data), val_fraction=0.1)
    assert torch.equal(ds.test.x, torch.from_numpy(pixels[:20]).float() / 255.0)
    tokens = np.arange(50 * 12, dtype=np.int32).reshape(50, 12) % 7
    data.update(x_train=tokens, x_test=tokens[:20])
    ds = load_npz(write(tmp_path / "tok.npz", **data))
    assert ds.test.x.dtype == torch.int64 and torch.equal(
        ds.test.x, torch.from_numpy(tokens[:20]).long()
    )


def test_a_given_validation_split_is_used_as_it_is(tmp_path):
    data = arrays()
    data.update(x_val=data["x_test"][:7], y_val=data["y_test"][:7])
    ds = load_npz(write(tmp_path / "v.npz", **data))
    assert len(ds.train) == 50 and torch.equal(ds.val.y, torch.from_numpy(data["y_test"][:7]))


def test_num_classes_option(tmp_path):
    path = write(tmp_path / "c.npz", **arrays(classes=3))
    assert load_npz(path, num_classes=10).num_classes == 10
    with pytest.raises(ValueError, match="a label is 2, but num_classes is 2"):
        load_npz(path, num_classes=2)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"y_train": None}, ValueError, "lacks the array\\(s\\) y_train"),
        ({"y_train": np.zeros(49, dtype=np.int64)}, ValueError, "50 inputs but 49 labels"),
        ({"y_train": np.zeros(50)}, TypeError, "integer class indices"),
        ({"y_test": -np.ones(20, dtype=np.int64)}, ValueError, "negative class index"),
        ({"x_test": np.zeros((20, 4, 3))}, ValueError, "test inputs have shape \\(4, 3\\)"),
        ({"x_val": np.zeros((5, 3, 4))}, ValueError, "only one of x_val, y_val"),
        ({"extra": np.zeros(3)}, ValueError, "unknown array\\(s\\) extra"),
        ({"x_train": np.array([object()] * 50)}, ValueError, "not a readable .npz"),
    ],
)
def test_malformed_files_are_one_clear_error(tmp_path, change, error, match):
    data = {**arrays(), **change}
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **data)
    with pytest.raises(error, match=match):
        load_npz(path)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_name(str(tmp_path / "nope.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"not a readable \.npz file"):
        load_npz(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="val_fraction must be in \\(0, 1\\)"):
        load_npz(write(tmp_path / "ok.npz", **arrays()), val_fraction=1.5)
    with pytest.raises(ValueError, match="data_dir is not used"):
        load(str(tmp_path / "ok.npz"), data_dir=str(tmp_path))


def test_digest_follows_the_bytes(tmp_path):
    path = write(tmp_path / "d.npz", **arrays())
    first = digest(str(path))
    assert first == digest(str(path)) and len(first) == 16
    write(path, **arrays(seed=1))
    assert digest(str(path)) != first
    assert digest("digits") is None
