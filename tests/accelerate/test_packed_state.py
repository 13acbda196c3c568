"""Optimizer state of accelerated weights is packed ((nnz,) tensors in CSR order) and yet
behaves as masked dense training's: same losses, weights and (dense) state through mask
changes, torch.optim's layout in ``state_dict`` and before any dense update, checkpoints
interchangeable both ways, and no tensor shaped like the weight."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch.accelerate import dense_state, restore_, unpack_state_
from sparsetorch.accelerate.packed_state import PACKED
from sparsetorch.kernels.cpu import Packed
from sparsetorch.masking import attach_mask, get_mask
from tests.kernels.cpu_backends import BACKENDS

OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    "adamw-amsgrad": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1, amsgrad=True),
    "sgd-nesterov-maximize": lambda p: torch.optim.SGD(
        p, lr=0.02, momentum=0.9, nesterov=True, weight_decay=1e-3, maximize=True
    ),
    "sgd-dampening": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5, dampening=0.2),
}


def _model(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(24, 32), nn.ReLU(), nn.Linear(32, 7))
    st.prune(model, sparsity=0.8, criterion="random", distribution="uniform")
    return model


def _pair(backend, name):
    dense, fast = _model(), _model()
    st.accelerate_(fast, backend=backend)
    make = OPTIMIZERS[name]
    return dense, fast, make(dense.parameters()), make(fast.parameters())


def _batch(seed, n=13):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 24, generator=g), torch.randint(0, 7, (n,), generator=g)


def _step(model, opt, seed):
    x, y = _batch(seed)
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def _new_mask(old, seed, swap=12):
    """``old`` with ``swap`` kept entries dropped and as many pruned ones grown."""
    g = torch.Generator().manual_seed(seed)
    flat = old.flatten().clone()
    kept, pruned = flat.nonzero().flatten(), (~flat).nonzero().flatten()
    flat[kept[torch.randperm(kept.numel(), generator=g)[:swap]]] = False
    flat[pruned[torch.randperm(pruned.numel(), generator=g)[:swap]]] = True
    return flat.view_as(old)


def _assert_same_state(dense_opt, fast_opt):
    sd, sf = dense_opt.state_dict(), fast_opt.state_dict()
    assert sd["param_groups"] == sf["param_groups"]
    assert sd["state"].keys() == sf["state"].keys()
    for i, state in sd["state"].items():
        assert state.keys() == sf["state"][i].keys()  # torch.optim's keys only
        for key, value in state.items():
            torch.testing.assert_close(sf["state"][i][key], value, atol=2e-6, rtol=1e-5)


def _assert_same(dense, fast, dense_opt, fast_opt):
    for a, b in zip(dense.parameters(), fast.parameters()):
        torch.testing.assert_close(b, a, atol=2e-6, rtol=1e-5)
    _assert_same_state(dense_opt, fast_opt)


def _saved(obj):
    """``obj`` through torch.save / torch.load (a checkpoint: nothing shared with ``obj``)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def _set(model, opt):
    """A SET instance over ``model`` (its masks exist): for its ``set_mask``."""
    return st.SET(model, opt, total_steps=100, sparsity=0.8, delta_t=1000)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("how", ["set_mask", "attach_mask"])
def test_training_through_mask_changes_equals_masked_dense(backend, name, how):
    dense, fast, od, of = _pair(backend, name)
    algos = (_set(dense, od), _set(fast, of)) if how == "set_mask" else None
    for step in range(7):
        if step in (2, 4):  # a topology update between two steps (twice, at step 4)
            for k in range(1 if step == 2 else 2):
                new = _new_mask(get_mask(dense[0], "weight"), 10 * step + k)
                for i, model in enumerate((dense, fast)):
                    if how == "set_mask":
                        algos[i].set_mask(model[0], "weight", new.clone())
                    else:
                        attach_mask(model[0], "weight", new.clone())
            if how == "set_mask":  # set_mask zeroes changed state at once, packed too
                _assert_same_state(od, of)
        assert _step(fast, of, step) == pytest.approx(_step(dense, od, step), rel=1e-6)
        assert fast[0].last_path == "sparse"
    _assert_same(dense, fast, od, of)
    state = of.state[fast[0].weight]
    assert state[PACKED] is fast[0]._sparse_state.packed  # follows the current mask
    mask = get_mask(fast[0], "weight")
    for key in ("exp_avg", "momentum_buffer"):
        if key in state:  # grown entries started at zero: the dense twin's value there
            torch.testing.assert_close(state[key], od.state[dense[0].weight][key][mask])


@pytest.mark.parametrize("backend", BACKENDS)
def test_what_optimizer_state_holds(backend):
    dense, fast, od, of = _pair(backend, "adamw-amsgrad")
    for step in range(3):
        _step(dense, od, step)
        _step(fast, of, step)
    w = fast[0].weight
    state = of.state[w]
    packed = state[PACKED]
    assert isinstance(packed, Packed) and packed.nnz == int(get_mask(fast[0], "weight").sum())
    assert set(state) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", PACKED}
    ref = od.state[dense[0].weight]
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert state[key].shape == (packed.nnz,)
        # CSR order: the positions packed.flat() of the flattened weight
        torch.testing.assert_close(state[key], ref[key].flatten()[packed.flat()])
        torch.testing.assert_close(dense_state(of, w)[key], ref[key])
    of.state_dict()
    assert of.state[w]["exp_avg"].shape == (packed.nnz,)  # state_dict copies, state stays
    unpack_state_(of)
    assert PACKED not in of.state[w] and of.state[w]["exp_avg"].shape == w.shape
    assert _step(fast, of, 3) == pytest.approx(_step(dense, od, 3), rel=1e-6)
    assert of.state[w]["exp_avg"].shape == (packed.nnz,)  # packed again by the sparse step
    _assert_same(dense, fast, od, of)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["adamw-amsgrad", "sgd-nesterov-maximize"])
def test_no_state_tensor_of_an_accelerated_weight_is_dense(backend, name):
    _, fast, _, of = _pair(backend, name)
    for step in range(4):
        _step(fast, of, step)
    for layer in (fast[0], fast[2]):
        w = layer.weight
        nnz = int(get_mask(layer, "weight").sum())
        tensors = [v for v in of.state[w].values() if isinstance(v, torch.Tensor)]
        moments = [t for t in tensors if t.dim() == 1]
        assert moments and all(t.numel() == nnz < w.numel() for t in moments)
        assert all(t.numel() in (1, nnz) for t in tensors)
        assert sum(t.nbytes for t in moments) == len(moments) * nnz * w.element_size()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["adam", "sgd-nesterov-maximize"])
def test_checkpoints_are_interchangeable_with_masked_dense_training(backend, name):
    make = OPTIMIZERS[name]
    # accelerated -> masked dense: save after 3 steps, continue both ways
    dense, fast, od, of = _pair(backend, name)
    for step in range(3):
        _step(fast, of, step)
    saved, weights = _saved(of.state_dict()), _saved(fast.state_dict())
    dense.load_state_dict(weights)
    od.load_state_dict(saved)
    assert od.state[dense[0].weight]["exp_avg" if "adam" in name else "momentum_buffer"].shape == (
        32,
        24,
    )
    for step in range(3, 6):
        assert _step(dense, od, step) == pytest.approx(_step(fast, of, step), rel=1e-6)
    _assert_same(dense, fast, od, of)
    # masked dense -> accelerated: into an optimizer that has stepped (packed by the load's
    # hook) and into a fresh one (packed at its first step)
    dense, fast, od, of = _pair(backend, name)
    _step(fast, of, 0)
    fresh_model = _model()
    st.accelerate_(fresh_model, backend=backend)
    fresh = make(fresh_model.parameters())
    for step in range(3):
        _step(dense, od, step)
    for model, opt in ((fast, of), (fresh_model, fresh)):
        model.load_state_dict(_saved(dense.state_dict()))
        opt.load_state_dict(_saved(od.state_dict()))
    assert PACKED in of.state[fast[0].weight]  # the load's post hook packed it
    for step in range(3, 6):
        expected = _step(dense, od, step)
        assert _step(fast, of, step) == pytest.approx(expected, rel=1e-6)
        assert _step(fresh_model, fresh, step) == pytest.approx(expected, rel=1e-6)
    _assert_same(dense, fast, od, of)
    _assert_same(dense, fresh_model, od, fresh)
    assert PACKED in fresh.state[fresh_model[0].weight]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["adamw-amsgrad", "sgd-dampening"])
def test_state_is_unpacked_before_a_dense_update(backend, name):
    dense, fast, od, of = _pair(backend, name)
    w = fast[0].weight
    for step in range(2):
        assert _step(fast, of, step) == pytest.approx(_step(dense, od, step), rel=1e-6)
    assert PACKED in of.state[w]
    fast[0].max_density = 0.1  # the layer takes its dense path: torch.optim's update
    assert _step(fast, of, 2) == pytest.approx(_step(dense, od, 2), rel=1e-6)
    assert fast[0].last_path == "dense" and PACKED not in of.state[w]
    assert all(v.shape == w.shape for k, v in of.state[w].items() if k != "step")
    _assert_same(dense, fast, od, of)
    fast[0].max_density = 0.5  # sparse again: packed again
    assert _step(fast, of, 3) == pytest.approx(_step(dense, od, 3), rel=1e-6)
    assert PACKED in of.state[w]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: the dense path
        x, y = _batch(4)
        for model, opt in ((dense, od), (fast, of)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x).float(), y).backward()
    od.step()
    of.step()
    assert fast[0].last_path == "dense" and PACKED not in of.state[w]
    _assert_same(dense, fast, od, of)
    restore_(fast)  # plain nn.Linear again: torch.optim's own update from now on
    _step(fast, of, 5)
    _step(dense, od, 5)
    assert PACKED not in of.state[w]
    _assert_same(dense, fast, od, of)
