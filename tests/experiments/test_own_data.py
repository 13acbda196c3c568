"""The runner on your own data and models: .npz files, image folders, tensors and torch data
given to train(dataset=...), mlp and module:callable; run identities follow the data."""

import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sparsetorch.cli import main
from sparsetorch.experiments import Hparams, load_run, train
from sparsetorch.experiments.result import NONDETERMINISTIC


def strip(rows):
    return [{k: v for k, v in r.items() if k not in NONDETERMINISTIC} for r in rows]


def hparams(name):
    hp = Hparams()
    hp.dataset.name = name
    hp.model.name = "mlp"
    hp.model.options = {"hidden": "16"}
    hp.training.batch_size = 16
    hp.training.steps = 6
    hp.training.eval_every = 3
    return hp


def tensors(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 4, generator=g)
    y = (x.sum((1, 2)) > 0).long() + 2 * (x[:, 0, 0] > 0).long()  # 4 learnable classes
    return x, y


def npz(path, seed=0):
    (x, y), (xt, yt) = tensors(seed=seed), tensors(30, seed=seed + 100)
    np.savez(path, x_train=x.numpy(), y_train=y.numpy(), x_test=xt.numpy(), y_test=yt.numpy())
    return str(path)


def test_an_npz_file_trains_and_its_bytes_are_the_runs_identity(tmp_path):
    name = npz(tmp_path / "Mine.npz")
    result = train(hparams(name), tmp_path / "runs")
    assert result.run_dir.name.startswith("mlp-dense-")
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["dataset"]["input_shape"] == [3, 4] and info["dataset"]["num_classes"] == 4
    assert info["dataset"]["sizes"] == {"train": 72, "val": 8, "test": 30}
    assert result.hparams.dataset.name == name  # the path keeps its case
    assert train(hparams(name), tmp_path / "runs").reused
    npz(tmp_path / "Mine.npz", seed=1)  # other data under the same name: a new run
    again = train(hparams(name), tmp_path / "runs")
    assert not again.reused and again.run_dir != result.run_dir
    assert again.metrics[0]["val_loss"] != result.metrics[0]["val_loss"]


def test_an_image_folder_trains_a_conv_net(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        for i in range(12):
            pixels = rng.integers(0, 128, (12, 12), dtype=np.uint8) + 127 * label
            (tmp_path / "img" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "img" / name / f"{i}.png")
    hp = hparams(f"imagefolder:{tmp_path / 'img'}")
    hp.model.name, hp.model.options = "conv2", {}
    hp.dataset.options = {"val_fraction": 0.2, "test_fraction": 0.2}
    hp.training.steps, hp.training.lr = 12, 3e-3
    result = train(hp, tmp_path / "runs")
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["dataset"]["classes"] == ["dark", "light"]
    assert info["dataset"]["input_shape"] == [1, 12, 12]
    assert result.final["test_acc"] == 1.0  # the two classes differ in brightness


@pytest.mark.parametrize(
    "wrap",
    [
        lambda x, y: (x, y),
        lambda x, y: TensorDataset(x, y),
        lambda x, y: DataLoader(TensorDataset(x, y), batch_size=13),
    ],
    ids=["tensors", "TensorDataset", "DataLoader"],
)
def test_train_takes_tensors_datasets_and_loaders_alike(wrap, tmp_path):
    x, y = tensors()
    reference = train(hparams("custom"), dataset=(x, y))
    result = train(hparams("fashion-mnist"), tmp_path / "runs", dataset=wrap(x, y))
    assert strip(result.metrics) == strip(reference.metrics)
    assert result.hparams.dataset.name == "custom"  # the default name is not kept for your data
    assert "custom" in result.summary()
    loaded = load_run(result.run_dir)
    assert torch.equal(loaded.model.layers[0].weight, result.model.layers[0].weight)


def test_your_data_is_identified_by_its_digest(tmp_path):
    (x, y), hp = tensors(), hparams("blobs")
    first = train(hp, tmp_path, dataset={"train": (x, y), "test": (x[:20], y[:20])})
    assert first.hparams.dataset.name == "blobs"
    assert train(hp, tmp_path, dataset={"train": (x, y), "test": (x[:20], y[:20])}).reused
    x2 = x.clone()
    x2[0, 0, 0] += 1
    other = train(hp, tmp_path, dataset={"train": (x2, y), "test": (x[:20], y[:20])})
    assert not other.reused and other.run_dir != first.run_dir


def test_bad_data_given_to_train_fails_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError, match="dataset must be a sparsetorch Dataset"):
        train(hparams("custom"), tmp_path / "runs", dataset=[1, 2, 3])
    x, y = tensors()
    hp = hparams("custom")
    hp.dataset.options = {"context": 3}
    with pytest.raises(ValueError, match="rejects option\\(s\\) \\{'context': 3\\}"):
        train(hp, tmp_path / "runs", dataset=(x, y))
    assert not (tmp_path / "runs").exists()


def test_missing_files_and_models_fail_before_anything_is_written(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(hparams(str(tmp_path / "none.npz")), tmp_path / "runs")
    hp = hparams(npz(tmp_path / "d.npz"))
    hp.model.name = "sparsetorch_no_such_models:Net"
    with pytest.raises(ValueError, match="cannot import module"):
        train(hp, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


MODEL_FILE = """
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, input_shape, num_classes, width=4):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1], width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.body(x))
"""


def test_the_command_line_trains_your_data_and_your_model(tmp_path, monkeypatch, capsys):
    module = "sparsetorch_test_cli_models"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(MODEL_FILE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, module, raising=False)
    data = npz(tmp_path / "data.npz")
    argv = ["train", "--dataset", data, "--model", f"{module}:TinyNet", "--model-option", "width=5"]
    argv += ["--method", "rigl", "--sparsity", "0.5", "--delta-t", "2", "--steps", "6"]
    argv += ["--batch-size", "16", "--eval-every", "3", "--out", str(tmp_path / "runs")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{module}:TinyNet on {data} (rigl, sparsity 0.500)" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("TinyNet-rigl-")
    saved = Hparams.load(run_dir / "hparams.json")
    assert saved.model.name == f"{module}:TinyNet" and saved.model.options == {"width": 5}
    sys.modules.pop(module, None)
    assert load_run(run_dir).model.head.in_features == 5  # rebuilt from the reference


def test_mlp_hidden_option_on_the_command_line(tmp_path, capsys):
    data = npz(tmp_path / "data.npz")
    argv = ["train", "--dry-run", "--dataset", data, "--model", "MLP"]
    assert main([*argv, "--model-option", "hidden=32,16"]) == 0
    text = capsys.readouterr().out
    body = json.loads(text.rpartition("# run dir: ")[0])
    assert body["model"] == {"name": "mlp", "options": {"hidden": "32,16"}}
    assert main(["train", "--dataset", str(tmp_path / "nope.npz"), "--dry-run"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_imp_and_prepare_dataset_take_a_sparsetorch_dataset_only(tmp_path):
    import sparsetorch as st
    from sparsetorch.experiments import adapt_dataset, prepare_dataset

    hp = hparams("custom")
    x, y = tensors()
    with pytest.raises(TypeError, match=r"train\(hparams, dataset=\.\.\.\) takes tensors"):
        prepare_dataset(hp.dataset, (x, y))
    adapted = adapt_dataset(hp.dataset, (x, y))
    assert prepare_dataset(hp.dataset, adapted).name == "custom"
    imp = st.lottery.IMP(Hparams(), out_dir=tmp_path, dataset=(x, y))
    with pytest.raises(TypeError, match="sparsetorch Dataset here"):
        imp.data()
