import math

import pytest

from sparsetorch.schedules import (
    SCHEDULES,
    ConstantFraction,
    CosineDecay,
    Gradual,
    OneShot,
    fraction_schedule,
    sparsity_schedule,
)


def test_registry_builds_with_kwargs():
    g = SCHEDULES.build("gradual", final_sparsity=0.9, begin_step=0, end_step=100, frequency=10)
    assert isinstance(g, Gradual) and g.frequency == 10
    assert isinstance(SCHEDULES.build("one_shot", sparsity=0.5), OneShot)
    assert isinstance(SCHEDULES.build("cosine", fraction=0.3, end_step=100), CosineDecay)
    with pytest.raises(
        ValueError, match="unknown schedule 'linear'; known: constant, cosine, gradual, one_shot"
    ):
        SCHEDULES.build("linear")


def test_one_shot():
    s = OneShot(0.8, step=5)
    assert [s.sparsity_at(t) for t in (0, 4, 5, 100)] == [0.0, 0.0, 0.8, 0.8]
    assert [s.is_update_step(t) for t in (4, 5, 6)] == [False, True, False]


def test_gradual_closed_form():
    s_i, s_f, t0, dt, n = 0.1, 0.9, 100, 50, 8
    g = Gradual(s_f, begin_step=t0, end_step=t0 + n * dt, frequency=dt, initial_sparsity=s_i)
    for i in range(n + 1):
        t = t0 + i * dt
        expected = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3
        assert g.is_update_step(t)
        assert g.sparsity_at(t) == pytest.approx(expected, abs=1e-15)
        if i < n:  # holds between updates
            assert not g.is_update_step(t + 1)
            assert g.sparsity_at(t + dt - 1) == g.sparsity_at(t)
    assert g.sparsity_at(0) == s_i and g.sparsity_at(t0 - 1) == s_i
    assert g.sparsity_at(10**6) == s_f
    assert not g.is_update_step(t0 - dt) and not g.is_update_step(t0 + (n + 1) * dt)
    # golden: halfway the remaining gap is (1/2)^3 = 1/8 of s_f - s_i
    assert g.sparsity_at(t0 + 4 * dt) == pytest.approx(0.9 - 0.8 / 8)


def test_gradual_end_step_off_grid_is_an_update():
    g = Gradual(0.5, begin_step=0, end_step=25, frequency=10)
    assert [t for t in range(40) if g.is_update_step(t)] == [0, 10, 20, 25]
    assert g.sparsity_at(25) == 0.5 and g.sparsity_at(24) == g.sparsity_at(20)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"final_sparsity": 1.0, "begin_step": 0, "end_step": 10},
            r"final_sparsity must be in \[0, 1\)",
        ),
        (
            {"final_sparsity": 0.5, "begin_step": 10, "end_step": 5},
            "end_step 5 must be >= begin_step 10",
        ),
        (
            {"final_sparsity": 0.5, "begin_step": 0, "end_step": 5, "frequency": 0},
            "frequency must be",
        ),
        (
            {"final_sparsity": 0.5, "begin_step": -1, "end_step": 5},
            "begin_step must be an int >= 0",
        ),
        (
            {"final_sparsity": 0.5, "begin_step": 0, "end_step": 5, "initial_sparsity": 0.6},
            "initial_sparsity 0.6 must be <= final_sparsity 0.5",
        ),
    ],
)
def test_gradual_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Gradual(**kwargs)


def test_cosine_fraction_and_update_steps():
    c = CosineDecay(0.3, end_step=1000, frequency=100)
    for t in range(0, 1200, 50):
        expected = 0.3 / 2 * (1 + math.cos(math.pi * t / 1000)) if t < 1000 else 0.0
        assert c.fraction_at(t) == pytest.approx(expected, abs=1e-15)
    assert c.fraction_at(0) == pytest.approx(0.3)
    assert c.fraction_at(500) == pytest.approx(0.15)
    assert [t for t in range(1300) if c.is_update_step(t)] == list(range(100, 1000, 100))
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        CosineDecay(0.0, end_step=10)
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        c.fraction_at(-1)


def test_constant_fraction_holds_alpha_until_end_step():
    s = ConstantFraction(0.3, end_step=50, frequency=10)
    assert [t for t in range(60) if s.is_update_step(t)] == [10, 20, 30, 40]
    assert {s.fraction_at(t) for t in range(50)} == {0.3} and s.fraction_at(50) == 0.0


def test_every_sparsity_schedule_builds_from_one_ramp_signature():
    ramp = dict(initial_sparsity=0.2, final_sparsity=0.8, begin_step=5, end_step=25, frequency=5)
    gradual, one_shot = sparsity_schedule("gradual", **ramp), sparsity_schedule("one_shot", **ramp)
    assert isinstance(gradual, Gradual) and gradual.sparsity_at(25) == 0.8
    assert [t for t in range(30) if one_shot.is_update_step(t)] == [5]
    assert [one_shot.sparsity_at(t) for t in (0, 4, 5, 29)] == [0.2, 0.2, 0.8, 0.8]
    cosine = fraction_schedule("cosine", fraction=0.3, end_step=100, frequency=10)
    assert cosine.fraction_at(50) == pytest.approx(0.15)


def test_a_schedule_of_the_wrong_kind_is_refused_by_name():
    with pytest.raises(
        ValueError,
        match="'cosine' does not give a sparsity per step; choose one of gradual, one_shot",
    ):
        sparsity_schedule(
            "cosine", initial_sparsity=0, final_sparsity=0.5, begin_step=0, end_step=1, frequency=1
        )
    with pytest.raises(
        ValueError,
        match="'gradual' does not give a drop fraction per step; choose one of constant, cosine",
    ):
        fraction_schedule("gradual", fraction=0.3, end_step=10, frequency=1)
    with pytest.raises(ValueError, match=r"initial_sparsity 0\.9 must be <= sparsity 0\.5"):
        OneShot(0.5, initial_sparsity=0.9)
