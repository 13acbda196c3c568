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


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
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
