"""The experiment runner on your own data and model: tensors (or any torch Dataset or
DataLoader) given to ``train``, a run directory that is reused when run again, then the same
data as an .npz file from the command line.

    python examples/own_data_runner.py
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from sparsetorch.experiments import Hparams, train

torch.manual_seed(0)
x = torch.randn(600, 2, 8)  # (N, 2, 8) inputs
y = (x[:, 0].sum(1) > x[:, 1].sum(1)).long()  # 2 classes

hp = Hparams()
hp.dataset.name = "pairs"  # names your data in reports
hp.model.name = "mlp"  # sized by the data: 16 inputs -> 64 -> 2 classes
hp.model.options = {"hidden": "64"}
hp.sparsity.method, hp.sparsity.sparsity = "set", 0.8
hp.training.steps, hp.training.eval_every, hp.training.batch_size = 120, 40, 32

with tempfile.TemporaryDirectory() as out:
    loader = DataLoader(TensorDataset(x[:500], y[:500]), batch_size=100)  # read once
    result = train(hp, out, dataset={"train": loader, "test": (x[500:], y[500:])})
    print(result.summary())
    assert result.final["test_acc"] > 0.8 and abs(result.final["sparsity"] - 0.8) < 0.01
    again = train(hp, out, dataset={"train": loader, "test": (x[500:], y[500:])})
    assert again.reused  # same data (by digest) and hparams: read back, not trained

    path = Path(out) / "pairs.npz"
    np.savez(
        path,
        x_train=x[:500].numpy(),
        y_train=y[:500].numpy(),
        x_test=x[500:].numpy(),
        y_test=y[500:].numpy(),
    )
    command = [sys.executable, "-m", "sparsetorch", "train", "--dataset", str(path), "--model", "mlp",
               "--model-option", "hidden=64", "--steps", "40", "--out", str(Path(out) / "runs")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    print(done.stdout.strip().splitlines()[-1])
    assert "mlp on " in done.stdout and "pairs.npz (dense, sparsity 0.000)" in done.stdout
print("ok: your data, your model")
