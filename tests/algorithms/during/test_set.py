"""SET: magnitude drop among the active weights, seeded random regrowth (equal to a reference
drawing the same random numbers), counts kept, new connections at zero with zero moments."""

from __future__ import annotations

import math

import pytest
import torch

import sparsetorch as st
from sparsetorch.algorithms.during.base import derived_seed
from sparsetorch.patterns import get as get_pattern
from sparsetorch.selection import topk_mask
from tests.algorithms.during.helpers import (
    fill_state,
    make_optimizer,
    naive_drop_grow,
    state_tensors,
    tiny_mlp,
    train,
    weights,
)


def set_(kind="momentum", seed=0, **kw):
    model = tiny_mlp()
    kw.setdefault("sparsity", 0.8)
    kw.setdefault("total_steps", 40)
    kw.setdefault("delta_t", 4)
    return st.SET(model, make_optimizer(kind, model), seed=seed, **kw)


def test_every_update_equals_the_reference_with_the_same_random_draws():
    algo = set_()
    checked = []

    def check(t):
        if not algo.is_update_step(t):
            return
        # replay: the weights after this step's optimizer update are not known before it,
        # so rebuild the update from the masks before it (history) and the weights now
        new = algo.masks()
        fraction = 0.3 / 2 * (1 + math.cos(math.pi * t / 30))
        gen = torch.Generator()
        gen.set_state(state_before["gen"])
        for name in new:
            grow = torch.rand(new[name].shape, generator=gen)
            expected = naive_drop_grow(
                state_before["masks"][name], state_after_step[name].abs(), grow, fraction
            )
            assert torch.equal(new[name], expected), (t, name)
        checked.append(t)

    state_before: dict = {}
    state_after_step: dict = {}
    orig_update = algo.update_topology

    def spy(t):  # record what the update sees: weights after the optimizer step
        state_before.update(masks=algo.masks(), gen=algo.generator.get_state())
        state_after_step.update(weights(algo))
        return orig_update(t)

    algo.update_topology = spy
    train(algo, 40, after_step=check)
    assert checked == [4, 8, 12, 16, 20, 24, 28]


@pytest.mark.parametrize("kind", ["momentum", "adam"])
def test_counts_kept_new_connections_zero_with_zero_moments(kind):
    algo = set_(kind)
    before = {}

    def stale(t):
        if algo.is_update_step(t):
            before.update(algo.masks())

    def check(t):
        if not algo.is_update_step(t):
            return
        for name, new in algo.masks().items():
            old = before[name]
            assert int(new.sum()) == int(old.sum())
            grown = new & ~old
            param = dict(algo.model.named_parameters())[name]
            assert (param[grown] == 0).all()
            for value in state_tensors(algo, name):
                assert (value[grown] == 0).all()
                assert (value[old & new] == 1).all()

    orig_update = algo.update_topology

    def with_stale_state(t):
        fill_state(algo, 1.0)  # stale moments everywhere, right before the update
        return orig_update(t)

    algo.update_topology = with_stale_state
    train(algo, 40, before_step=stale, after_step=check)
    assert sum(h["grown"] for h in algo.history) > 0


def test_seed_decides_the_regrowth():
    a, b, c = set_(seed=3), set_(seed=3), set_(seed=4)
    for algo in (a, b, c):
        train(algo, 40)
    assert all(torch.equal(a.masks()[n], b.masks()[n]) for n in a.masks())
    assert not all(torch.equal(a.masks()[n], c.masks()[n]) for n in a.masks())


def test_generator_argument_is_used():
    gen = torch.Generator().manual_seed(derived_seed(3))
    a = st.SET(
        m := tiny_mlp(), make_optimizer("momentum", m), sparsity=0.8, total_steps=40, generator=gen
    )
    b = set_(seed=3, delta_t=100)
    assert all(torch.equal(a.masks()[n], b.masks()[n]) for n in a.masks())


def test_random_mask_is_not_drawn_from_the_weights_stream():
    # the user seeds the weights with torch.manual_seed(s) and passes seed=s: the mask must
    # not come from the same random bits (rand and randn of one seed are correlated)
    assert derived_seed(0) != 0 and derived_seed(0) != derived_seed(1)
    torch.manual_seed(0)
    model = torch.nn.Linear(200, 100, bias=False)
    torch.manual_seed(0)
    same_stream = torch.rand(100, 200)
    algo = st.SET(model, make_optimizer("momentum", model), sparsity=0.5, total_steps=10, seed=0)
    assert not torch.equal(algo.masks()["weight"], topk_mask(same_stream, 10000))
    # ... which is what an underived seed gives
    torch.manual_seed(0)
    model = torch.nn.Linear(200, 100, bias=False)
    gen = torch.Generator().manual_seed(0)
    algo = st.SET(
        model, make_optimizer("momentum", model), sparsity=0.5, total_steps=10, generator=gen
    )
    assert torch.equal(algo.masks()["weight"], topk_mask(same_stream, 10000))


def test_update_follows_the_optimizer_step():
    algo = set_()
    snapshot = {}

    def keep(t):
        snapshot.update(weights(algo))

    def check(t):  # every step moves the kept weights, update steps included
        now, masks = weights(algo), algo.masks()
        assert any(not torch.equal(now[n][masks[n]], snapshot[n][masks[n]]) for n in now)

    train(algo, 10, before_step=keep, after_step=check)
    assert [h["step"] for h in algo.history] == [4, 8]


def test_block_pattern_moves_whole_blocks():
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    algo = st.SET(
        model,
        make_optimizer("momentum", model),
        sparsity=0.5,
        distribution="uniform",
        total_steps=20,
        delta_t=2,
        pattern="block2x2",
        alpha=0.5,
    )
    p = get_pattern("block2x2")
    start = algo.masks()
    for _ in range(20):
        x = torch.randn(8, 16)
        algo.optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        algo.step()
        for name, mask in algo.masks().items():
            assert p.is_valid(mask)
            assert int(mask.sum()) == int(start[name].sum())
    assert not all(torch.equal(start[n], m) for n, m in algo.masks().items())
