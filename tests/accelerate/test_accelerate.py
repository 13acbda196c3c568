"""``st.accelerate_``: masked Linear layers on the sparse CPU kernels train as masked dense
layers do (to float rounding), keep parameters, masks, state_dict keys and torch.optim
optimizers, and follow mask and weight changes."""

from __future__ import annotations

import copy
import io
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch.accelerate import AcceleratedLinear, restore_
from sparsetorch.kernels.cpu import available
from sparsetorch.masking import attach_mask, get_mask
from tests.kernels.cpu_backends import BACKENDS


def _model(seed=0, sparsity=0.8, dtype=torch.float32):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(24, 32), nn.ReLU(), nn.Linear(32, 7)).to(dtype)
    st.prune(model, sparsity=sparsity, criterion="random", distribution="uniform")
    return model


def _pair(backend, **kw):
    dense, fast = _model(**kw), _model(**kw)
    st.accelerate_(fast, backend=backend)
    return dense, fast


def _loss(model, x, y):
    return nn.functional.cross_entropy(model(x).float(), y)


def _batch(seed, n=13, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 24, generator=g).to(dtype), torch.randint(0, 7, (n,), generator=g)


@pytest.mark.parametrize("backend", BACKENDS)
def test_accelerate_keeps_modules_parameters_and_state_dict(backend):
    model = _model()
    before = dict(model.named_parameters())
    keys = list(model.state_dict())
    report = st.accelerate_(model, backend=backend)
    assert set(report.swapped) == {"0", "2"} and report.backend == backend
    assert type(model[0]) is AcceleratedLinear and isinstance(model[0], nn.Linear)
    assert all(p is before[n] for n, p in model.named_parameters())
    assert list(model.state_dict()) == keys  # weight, bias, weight_sparsity_mask: nothing added
    restore_(model)
    assert type(model[0]) is nn.Linear and list(model.state_dict()) == keys


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_and_gradients_equal_masked_dense(backend):
    dense, fast = _pair(backend)
    x, y = _batch(0)
    xd, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    _loss(dense, xd, y).backward()
    _loss(fast, xf, y).backward()
    assert fast[0].last_path == "sparse" and fast[0].last_grad_dense is False
    torch.testing.assert_close(fast(x), dense(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xf.grad, xd.grad, atol=1e-6, rtol=1e-5)
    masks = st.masks(dense)
    for (name, a), b in zip(dense.named_parameters(), fast.parameters()):
        expected = a.grad * masks[name] if name in masks else a.grad
        torch.testing.assert_close(b.grad, expected, atol=1e-6, rtol=1e-5)
    # the kernels' weight gradient is zero at every pruned position (dense-shaped, strided)
    w = fast[0].weight
    assert w.grad.layout == torch.strided and bool(
        (w.grad[~get_mask(fast[0], "weight")] == 0).all()
    )


def _optimizers():
    return {
        "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
        "adamw-amsgrad": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1, amsgrad=True),
        "sgd-nesterov": lambda p: torch.optim.SGD(
            p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3
        ),
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
        "rmsprop (dense update)": lambda p: torch.optim.RMSprop(p, lr=1e-3),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(_optimizers()))
def test_training_equals_masked_dense_training(backend, name):
    dense, fast = _pair(backend)
    make = _optimizers()[name]
    od, of = make(dense.parameters()), make(fast.parameters())
    for step in range(6):
        x, y = _batch(step)
        od.zero_grad()
        of.zero_grad()
        _loss(dense, x, y).backward()
        _loss(fast, x, y).backward()
        od.step()
        of.step()
    for a, b in zip(dense.parameters(), fast.parameters()):
        torch.testing.assert_close(b, a, atol=2e-6, rtol=1e-5)
    sd, sf = od.state_dict(), of.state_dict()
    assert sd["param_groups"] == sf["param_groups"]
    for i, state in sd["state"].items():
        assert state.keys() == sf["state"][i].keys()
        for key, value in state.items():
            torch.testing.assert_close(sf["state"][i][key], value, atol=2e-6, rtol=1e-5)
    for layer in (fast[0], fast[2]):  # pruned weights stay exact zeros
        assert bool((layer.weight[~get_mask(layer, "weight")] == 0).all())


@pytest.mark.skipif(not available(), reason="the compiled CPU kernels did not build here")
def test_supported_optimizers_step_the_weight_sparsely():
    # the compiled step writes the kept entries in place (no torch op: the version counter
    # stays), where torch.optim's own dense update (RMSprop here) bumps it
    for make, fused in (
        (lambda p: torch.optim.Adam(p, lr=1e-2), True),
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), True),
        (lambda p: torch.optim.RMSprop(p, lr=1e-3), False),
    ):
        model = _model()
        st.accelerate_(model, backend="cpp")
        opt = make(model.parameters())
        x, y = _batch(0)
        _loss(model, x, y).backward()
        version = model[0].weight._version
        opt.step()
        assert (model[0].weight._version == version) is fused
        assert model[0].weight.grad is not None  # the gradient is back after the step


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_buffer_is_reused_and_never_changes_a_held_gradient(backend):
    _, fast = _pair(backend)
    opt = torch.optim.Adam(fast.parameters(), lr=1e-2)
    held = []
    for step in range(3):
        x, y = _batch(step)
        opt.zero_grad()
        _loss(fast, x, y).backward()
        held.append((fast[0].weight.grad, fast[0].weight.grad.clone()))
        opt.step()
    # a gradient someone still holds is never overwritten by a later backward
    for grad, copy_ in held:
        assert torch.equal(grad, copy_)
    held.clear()
    ptrs = set()
    for step in range(3):
        x, y = _batch(step)
        opt.zero_grad()
        _loss(fast, x, y).backward()
        ptrs.add(fast[0].weight.grad.data_ptr())
        opt.step()
    assert len(ptrs) == 1  # dropped by zero_grad: the same buffer is written again


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_accumulation_and_zero_grad_without_none(backend):
    dense, fast = _pair(backend)
    od = torch.optim.SGD(dense.parameters(), lr=0.1)
    of = torch.optim.SGD(fast.parameters(), lr=0.1)
    for step in range(3):
        od.zero_grad(set_to_none=False)
        of.zero_grad(set_to_none=False)
        for micro in range(3):  # three micro-batches, one step
            x, y = _batch(10 * step + micro)
            _loss(dense, x, y).backward()
            _loss(fast, x, y).backward()
        mask = get_mask(dense[0], "weight")
        torch.testing.assert_close(fast[0].weight.grad, dense[0].weight.grad * mask)
        od.step()
        of.step()
    for a, b in zip(dense.parameters(), fast.parameters()):
        torch.testing.assert_close(b, a, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_and_weight_changes_are_followed(backend):
    dense, fast = _pair(backend)
    x, _ = _batch(0)
    fast(x)
    repacks = fast[0]._sparse_state.repacks
    g = torch.Generator().manual_seed(9)
    new = torch.rand(32, 24, generator=g) < 0.3
    for model in (dense, fast):
        attach_mask(model[0], "weight", new)
    torch.testing.assert_close(fast(x), dense(x), atol=1e-5, rtol=1e-5)
    assert fast[0]._sparse_state.repacks == repacks + 1
    fast(x)
    assert fast[0]._sparse_state.repacks == repacks + 1  # unchanged mask: no re-pack
    with torch.no_grad():  # the mask buffer edited in place, and the weight
        for model in (dense, fast):
            model[0].weight_sparsity_mask[:5] = False
            model[0].weight.mul_(2).mul_(model[0].weight_sparsity_mask)
    torch.testing.assert_close(fast(x), dense(x), atol=1e-5, rtol=1e-5)
    # the gradient is zero at the positions the new mask prunes
    fast.zero_grad()
    _loss(fast, *_batch(1)).backward()
    assert bool((fast[0].weight.grad[~fast[0].weight_sparsity_mask] == 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_gradient_on_request(backend):
    dense, fast = _pair(backend)
    fast[0]._sparsetorch_dense_grad = True
    x, y = _batch(2)
    _loss(dense, x, y).backward()
    _loss(fast, x, y).backward()
    assert fast[0].last_grad_dense is True and fast[2].last_grad_dense is False
    torch.testing.assert_close(fast[0].weight.grad, dense[0].weight.grad, atol=1e-6, rtol=1e-5)
    assert bool((fast[0].weight.grad[~fast[0].weight_sparsity_mask] != 0).any())


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_layers_and_unmasked_layers_run_dense(backend):
    model = _model(sparsity=0.8)
    extra = nn.Linear(7, 3)  # no mask
    model.append(extra)
    report = st.accelerate_(model, backend=backend, max_density=0.1)
    assert "dense until one is attached" in report.swapped["3"]
    assert "dense (> max_density 0.1)" in report.swapped["0"]
    x, _ = _batch(0)
    model(x)
    assert model[0].last_path == "dense" and model[3].last_path == "dense"
    attach_mask(extra, "weight", torch.rand(3, 7) < 0.05)
    model[0].max_density = 0.5
    model(x)
    assert model[0].last_path == "sparse" and model[3].last_path == "sparse"


def test_autocast_takes_the_dense_path():
    dense, fast = _pair("torch")
    x, _ = _batch(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, got = dense(x), fast(x)
    assert fast[0].last_path == "dense" and got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected)


def test_filter_fn_and_linear_subclasses():
    model = _model()
    model.append(nn.modules.linear.NonDynamicallyQuantizableLinear(7, 7))
    report = st.accelerate_(model, lambda module, fqn: fqn != "2")
    assert set(report.swapped) == {"0"} and "is not exactly nn.Linear" in report.skipped["3"]
    assert type(model[2]) is nn.Linear


def test_filter_fn_sees_linear_and_masked_layers_only():
    model = _model()
    report = st.accelerate_(model, lambda module, fqn: module.out_features > 8)  # Linear only
    assert set(report.swapped) == {"0"} and not report.skipped


def test_masked_layers_of_other_kinds_are_reported_not_silently_dense():
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.Flatten(), nn.Linear(8, 3), nn.Conv1d(1, 1, 1))
    st.prune(model, 0.5, filter_fn=lambda module, fqn: fqn != "3")
    report = st.accelerate_(model)
    assert set(report.swapped) == {"2"} and set(report.skipped) == {"0"}  # 3 has no mask
    assert "a masked Conv1d: the kernels take nn.Linear layers only" in report.skipped["0"]


class _TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(40, 16)
        self.body = nn.Linear(16, 16)
        self.head = nn.Linear(16, 40, bias=False)
        self.head.weight = self.embed.weight  # tied, as in GPT-2 and T5

    def forward(self, ids):
        return self.head(torch.relu(self.body(self.embed(ids))))


def test_a_head_tied_to_a_masked_embedding_is_reported_with_its_mask_s_owner():
    torch.manual_seed(0)
    model = _TiedLM()
    st.prune(model, 0.75, criterion="random", distribution="uniform")
    assert set(st.masks(model)) == {"embed.weight", "body.weight"}  # the mask lives there
    report = st.accelerate_(model)
    assert set(report.swapped) == {"body"}
    assert "its weight is embed.weight, whose mask lives there" in report.skipped["head"]
    assert type(model.head) is nn.Linear
    ids = torch.randint(0, 40, (3, 5))
    model(ids).sum().backward()
    assert torch.equal(model.head.weight == 0, ~get_mask(model.embed, "weight"))


@pytest.mark.parametrize("value", [np.float32(0.5), np.float64(0.5), Fraction(1, 2)])
def test_max_density_takes_any_real_number(value):
    model = _model(sparsity=0.8)  # density 0.2 in both layers
    st.accelerate_(model, max_density=value, backend="torch")
    assert type(model[0].max_density) is float and model[0].max_density == 0.5
    model(_batch(0)[0])
    assert model[0].last_path == "sparse"


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        st.accelerate_("model")
    with pytest.raises(ValueError, match=r"max_density must be a number in \(0, 1\]"):
        st.accelerate_(_model(), max_density=0)
    with pytest.raises(ValueError, match=r"max_density must be a number in \(0, 1\]"):
        st.accelerate_(_model(), max_density=True)
    with pytest.raises(ValueError, match="backend must be None, 'cpp' or 'torch'"):
        st.accelerate_(_model(), backend="mkl")


@pytest.mark.parametrize("backend", BACKENDS)
def test_copies_and_pickles_rebuild_their_own_state(backend):
    _, fast = _pair(backend)
    x, y = _batch(0)
    _loss(fast, x, y).backward()
    twin = copy.deepcopy(fast)
    assert twin[0]._sparse_state.packed is None  # rebuilt on first use
    torch.testing.assert_close(twin(x), fast(x))
    buffer = io.BytesIO()
    torch.save(fast, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(loaded(x), fast(x))
    with torch.no_grad():  # independent: changing the copy leaves the original
        twin[0].weight.zero_()
    assert not torch.equal(twin(x), fast(x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_training_matches_masked_dense_loosely(backend):
    dense, fast = _pair(backend, dtype=torch.bfloat16)
    od = torch.optim.Adam(dense.parameters(), lr=1e-2)
    of = torch.optim.Adam(fast.parameters(), lr=1e-2)
    for step in range(4):
        x, y = _batch(step, dtype=torch.bfloat16)
        od.zero_grad()
        of.zero_grad()
        ld, lf = _loss(dense, x, y), _loss(fast, x, y)
        ld.backward()
        lf.backward()
        assert fast[0].last_path == "sparse"
        assert abs(ld.item() - lf.item()) < 2e-2
        od.step()
        of.step()
    for a, b in zip(dense.parameters(), fast.parameters()):
        torch.testing.assert_close(b.float(), a.float(), atol=3e-2, rtol=3e-2)
