"""``algo.step(scaler=...)``: a GradScaler in your own loop. A power-of-two loss scale is exact
in floating point, so a scaled run must equal the unscaled one bitwise (RigL's grow scores
included); an inf gradient skips the optimizer step and that iteration's topology update."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sparsetorch as st
from tests.algorithms.during.helpers import batch, make_optimizer, tiny_mlp, weights

ALGORITHMS = {
    "rigl": lambda m, o: st.RigL(m, o, sparsity=0.8, total_steps=24, delta_t=3, seed=1),
    "set": lambda m, o: st.SET(m, o, sparsity=0.8, total_steps=24, delta_t=3, seed=1),
    "gmp": lambda m, o: st.GMP(m, o, sparsity=0.8, total_steps=24, delta_t=3),
}


def run(name, steps, scaler=None, unscale_first=False, kind="adam"):
    model = tiny_mlp(0)
    optimizer = make_optimizer(kind, model)
    algo = ALGORITHMS[name](model, optimizer)
    for _ in range(steps):
        x, y = batch(algo.t)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if scaler is None:
            loss.backward()
        else:
            scaler.scale(loss).backward()
            if unscale_first:
                scaler.unscale_(optimizer)
        algo.step(scaler=scaler)
    return algo


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("unscale_first", [False, True])
def test_a_power_of_two_scale_gives_the_unscaled_run_bitwise(name, unscale_first):
    plain = run(name, 20)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=5)
    scaled = run(name, 20, scaler, unscale_first)
    assert scaler.get_scale() == 2.0**16  # grew every 5 clean steps: no step was skipped
    assert scaled.history == plain.history and len(plain.history) >= 5
    for key, value in weights(plain).items():
        assert torch.equal(weights(scaled)[key], value), key
    for key, value in plain.masks().items():
        assert torch.equal(scaled.masks()[key], value), key
    assert scaled.skipped_steps == 0


@pytest.mark.parametrize("name", ["rigl", "set"])
def test_an_inf_gradient_skips_the_step_and_the_topology_update(name):
    model = tiny_mlp(0)
    optimizer = make_optimizer("momentum", model)
    algo = ALGORITHMS[name](model, optimizer)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for t in range(4):  # t = 3 is an update step of every algorithm
        x, y = batch(t)
        optimizer.zero_grad()
        scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
        if t == 3:
            before_w, before_m, updates = weights(algo), algo.masks(), len(algo.history)
            model[0].weight.grad[0, 0] = float("inf")
            assert algo.is_update_step(3)
        algo.step(scaler=scaler)
    assert algo.t == 4 and algo.skipped_steps == 1 and len(algo.history) == updates
    assert scaler.get_scale() == 512.0  # backed off
    for key, value in before_w.items():
        assert torch.equal(weights(algo)[key], value), key  # no optimizer step
    for key, value in before_m.items():
        assert torch.equal(algo.masks()[key], value), key  # no topology update


@pytest.mark.parametrize("schedule", ["one_shot", "gradual"])
def test_gmp_prunes_on_a_schedule_step_whose_optimizer_step_overflowed(schedule):
    """GMP's pruning reads only the weights: an overflowed schedule step skips the optimizer
    step but still prunes, to the sparsity an unscaled run reaches there (a one-shot schedule
    has one step; losing it trained the model dense)."""
    model = tiny_mlp(0)
    optimizer = make_optimizer("momentum", model)
    algo = st.GMP(model, optimizer, sparsity=0.8, total_steps=24, delta_t=3, schedule=schedule)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for t in range(24):
        x, y = batch(t)
        optimizer.zero_grad()
        scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
        if t in (0, 18):  # the one-shot schedule's step, and the gradual one's last (t_end)
            before_w = weights(algo)
            model[0].weight.grad[0, 0] = float("inf")
        algo.step(scaler=scaler)
        if t in (0, 18):
            for key, value in before_w.items():  # no optimizer step ...
                assert torch.equal(weights(algo)[key].ne(0), value.ne(0) & algo.masks()[key])
            if algo.is_update_step(t):
                assert algo.history[-1]["step"] == t  # ... and the pruning all the same
    assert algo.skipped_steps == 2
    kept = sum(int(m.sum()) for m in algo.masks().values())
    total = sum(m.numel() for m in algo.masks().values())
    assert abs(kept - 0.2 * total) <= len(algo.masks())  # per layer to the nearest weight


def test_fp16_autocast_training_keeps_rigl_counts():
    model = tiny_mlp(0)
    optimizer = make_optimizer("adam", model)
    algo = st.RigL(model, optimizer, sparsity=0.8, total_steps=30, delta_t=3)
    counts = {k: int(m.sum()) for k, m in algo.masks().items()}
    scaler = torch.amp.GradScaler("cpu")
    for _ in range(30):
        x, y = batch(algo.t)
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        algo.step(scaler=scaler)
    assert algo.t == 30 and len(algo.history) + algo.skipped_steps >= 7
    assert {k: int(m.sum()) for k, m in algo.masks().items()} == counts
    for full, module, name in algo.targets:
        assert (module._parameters[name][~algo.masks()[full]] == 0).all()


def test_a_disabled_scaler_is_the_plain_step_and_a_wrong_type_is_refused():
    plain = run("rigl", 8)
    off = run("rigl", 8, torch.amp.GradScaler("cpu", enabled=False))
    assert off.history == plain.history
    with pytest.raises(TypeError, match=r"scaler must be a torch\.amp\.GradScaler"):
        plain.step(scaler=object())
    assert plain.t == 8
