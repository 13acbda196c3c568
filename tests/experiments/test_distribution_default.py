"""``sparsity.distribution`` defaults to "auto": each method's own default (the default of its
config dataclass's ``distribution`` field), resolved before the run's identity, so
that runs resolving to "global" keep the hashes they had when "global" was the default for all.

The hard-coded run names below were computed with the code before "auto" existed (default
"global" for every method)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import sparsetorch as st
from sparsetorch.cli import main
from sparsetorch.experiments import Hparams, train
from sparsetorch.experiments.hparams import AUTO, SparsityHparams, method_distribution, run_name
from sparsetorch.experiments.methods import method_names

# run names of `--method M --sparsity 0.9` (all other hparams default) before this change
OLD_DEFAULT_NAMES = {
    "dense": "lenet300-dense-44136fa355",  # sparsity 0
    "magnitude": "lenet300-magnitude-c2eaf328c6",
    "snip": "lenet300-snip-d6cf3db9a7",
    "random": "lenet300-random-6d54d0eb0f",
    "synflow": "lenet300-synflow-3838065ab9",
    "grasp": "lenet300-grasp-74310aeb69",
    "rigl": "lenet300-rigl-6a77d4c70a",  # trained with "global"
    "set": "lenet300-set-d5c4943bcc",
    "gmp": "lenet300-gmp-e15e5d985a",
}
# before this change: --distribution erk / uniform given explicitly
OLD_EXPLICIT_NAMES = {
    ("rigl", "erk"): "lenet300-rigl-42afa15c37",
    ("gmp", "uniform"): "lenet300-gmp-a179640883",
}


def hparams(method: str, distribution: str | None = None) -> Hparams:
    hp = Hparams()
    hp.sparsity.method = method
    hp.sparsity.sparsity = 0.0 if method == "dense" else 0.9
    if distribution is not None:
        hp.sparsity.distribution = distribution
    return hp.validate()


def name(method: str, distribution: str | None = None) -> str:
    hp = hparams(method, distribution)
    return run_name(hp, hp.identity())


def test_the_field_default_is_auto_and_the_identity_baseline_global():
    (f,) = [f for f in dataclasses.fields(SparsityHparams) if f.name == "distribution"]
    assert f.default == AUTO == "auto"
    assert f.metadata["baseline"] == "global"


@pytest.mark.parametrize("method", ["dense", "magnitude", "snip", "random", "synflow", "grasp"])
def test_methods_that_resolve_to_global_keep_their_old_hashes(method):
    hp = hparams(method)
    assert hp.sparsity.distribution == "global"
    assert name(method) == OLD_DEFAULT_NAMES[method]
    assert name(method, "global") == OLD_DEFAULT_NAMES[method]  # explicit == default


@pytest.mark.parametrize(
    ("method", "resolved"), [("rigl", "erk"), ("set", "erk"), ("gmp", "uniform")]
)
def test_dynamic_methods_resolve_to_their_own_default(method, resolved):
    assert hparams(method).sparsity.distribution == resolved
    # default == explicit own default != explicit global; explicit global == the old default
    assert name(method) == name(method, resolved)
    assert name(method) != name(method, "global")
    assert name(method, "global") == OLD_DEFAULT_NAMES[method]
    assert name(method) != OLD_DEFAULT_NAMES[method]


def test_explicit_values_hash_as_before():
    for (method, distribution), old in OLD_EXPLICIT_NAMES.items():
        assert name(method, distribution) == old
        assert name(method) == old  # the new default is what had to be typed before


@pytest.mark.parametrize("cls", [st.RigL, st.SET, st.GMP])
def test_resolution_reads_the_algorithm_config(cls):
    method = cls.__name__.lower()
    own = cls.Config().distribution
    assert own == cls.Config.default("distribution")
    assert method_distribution(method) == own
    assert hparams(method, " AUTO ").sparsity.distribution == own  # case and spaces


def test_help_text_agrees_with_the_resolved_defaults():
    # the help names erk for rigl/set, uniform for gmp, global otherwise: check every method
    (f,) = [f for f in dataclasses.fields(SparsityHparams) if f.name == "distribution"]
    assert "erk for rigl/set, uniform for gmp, global otherwise" in f.metadata["help"]
    claimed = {"rigl": "erk", "set": "erk", "gmp": "uniform"}
    for method in ["dense", *method_names()]:
        assert method_distribution(method) == claimed.get(method, "global"), method


def test_unknown_method_falls_back_to_global_and_the_runner_refuses_it():
    assert method_distribution("no-such-method") == "global"
    with pytest.raises(ValueError, match="unknown method 'no-such-method'"):
        train(hparams("no-such-method"))


def test_identity_of_unvalidated_hparams_resolves_auto():
    for method in ("rigl", "gmp", "snip"):
        raw = Hparams()
        raw.sparsity.method, raw.sparsity.sparsity = method, 0.9
        assert raw.sparsity.distribution == "auto"
        assert raw.identity() == hparams(method).identity()


def test_config_files_keep_auto_and_validation_resolves_it(tmp_path):
    path = tmp_path / "hp.yaml"
    Hparams().save(path)
    assert "distribution: auto" in path.read_text()
    loaded = Hparams.load(path)
    loaded.sparsity.method, loaded.sparsity.sparsity = "rigl", 0.9
    assert loaded.validate().sparsity.distribution == "erk"
    assert loaded.to_dict()["sparsity"]["distribution"] == "erk"


# ---- the CLI and the runner ----------------------------------------------------------------
def test_train_help_shows_auto(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "auto = the method's own default: erk for rigl/set, uniform for gmp" in text
    assert "(default: auto)" in text


@pytest.mark.parametrize(
    ("argv", "resolved", "old"),
    [
        ([], "erk", "lenet300-rigl-42afa15c37"),
        (["--distribution", "global"], "global", OLD_DEFAULT_NAMES["rigl"]),
        (["--distribution", "auto"], "erk", "lenet300-rigl-42afa15c37"),
    ],
)
def test_dry_run_prints_the_resolved_distribution(tmp_path, capsys, argv, resolved, old):
    out = ["--out", str(tmp_path)]
    assert main(["train", "--dry-run", "--method", "rigl", "--sparsity", "0.9", *argv, *out]) == 0
    body, _, run_dir = capsys.readouterr().out.rpartition("# run dir: ")
    assert json.loads(body)["sparsity"]["distribution"] == resolved
    assert run_dir.strip() == str(tmp_path / old)


@pytest.fixture
def rigl_hp(tiny_hp):
    tiny_hp.sparsity.method, tiny_hp.sparsity.sparsity = "rigl", 0.9
    tiny_hp.sparsity.options = {"delta_t": 4}
    return tiny_hp


def layer_densities(model):
    return {k: v.float().mean().item() for k, v in st.masks(model).items()}


def test_default_rigl_trains_bitwise_as_explicit_erk(rigl_hp, digits):
    default = train(rigl_hp, dataset=digits)
    rigl_hp.sparsity.distribution = "erk"
    erk = train(rigl_hp, dataset=digits)
    rigl_hp.sparsity.distribution = "global"
    flat = train(rigl_hp, dataset=digits)
    assert default.hparams.sparsity.distribution == "erk"
    a, b = default.model.state_dict(), erk.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # ERK gives the 100x10 output layer more density than the 300x784 input layer; the
    # global (random) start gives every layer about the same
    d, g = layer_densities(default.model), layer_densities(flat.model)
    assert d["fc3.weight"] > 2 * d["fc1.weight"]
    assert abs(g["fc3.weight"] - g["fc1.weight"]) < 0.05


def test_an_old_default_rigl_run_dir_is_not_reused_for_a_new_default_run(rigl_hp, digits, tmp_path):
    # a run dir as the old default wrote it: distribution "global", no distribution in the
    # identity (the explicit-global hash is the old default's, checked above)
    rigl_hp.sparsity.distribution = "global"
    old = train(rigl_hp, tmp_path, dataset=digits)
    assert (
        "sparsity.distribution"
        not in json.loads((old.run_dir / "run.json").read_text())["identity"]
    )
    rigl_hp.sparsity.distribution = "auto"
    new = train(rigl_hp, tmp_path, dataset=digits)
    assert not new.reused and new.run_dir != old.run_dir
    saved = json.loads((new.run_dir / "hparams.json").read_text())
    assert saved["sparsity"]["distribution"] == "erk"  # the resolved value, not "auto"
    assert Hparams.load(new.run_dir / "hparams.json").sparsity.distribution == "erk"
    # the same commands again reuse their own dirs
    again = train(rigl_hp, tmp_path, dataset=digits)
    assert again.reused and again.run_dir == new.run_dir
    rigl_hp.sparsity.distribution = "global"
    old_again = train(rigl_hp, tmp_path, dataset=digits)
    assert old_again.reused and old_again.run_dir == old.run_dir


def test_method_hooks_of_unvalidated_hparams_use_the_method_default(digits):
    from sparsetorch.experiments import TrainContext, method_hooks
    from sparsetorch.models import build

    for method, own in (("rigl", "erk"), ("snip", "global")):
        raw = Hparams()
        raw.sparsity.method, raw.sparsity.sparsity = method, 0.9
        (hook,) = method_hooks(raw)
        assert raw.sparsity.distribution == "auto"  # the caller's hparams are not changed
        if method == "snip":
            assert hook.config.distribution == own
            continue
        model = build("lenet300", input_shape=digits.input_shape, num_classes=10)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        hook.on_train_start(TrainContext(model, optimizer, digits, 100, 10, seed=0))
        assert hook.algo.distribution == own
