"""scikit-learn's bundled 8x8 digits (1797 images), upsampled to 28x28 so models fit both."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sparsetorch.data.splits import Dataset, split_train_val


def load_digits(seed: int = 0, size: int = 28) -> Dataset:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(bunch.target, dtype=torch.int64)
    # fixed split: 1297 train / 200 val / 300 test
    rest, test = split_train_val(x, y, 300, seed)
    train, val = split_train_val(rest.x, rest.y, 200, seed + 1)
    return Dataset("digits", train, val, test, 10, (1, size, size))
