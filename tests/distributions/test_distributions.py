import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.distributions import DISTRIBUTIONS, erk_densities, get

SHAPES = {
    "conv1": (16, 3, 3, 3),
    "conv2": (32, 16, 3, 3),
    "fc1": (128, 512),
    "fc2": (10, 128),
}


def numel(shape):
    return math.prod(shape)


def kept(shapes, densities):
    return sum(densities[n] * numel(s) for n, s in shapes.items())


def test_registry():
    assert sorted(DISTRIBUTIONS.names()) == ["erk", "global", "uniform"]
    assert get("global").is_global and not get("erk").is_global
    with pytest.raises(
        ValueError, match="unknown distribution 'erdos'; known: erk, global, uniform"
    ):
        get("erdos")
    with pytest.raises(ValueError, match="no per-layer densities"):
        get("global").densities(SHAPES, 0.1)


def test_uniform():
    assert get("uniform").densities(SHAPES, 0.3) == dict.fromkeys(SHAPES, 0.3)
    with pytest.raises(ValueError, match=r"above what the layers allow even at their maxima"):
        get("uniform").densities(SHAPES, 0.6, max_density={"fc1": 0.5})


def test_uniform_capped_layer_keeps_its_cap_and_the_others_share_the_excess():
    # hand-solved: a (2, 2) capped at 0.25 (1 weight), b (10, 10) free; 0.5 of 104 = 52:
    # b keeps 51 of 100 -> 0.51; the total stays exact
    d = get("uniform").densities({"a": (2, 2), "b": (10, 10)}, 0.5, max_density={"a": 0.25})
    assert d["a"] == 0.25
    assert d["b"] == pytest.approx(0.51, rel=1e-12)
    # every layer capped below the density: nothing can absorb it
    with pytest.raises(ValueError, match=r"maxima \(0\.25 to 0\.4"):
        get("uniform").densities(
            {"a": (2, 2), "b": (10, 10)}, 0.5, max_density={"a": 0.25, "b": 0.4}
        )
    with pytest.raises(ValueError, match=r"density must be in \[0, 1\]"):
        get("uniform").densities(SHAPES, 1.2)


def test_erk_equals_formula_when_nothing_is_capped():
    density = 0.05
    d = get("erk").densities(SHAPES, density)
    raw = {n: sum(s) / numel(s) for n, s in SHAPES.items()}
    eps = (
        density
        * sum(numel(s) for s in SHAPES.values())
        / sum(raw[n] * numel(s) for n, s in SHAPES.items())
    )
    assert max(d.values()) < 1
    for n in SHAPES:
        assert d[n] == pytest.approx(eps * raw[n], rel=1e-12)
    assert kept(SHAPES, d) == pytest.approx(density * sum(map(numel, SHAPES.values())), rel=1e-12)


def test_erk_golden_with_capping():
    # hand-solved: a (2, 2) has raw 1.0, b (10, 10) raw 0.2; target 60 of 104 weights.
    # uncapped eps = 60 / (4*1 + 100*0.2) = 2.5 -> a would be 2.5 > 1: cap a at 1 (4 weights),
    # then eps = (60 - 4) / (100 * 0.2) = 2.8 -> b = 0.56
    d = erk_densities({"a": (2, 2), "b": (10, 10)}, 60 / 104)
    assert d["a"] == 1.0
    assert d["b"] == pytest.approx(0.56, rel=1e-12)


def test_erk_caps_below_one_for_patterns():
    d = erk_densities({"a": (2, 2), "b": (10, 10)}, 0.3, max_density={"a": 0.5, "b": 0.5})
    assert d["a"] == 0.5
    assert d["b"] == pytest.approx((0.3 * 104 - 2) / 100, rel=1e-12)
    with pytest.raises(ValueError, match="above what the layers' caps allow"):
        erk_densities({"a": (2, 2), "b": (10, 10)}, 0.6, max_density={"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match=r"not in shapes: \['c'\]"):
        erk_densities({"a": (2, 2)}, 0.3, max_density={"c": 0.5})


@settings(max_examples=100, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=4), min_size=1, max_size=6),
    density=st.floats(0, 1),
)
def test_erk_properties(shapes, density):
    shapes = {f"l{i}": tuple(s) for i, s in enumerate(shapes)}
    d = erk_densities(shapes, density)
    total = sum(map(numel, shapes.values()))
    assert kept(shapes, d) == pytest.approx(density * total, rel=1e-9, abs=1e-9)
    assert all(0 <= v <= 1 + 1e-12 for v in d.values())
    # uncapped layers share one eps: density / raw is constant
    raw = {n: sum(s) / numel(s) for n, s in shapes.items()}
    free = [n for n in shapes if d[n] < 1]
    if free:
        eps = d[free[0]] / raw[free[0]]
        for n in free:
            assert d[n] == pytest.approx(eps * raw[n], rel=1e-9, abs=1e-12)
        # a capped layer is one the formula would have pushed to >= 1
        for n in shapes:
            if d[n] == 1:
                assert eps * raw[n] >= 1 - 1e-9
