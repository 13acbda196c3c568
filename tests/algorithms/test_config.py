"""One config dataclass per algorithm: defaults, checks with one clear error naming the field,
the options of a run's identity, and the schedule as a real choice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import sparsetorch as st
from sparsetorch.algorithms.config import (
    CONFIGS,
    DEFAULT_ITERATIONS,
    GRASP_TEMPERATURE,
    build_config,
)
from sparsetorch.criteria.grasp import DEFAULT_TEMPERATURE
from tests.algorithms.during.helpers import batch, make_optimizer, tiny_mlp


def test_every_method_has_a_config_with_its_own_default_distribution():
    distributions = {n: CONFIGS.lookup(n)().distribution for n in CONFIGS.names()}
    assert distributions == {
        "gmp": "uniform",
        "grasp": "global",
        "random": "global",
        "rigl": "erk",
        "set": "erk",
        "snip": "global",
        "synflow": "global",
    }
    for name in CONFIGS.names():
        cls = CONFIGS.lookup(name)
        assert cls.method == name
        assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), name


def test_defaults_are_the_papers_and_agree_with_the_functions():
    assert GRASP_TEMPERATURE == DEFAULT_TEMPERATURE == 200.0
    assert st.SynFlowConfig().iterations == DEFAULT_ITERATIONS == 100
    rigl = st.RigLConfig()
    assert (rigl.sparsity, rigl.delta_t, rigl.alpha, rigl.t_end, rigl.schedule) == (
        0.9, 100, 0.3, None, "cosine")  # fmt: skip
    assert st.GMPConfig().schedule == "gradual" and st.SETConfig().schedule == "cosine"


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "message"),
    [
        (st.SNIPConfig, {"batches": 0}, ValueError, "snip: batches must be an int >= 1, got 0"),
        (st.SNIPConfig, {"batches": 2.5}, TypeError, "snip: batches must be an int >= 1, got 2.5"),
        (st.SNIPConfig, {"batches": True}, TypeError, "batches must be an int >= 1, got True"),
        (st.RigLConfig, {"alpha": 1.5}, ValueError, r"alpha must be a float in \[0.0, 1.0\]"),
        (st.RigLConfig, {"alpha": float("nan")}, ValueError, "alpha must be a float"),
        (st.RigLConfig, {"delta_t": 0}, ValueError, "delta_t must be an int >= 1"),
        (st.RigLConfig, {"schedule": "gradual"}, ValueError, "schedule must be one of"),
        (st.GMPConfig, {"schedule": "cosine"}, ValueError, "one of gradual, one_shot, got"),
        (st.GMPConfig, {"sparsity": 0.0}, ValueError, r"sparsity must be in \(0, 1\), got 0.0"),
        (st.GMPConfig, {"sparsity": 1.0}, ValueError, r"sparsity must be in \(0, 1\)"),
        (st.GraSPConfig, {"temperature": "hot"}, TypeError, "temperature must be a float"),
    ],
)
def test_bad_values_raise_one_clear_error(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(**kwargs)


def test_real_numbers_are_accepted_consistently():
    for value in (np.float32(0.5), np.float64(0.5), 0.5):
        assert st.RigLConfig(sparsity=value).sparsity == 0.5
    assert st.RigLConfig(alpha=1).alpha == 1.0 and isinstance(st.RigLConfig(alpha=1).alpha, float)
    assert st.SNIPConfig(batches=np.int64(3)).batches == 3


def test_options_are_the_non_default_fields_beyond_the_axes():
    cfg = st.RigLConfig(sparsity=0.8, distribution="uniform", delta_t=100, alpha=0.5)
    assert cfg.options() == {"alpha": 0.5}
    assert st.RigLConfig.from_options({"alpha": 0.5}, sparsity=0.8) == cfg.replace(
        distribution="erk"
    )
    with pytest.raises(
        ValueError, match=r"method 'snip' has no option\(s\) \['alpha'\]; known: batches"
    ):
        st.SNIPConfig.from_options({"alpha": 0.5})


def test_keywords_override_a_given_config():
    base = st.RigLConfig(alpha=0.5)
    assert build_config(st.RigLConfig, base, {}) is base
    assert build_config(st.RigLConfig, base, {"delta_t": 7}) == st.RigLConfig(alpha=0.5, delta_t=7)
    with pytest.raises(TypeError, match="config must be a RigLConfig, got GMPConfig"):
        build_config(st.RigLConfig, st.GMPConfig(), {})
    model = tiny_mlp()
    algo = st.RigL(model, make_optimizer("momentum", model), base, total_steps=40, delta_t=7)
    assert (algo.alpha, algo.delta_t, algo.config) == (0.5, 7, base.replace(delta_t=7))


def test_set_with_the_constant_schedule_drops_alpha_at_every_update():
    model = tiny_mlp()
    opt = make_optimizer("momentum", model)
    algo = st.SET(model, opt, total_steps=40, delta_t=5, alpha=0.25, schedule="constant")
    other = tiny_mlp()
    cosine = st.SET(other, make_optimizer("momentum", other), total_steps=40, delta_t=5)
    for t in range(40):
        x, y = batch(t)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        algo.step()
    assert [h["step"] for h in algo.history] == [5, 10, 15, 20, 25]  # until T_end = 30
    assert {h["drop_fraction"] for h in algo.history} == {0.25}
    assert cosine.drop_fraction(25) < cosine.drop_fraction(5) < 0.3


def test_gmp_one_shot_schedule_prunes_once_at_t_start_to_the_final_sparsity():
    model = tiny_mlp()
    opt = make_optimizer("momentum", model)
    algo = st.GMP(model, opt, total_steps=20, sparsity=0.75, t_start=6, schedule="one_shot")
    for t in range(20):
        x, y = batch(t)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        algo.step()
        density = (
            sum(int(m.sum()) for m in st.masks(model).values())
            / sum(m.numel() for m in st.masks(model).values())
            if st.masks(model)
            else 1.0
        )
        assert density == (1.0 if t < 6 else pytest.approx(0.25, abs=0.01)), t
    assert [h["step"] for h in algo.history] == [6]
    assert algo.history[0]["target_sparsity"] == 0.75
