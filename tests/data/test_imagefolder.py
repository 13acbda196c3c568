"""``--dataset imagefolder:DIR``: the pixels Pillow decodes, classes = sorted subfolders, both
layouts, resizing, and one clear error for each malformed folder."""

import numpy as np
import pytest
import torch
from PIL import Image

from sparsetorch.data import check_name, digest, load
from sparsetorch.data.imagefolder import load_imagefolder, scan


def draw(path, pixels, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode=mode).save(path)
    return pixels


def gray_folder(root, per_class=10, size=(6, 5), classes=("cat", "ant", "bee")):
    """PNGs of seeded random pixels; returns {relative path: (pixels, label)}."""
    rng = np.random.default_rng(0)
    drawn = {}
    for label, name in enumerate(sorted(classes)):
        for i in range(per_class):
            pixels = rng.integers(0, 256, size, dtype=np.uint8)
            drawn[f"{name}/{i:02d}.png"] = (draw(root / name / f"{i:02d}.png", pixels), label)
    return drawn


def test_pixels_labels_and_splits_of_one_folder(tmp_path):
    drawn = gray_folder(tmp_path)
    (tmp_path / "ant" / "notes.txt").write_text("ignored")
    ds = load(f"imagefolder:{tmp_path}", seed=5, normalize=False)
    assert ds.classes == ("ant", "bee", "cat") and ds.num_classes == 3
    assert ds.input_shape == (1, 6, 5)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (24, 3, 3)
    # independent: the sorted files, test = first 3 of randperm(30, seed 5), val = first 3 of
    # randperm(27, seed 6) over the rest
    files = sorted(drawn)
    x = torch.stack([torch.from_numpy(drawn[f][0]).float()[None] / 255 for f in files])
    y = torch.tensor([drawn[f][1] for f in files])
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(5))
    assert torch.equal(ds.test.x, x[perm[:3]]) and torch.equal(ds.test.y, y[perm[:3]])
    rest_x, rest_y = x[perm[3:]], y[perm[3:]]
    perm2 = torch.randperm(27, generator=torch.Generator().manual_seed(6))
    assert torch.equal(ds.val.x, rest_x[perm2[:3]]) and torch.equal(ds.train.y, rest_y[perm2[3:]])


def test_normalisation_uses_the_training_splits_channel_statistics(tmp_path):
    gray_folder(tmp_path)
    raw = load_imagefolder(tmp_path, normalize=False)
    ds = load_imagefolder(tmp_path)
    mean, std = raw.train.x.mean(), raw.train.x.std()
    assert torch.allclose(ds.test.x, (raw.test.x - mean) / std, atol=1e-6)
    assert abs(float(ds.train.x.mean())) < 1e-5 and abs(float(ds.train.x.std()) - 1) < 1e-4


def test_train_test_layout_rgb_and_resize(tmp_path):
    rng = np.random.default_rng(1)
    drawn = {}
    for split in ("train", "test"):
        for name in ("b", "a"):
            for i in range(4):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                drawn[split, name, i] = draw(tmp_path / split / name / f"{i}.png", pixels)
    # one grayscale image among RGB ones: the folder is RGB, the gray one converted
    draw(tmp_path / "train" / "a" / "9.png", np.full((8, 8), 77, dtype=np.uint8))
    ds = load_imagefolder(tmp_path, normalize=False, val_fraction=0.25, size="4x6")
    assert ds.classes == ("a", "b") and ds.input_shape == (3, 4, 6)
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (9, 8)
    expected = np.array(
        Image.fromarray(drawn["test", "a", 0]).resize((6, 4), Image.Resampling.BILINEAR)
    )
    assert torch.equal(ds.test.x[0], torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    assert ds.test.y.tolist() == [0] * 4 + [1] * 4
    gray = [x for x in torch.cat([ds.train.x, ds.val.x]) if torch.all(x == 77 / 255)]
    assert len(gray) == 1  # L -> RGB repeats the value in the three channels


def test_mode_option_and_palette_images(tmp_path):
    pixels = np.arange(16, dtype=np.uint8).reshape(4, 4)
    (tmp_path / "c").mkdir()
    for i in range(3):
        Image.fromarray(pixels).convert("P").save(tmp_path / "c" / f"{i}.png")  # palette
    ds = load_imagefolder(tmp_path, normalize=False, mode="L", val_fraction=0.3, test_fraction=0.3)
    assert ds.input_shape == (1, 4, 4)
    assert torch.equal(ds.train.x[0, 0], torch.from_numpy(pixels).float() / 255)
    assert load_imagefolder(
        tmp_path, normalize=False, val_fraction=0.3, test_fraction=0.3
    ).input_shape == (3, 4, 4)


@pytest.mark.parametrize(
    ("setup", "error", "match"),
    [
        (lambda r: r.mkdir(exist_ok=True), ValueError, "no class subfolders"),
        (lambda r: (r / "a").mkdir(parents=True), ValueError, "holds no images"),
        (
            lambda r: [
                draw(r / "a" / "0.png", np.zeros((4, 4), np.uint8)),
                draw(r / "a" / "1.png", np.zeros((5, 4), np.uint8)),
            ],
            ValueError,
            "images differ in size.*size=32x32",
        ),
        (
            lambda r: [
                draw(r / "a" / "0.png", np.zeros((4, 4), np.uint8)),
                (r / "a" / "1.png").write_bytes(b"junk"),
            ],
            ValueError,
            "cannot read image",
        ),
        (
            lambda r: [
                draw(r / s / "a" / "0.png", np.zeros((4, 4), np.uint8))
                for s in ("train", "test", "extra")
            ],
            ValueError,
            "beside other folders \\(extra\\)",
        ),
        (
            lambda r: [
                draw(r / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8)),
                draw(r / "test" / "z" / "0.png", np.zeros((4, 4), np.uint8)),
            ],
            ValueError,
            "class folder\\(s\\) z",
        ),
    ],
)
def test_malformed_folders_are_one_clear_error(tmp_path, setup, error, match):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(error, match=match):
        load_imagefolder(root)


def test_options_and_missing_folder_are_checked(tmp_path):
    gray_folder(tmp_path)
    with pytest.raises(ValueError, match="mode must be one of L, RGB"):
        load_imagefolder(tmp_path, mode="CMYK")
    with pytest.raises(ValueError, match="size must be N or HxW"):
        load_imagefolder(tmp_path, size="big")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        check_name(f"imagefolder:{tmp_path / 'missing'}")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        scan(tmp_path / "missing")


def test_digest_covers_paths_and_bytes(tmp_path):
    gray_folder(tmp_path)
    name = f"imagefolder:{tmp_path}"
    first = digest(name)
    (tmp_path / "ant" / "00.png").rename(tmp_path / "ant" / "zz.png")
    second = digest(name)
    assert second != first
    draw(tmp_path / "ant" / "zz.png", np.zeros((6, 5), np.uint8))
    assert digest(name) not in (first, second)
