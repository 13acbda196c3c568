"""GMP: the sparsity after every step equals Zhu & Gupta's closed form, pruned weights stay
pruned, the smallest magnitudes go, any pattern/distribution, bad input."""

from __future__ import annotations

import math

import pytest

import sparsetorch as st
from sparsetorch.patterns import get as get_pattern
from tests.algorithms.during.helpers import make_optimizer, state_tensors, tiny_mlp, train, weights


def closed_form(t, s_i, s_f, t0, t_end, dt):
    """Zhu & Gupta: s at the last update step <= t (updates every dt from t0, and at t_end)."""
    if t < t0:
        return None
    last = min(t, t_end)
    if last < t_end:
        last -= (last - t0) % dt
    return s_f + (s_i - s_f) * (1 - (last - t0) / (t_end - t0)) ** 3


def erk(shapes, density):
    """Evci et al.'s ERK: eps * sum(shape)/prod(shape), layers over 1 fixed at 1."""
    raw = {n: sum(sh) / math.prod(sh) for n, sh in shapes.items()}
    size = {n: math.prod(sh) for n, sh in shapes.items()}
    full: set[str] = set()
    while True:
        free = [n for n in shapes if n not in full]
        budget = density * sum(size.values()) - sum(size[n] for n in full)
        eps = budget / sum(raw[n] * size[n] for n in free)
        over = {n for n in free if eps * raw[n] > 1}
        if not over:
            return {n: 1.0 if n in full else eps * raw[n] for n in shapes}
        full |= over


def gmp(kind="momentum", **kw):
    model = tiny_mlp()
    kw.setdefault("total_steps", 40)
    kw.setdefault("delta_t", 4)
    return st.GMP(model, make_optimizer(kind, model), **kw)


@pytest.mark.parametrize("distribution", ["uniform", "erk", "global"])
@pytest.mark.parametrize(("s_i", "t0", "t_end"), [(0.0, 0, 30), (0.3, 5, 23)])
def test_sparsity_after_every_step_equals_the_closed_form(distribution, s_i, t0, t_end):
    algo = gmp(
        sparsity=0.9, distribution=distribution, initial_sparsity=s_i, t_start=t0, t_end=t_end
    )
    shapes = {full: m._parameters[n].shape for full, m, n in algo.targets}
    total = sum(math.prod(shape) for shape in shapes.values())

    def nearest(x):
        return math.floor(x + 0.5)

    def check(t):
        s = closed_form(t, s_i, 0.9, t0, t_end, 4)
        masks = algo.masks()
        kept = {n: int(m.sum()) for n, m in masks.items()}
        if s is None:
            assert sum(kept.values()) == total
            return
        assert algo.sparsity_at(t) == pytest.approx(s, abs=1e-12)
        if distribution == "global":  # one threshold: the total to the nearest weight
            assert sum(kept.values()) == nearest((1 - s) * total), t
            return
        # per layer (Zhu & Gupta prune layer by layer): nearest whole weight of its share
        if distribution == "uniform":
            share = dict.fromkeys(shapes, 1 - s)
        else:  # ERK by its formula: density_l = eps (sum of dims) / (prod of dims), cap 1
            share = erk(shapes, 1 - s)
        for n, shape in shapes.items():
            assert kept[n] == nearest(share[n] * math.prod(shape)), (t, n)

    train(algo, 40, after_step=check)
    updates = [h["step"] for h in algo.history]
    assert updates == sorted({*range(t0, t_end, 4), t_end})


def test_pruned_weights_stay_pruned_and_the_smallest_magnitudes_go():
    algo = gmp(sparsity=0.9, distribution="uniform")
    before = {}

    def keep(t):
        before.update(algo.masks())

    def check(t):
        if not algo.is_update_step(t):
            return
        w = weights(algo)
        for name, new in algo.masks().items():
            old = before[name]
            assert not (new & ~old).any()  # nothing regrows
            pruned_now = old & ~new
            if pruned_now.any():
                # magnitudes as the update saw them: the kept ones are the largest
                assert w[name][new].abs().min() >= algo._seen[name][pruned_now].abs().max()

    orig = algo.after_optimizer_step

    def spy(t):
        algo._seen = weights(algo)
        orig(t)

    algo.after_optimizer_step = spy
    train(algo, 40, before_step=keep, after_step=check)


def test_optimizer_state_is_zeroed_at_pruned_positions_at_once():
    algo = gmp("adam", sparsity=0.8)
    train(algo, 9)  # updates at 0, 4, 8
    for name, mask in algo.masks().items():
        for value in state_tensors(algo, name):
            assert (value[~mask] == 0).all()


def test_nm_pattern_starts_at_its_density_and_stays_valid():
    algo = gmp(sparsity=0.75, pattern="2:4", distribution="uniform")
    p = get_pattern("2:4")
    assert algo.schedule.initial_sparsity == 0.5

    def check(t):
        for m in algo.masks().values():
            assert p.is_valid(m)

    train(algo, 40, after_step=check)
    kept = sum(int(m.sum()) for m in algo.masks().values())
    total = sum(m.numel() for m in algo.masks().values())
    assert kept == math.floor(0.25 * total + 0.5)


def test_global_ranking_keeps_every_layer_with_the_prune_floor():
    """One threshold over all layers at 95% empties layers of small weights (a constant
    output); GMP keeps st.prune's floor per layer and says so."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    algo = st.GMP(model, optimizer, sparsity=0.95, total_steps=40, delta_t=5, distribution="global")
    x, y = torch.randn(64, 20), torch.randint(0, 4, (64,))
    with pytest.warns(UserWarning, match="kept fewer than min_layer_density"):
        for _ in range(40):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            algo.step()
    kept = {n: int(m.sum()) for n, m in algo.masks().items()}
    assert all(k > 0 for k in kept.values()), kept
    total = sum(m.numel() for m in algo.masks().values())
    assert sum(kept.values()) == round(0.05 * total)  # the total stays exact
    assert bool((model(torch.randn(5, 20)).std(0) > 0).any())  # the output depends on x


def test_history_logs_target_and_overlap():
    algo = gmp(sparsity=0.9)
    train(algo, 40)
    first, last = algo.history[0], algo.history[-1]
    assert first["target_sparsity"] == 0.0 and first["dropped"] == 0
    assert last["target_sparsity"] == pytest.approx(0.9)
    assert last["grown"] == 0 and all(h["grown"] == 0 for h in algo.history)
    assert 0 < last["overlap_init"] < 0.2  # ~10% of the dense initial mask is left


def test_bad_input():
    model = tiny_mlp()
    opt = make_optimizer("momentum", model)
    for kwargs, match in [
        (dict(t_end=40), "t_end"),  # beyond training: the last iteration is 39
        (dict(t_start=20, t_end=10), "t_start"),
        (dict(delta_t=0), "delta_t"),
        (dict(initial_sparsity=0.95, sparsity=0.9), "initial_sparsity"),
        (dict(pattern="2:4", initial_sparsity=0.2), "initial_sparsity"),
        (dict(sparsity=-0.1), "sparsity"),
    ]:
        with pytest.raises(ValueError, match=match):
            st.GMP(model, opt, total_steps=40, **kwargs)
    with pytest.raises(ValueError, match="optimizer does not own"):
        st.GMP(model, make_optimizer("adam", tiny_mlp(1)), total_steps=40)
