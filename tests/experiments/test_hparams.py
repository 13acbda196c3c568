import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.experiments.hparams import (
    GROUPS,
    HPARAMS_VERSION,
    Hparams,
    run_hash,
    run_name,
)


def pinned() -> Hparams:
    hp = Hparams()
    hp.model.name = "conv4"
    hp.training.lr = 3e-4
    hp.training.steps = 1000
    hp.training.milestones = (500, 800)
    hp.training.lr_schedule = "step"
    hp.sparsity.method = "magnitude"
    hp.sparsity.sparsity = 0.9
    hp.sparsity.options = {"delta_t": 100, "alpha": 0.3}
    hp.dataset.data_dir = "/somewhere/else"  # not part of the identity
    return hp.validate()


def test_pinned_hash_of_a_fixed_hparams_set():
    # If this fails, a default or the hashing changed: every existing run dir gets a new
    # name. Bump HPARAMS_VERSION when that is intended.
    hp = pinned()
    assert hp.identity() == {
        "model.name": "conv4",
        "training.lr": 0.0003,
        "training.steps": 1000,
        "training.milestones": [500, 800],
        "training.lr_schedule": "step",
        "sparsity.method": "magnitude",
        "sparsity.sparsity": 0.9,
        "sparsity.options": {"alpha": 0.3, "delta_t": 100},
    }
    assert run_hash(hp.identity()) == "8417e3eb31"
    assert run_name(hp, hp.identity()) == "conv4-magnitude-8417e3eb31"


def test_defaults_have_empty_identity_and_the_hash_of_nothing():
    assert Hparams().identity() == {}
    assert run_hash({}) == "44136fa355"  # sha256("{}")[:10]


def test_identity_ignores_data_dir_and_epochs_when_steps_given():
    a, b = Hparams(), Hparams()
    b.dataset.data_dir = "/elsewhere"
    assert a.identity() == b.identity() == {}
    a.training.steps = b.training.steps = 100
    b.training.epochs = 3
    assert a.identity() == b.identity() == {"training.steps": 100}


def test_identity_is_independent_of_option_order_and_name_case():
    a, b = Hparams(), Hparams()
    a.sparsity.options = {"x": 1, "y": 2}
    b.sparsity.options = {"y": 2, "x": 1}
    b.model.name = " LeNet300 "
    assert run_hash(a.validate().identity()) == run_hash(b.validate().identity())


def test_int_lr_is_normalised_to_float_so_hashes_agree():
    a, b = Hparams(), Hparams()
    a.training.lr, b.training.lr = 1, 1.0
    assert a.validate().identity() == b.validate().identity() == {"training.lr": 1.0}


def hparams_strategy():
    return st.builds(
        lambda lr, bs, steps, seed, sparsity, options, sizes: Hparams.from_dict(
            {
                "training": {"lr": lr, "batch_size": bs, "steps": steps, "seed": seed},
                "sparsity": {"method": "gmp", "sparsity": sparsity, "options": options},
                "dataset": {"train_size": sizes},
            }
        ),
        st.floats(1e-6, 10, allow_nan=False),
        st.integers(1, 4096),
        st.one_of(st.none(), st.integers(1, 10**6)),
        st.integers(0, 2**31),
        st.floats(1e-3, 0.999),  # gmp needs a sparsity > 0
        st.dictionaries(st.text(min_size=1, max_size=5), st.integers() | st.floats(0, 1)),
        st.one_of(st.none(), st.integers(1, 10**5)),
    )


@settings(max_examples=50, deadline=None)
@given(hparams_strategy())
def test_dict_and_json_round_trip_exactly(hp):
    hp.validate()
    data = hp.to_dict()
    assert data["version"] == HPARAMS_VERSION
    back = Hparams.from_dict(json.loads(json.dumps(data)))
    assert back == hp
    assert run_hash(back.identity()) == run_hash(hp.identity())


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_config_file_round_trip(tmp_path, suffix):
    hp = pinned()
    path = tmp_path / f"config{suffix}"
    hp.save(path)
    assert Hparams.load(path) == hp


def test_partial_config_keeps_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 0.1\n  milestones: [3, 5]\n  lr_schedule: step\n")
    hp = Hparams.load(path)
    assert hp.training.lr == 0.1 and hp.training.milestones == (3, 5)
    assert hp.model == Hparams().model


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ({"trainin": {}}, ValueError, r"unknown group\(s\) \['trainin'\]; known: model"),
        ({"training": {"learning_rate": 1}}, ValueError, r"unknown training field.*known: optim"),
        ({"training": {"lr": "fast"}}, TypeError, "training.lr must be float"),
        ({"training": {"batch_size": 1.5}}, TypeError, "training.batch_size must be int"),
        ({"training": {"steps": True}}, TypeError, "training.steps must be int"),
        ({"training": {"milestones": 5}}, TypeError, "training.milestones must be a list"),
        ({"sparsity": {"options": [1]}}, TypeError, "sparsity.options must be a mapping"),
        ({"training": []}, TypeError, "'training' must be a mapping"),
        ({"version": HPARAMS_VERSION + 1}, ValueError, "hparams version"),
    ],
)
def test_bad_config_data(data, error, message):
    with pytest.raises(error, match=message):
        Hparams.from_dict(data)


def test_bad_config_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a file"):
        Hparams.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid"):
        Hparams.load(bad)


@pytest.mark.parametrize(
    ("group", "name", "value", "message"),
    [
        ("training", "lr", 0.0, r"training.lr must be a finite number > 0"),
        ("training", "lr", float("inf"), r"training.lr must be a finite number > 0"),
        ("training", "momentum", 1.0, r"training.momentum must be \[0, 1\)"),
        ("training", "weight_decay", -1.0, "training.weight_decay must be >= 0"),
        ("training", "batch_size", 0, "training.batch_size must be >= 1"),
        ("training", "epochs", 0, "training.epochs must be >= 1"),
        ("training", "steps", 0, "training.steps must be >= 1"),
        ("training", "gamma", 0.0, r"training.gamma must be \(0, 1\]"),
        ("training", "warmup_steps", -1, "training.warmup_steps must be >= 0"),
        ("training", "eval_every", 0, "training.eval_every must be >= 1"),
        ("training", "milestones", (5, 3), "strictly increasing"),
        ("dataset", "train_size", 0, "dataset.train_size must be >= 1"),
        ("sparsity", "sparsity", 1.0, r"sparsity.sparsity must be \[0, 1\)"),
    ],
)
def test_validate_ranges(group, name, value, message):
    hp = Hparams()
    setattr(getattr(hp, group), name, value)
    with pytest.raises(ValueError, match=message):
        hp.validate()


def test_validate_schedule_and_method_consistency():
    hp = Hparams()
    hp.training.lr_schedule = "step"
    with pytest.raises(ValueError, match="milestones must be given"):
        hp.validate()
    hp = Hparams()
    hp.training.milestones = (10,)
    with pytest.raises(ValueError, match="only used by lr_schedule 'step'"):
        hp.validate()
    hp = Hparams()
    hp.sparsity.sparsity = 0.5
    with pytest.raises(ValueError, match="method is 'dense'"):
        hp.validate()


def test_validate_type_of_groups():
    hp = Hparams()
    hp.training = {"lr": 1}
    with pytest.raises(TypeError, match=r"hparams.training must be a TrainingHparams"):
        hp.validate()


def test_every_field_has_help():
    for cls in GROUPS.values():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"


def test_a_method_needs_a_sparsity_above_zero():
    hp = Hparams()
    hp.sparsity.method = "rigl"
    with pytest.raises(
        ValueError, match=r"method is 'rigl' but sparsity.sparsity is 0.*--sparsity"
    ):
        hp.validate()
    hp.sparsity.sparsity = 0.5
    assert hp.validate().sparsity.distribution == "erk"
    unknown = Hparams()
    unknown.sparsity.method = "no-such"  # the runner's name check refuses it, naming the known
    assert unknown.validate().sparsity.method == "no-such"
    with pytest.raises(ValueError, match="unknown method 'no-such'; known: dense, gmp"):
        unknown.sparsity.config()
