"""training.log (--log): Weights & Biases (offline) and MLflow (file store) receive every
evaluation row at its step, a resumed run continues its tracker run, and a tracker whose
package is missing is refused before anything is written. The W&B and MLflow tests run where
those packages are installed (the optional extras wandb and mlflow)."""

import glob
import json
import struct
import sys
import types

import pytest

from sparsetorch.experiments import train
from sparsetorch.experiments.hparams import loggers
from sparsetorch.experiments.trackers import numbers


def rows_of(result):
    return [numbers(row) | {"step": row["step"]} for row in result.metrics]


# ---- W&B -----------------------------------------------------------------------------------
def wandb_records(path):
    """The records of an offline W&B run file, read independently of wandb: a LevelDB-style
    log (7-byte ":W&B" header; 32 KiB blocks of chunks, each with a 7-byte header: checksum,
    length, type full/first/middle/last) of protobuf ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2 as pb

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B"
    pos, block, found, parts = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # padding to the end of the block
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            found.append(chunk)
        elif kind == 2:
            parts = chunk
        elif kind == 3:
            parts += chunk
        elif kind == 4:
            found.append(parts + chunk)
    return [pb.Record.FromString(chunk) for chunk in found]


def wandb_history(run_dir):
    rows = {}
    for path in sorted(glob.glob(str(run_dir / "wandb" / "offline-run-*" / "*.wandb"))):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                items = {
                    item.key or "/".join(item.nested_key): item.value_json
                    for item in record.history.item
                }
                row = {k: json.loads(v) for k, v in items.items() if not k.startswith("_")}
                rows[record.history.step.num] = row
    return rows


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    wandb = pytest.importorskip(
        "wandb", reason="W&B logging needs the wandb package (extra: wandb)"
    )
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    yield wandb
    wandb.teardown()


def test_wandb_offline_receives_every_row_and_the_hparams(tmp_path, tiny_hp, digits, wandb_offline):
    tiny_hp.training.log = "wandb"
    result = train(tiny_hp, tmp_path, dataset=digits)
    history = wandb_history(result.run_dir)
    expected = {
        row["step"]: {k: v for k, v in row.items() if k != "step"} for row in rows_of(result)
    }
    assert history == expected and sorted(history) == [0, 3, 6, 9, 12]
    records = wandb_records(
        glob.glob(str(result.run_dir / "wandb" / "offline-run-*" / "*.wandb"))[0]
    )
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.run_id == result.run_dir.name
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["training"]["steps"] == 12 and config["dataset"]["name"] == "digits"


# ---- MLflow --------------------------------------------------------------------------------
@pytest.fixture
def mlflow_client(monkeypatch):
    pytest.importorskip("mlflow", reason="MLflow logging needs the mlflow package (extra: mlflow)")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    from mlflow.tracking import MlflowClient

    def client(run_dir):
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # reading back, in the test
        return MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())

    return client


def mlflow_rows(client):
    (experiment,) = [e for e in client.search_experiments() if e.name == "sparsetorch"]
    runs = client.search_runs([experiment.experiment_id])
    rows = {}
    for run in runs:
        for key in run.data.metrics:
            for metric in client.get_metric_history(run.info.run_id, key):
                rows.setdefault((run.info.run_id, metric.step), {})[key] = metric.value
    return runs, rows


def test_mlflow_file_store_receives_every_row_and_the_hparams(
    tmp_path, tiny_hp, digits, mlflow_client
):
    import os

    tiny_hp.training.log = "mlflow"
    result = train(tiny_hp, tmp_path, dataset=digits)
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # only set while MLflow was called
    runs, rows = mlflow_rows(mlflow_client(result.run_dir))
    (run,) = runs
    assert run.info.run_name == result.run_dir.name and run.info.status == "FINISHED"
    assert run.data.params["training.steps"] == "12" and run.data.params["dataset.name"] == "digits"
    expected = {
        (run.info.run_id, row["step"]): {k: float(v) for k, v in row.items() if k != "step"}
        for row in rows_of(result)
    }
    assert rows == expected


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, tiny_hp, digits, mlflow_client):
    from sparsetorch.experiments import TrainHook

    class StopAt(TrainHook):
        def __init__(self, at=None):
            self.at = at

        def after_step(self, ctx, step):
            if self.at is not None and step + 1 == self.at:
                raise KeyboardInterrupt

    tiny_hp.training.log = "mlflow"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_hp, tmp_path, dataset=digits, hooks=[StopAt(8)])
    result = train(tiny_hp, tmp_path, dataset=digits, hooks=[StopAt()])
    runs, rows = mlflow_rows(mlflow_client(result.run_dir))
    assert len(runs) == 1 and sorted(step for _, step in rows) == [0, 3, 6, 9, 12]


# ---- choosing trackers ---------------------------------------------------------------------
def test_a_missing_tracker_package_is_refused_before_anything_is_written(
    monkeypatch, tmp_path, tiny_hp
):
    for name in ("wandb", "mlflow", "tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setattr(
            "importlib.util.find_spec",
            lambda n, *a, missing=name: None if n == missing else types.SimpleNamespace(),
        )
        tiny_hp.training.log = f"{name}"
        with pytest.raises(
            ValueError, match=f"needs the {name} package: pip install 'sparsetorch\\[{name}\\]'"
        ):
            train(tiny_hp, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_log_none_turns_tensorboard_off(monkeypatch, tmp_path, tiny_hp, digits):
    fake = types.ModuleType("torch.utils.tensorboard")
    opened = []
    fake.SummaryWriter = lambda log_dir: opened.append(log_dir)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    tiny_hp.training.log = "none"
    result = train(tiny_hp, tmp_path, dataset=digits)
    assert opened == [] and not (result.run_dir / "tensorboard").exists()
    assert "training.log" not in result.hparams.identity()  # where rows go is not the run


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("auto", ["auto"]),
        ("none", []),
        ("WandB, mlflow", ["wandb", "mlflow"]),
        ("mlflow,mlflow", ["mlflow"]),
    ],
)
def test_log_names(spec, expected):
    assert loggers(spec) == expected


@pytest.mark.parametrize("spec", ["comet", "", "auto,wandb", "none,mlflow"])
def test_unknown_log_names_are_refused(spec):
    with pytest.raises(
        ValueError, match=r"training\.log must be auto, none, or any of tensorboard"
    ):
        loggers(spec)
