"""``taylor`` is SNIP's saliency |w * dL/dw|: one implementation, both registry names."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsetorch.criteria import get
from sparsetorch.criteria.snip import snip_scores

NAMES = ["0.weight", "5.weight"]


def conv_bn_dropout(dtype=torch.float32):
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
        nn.Linear(2 * 4 * 4, 3),
    )  # fmt: skip
    return model.to(dtype)


def batches(dtype=torch.float32, n=2):
    g = torch.Generator().manual_seed(0)
    return [
        (torch.randn(4, 1, 6, 6, generator=g).to(dtype), torch.randint(0, 3, (4,), generator=g))
        for _ in range(n)
    ]


def test_scoring_leaves_bn_buffers_rng_grads_and_mode_alone():
    model = conv_bn_dropout()
    model[1].running_mean.fill_(0.25)  # not the defaults: a forward in train mode moves them
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    get("taylor").scores(model, NAMES, batch=batches())
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():  # running stats, num_batches_tracked
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_taylor_equals_snip_on_the_same_batches(dtype):
    model, data = conv_bn_dropout(dtype), batches(dtype)
    taylor = get("taylor").scores(model, NAMES, batch=data)
    snip = get("snip").scores(model, NAMES, batch=data)
    assert list(taylor) == list(snip) == NAMES
    for name in NAMES:
        # bitwise, dtype included: float32 for 16-bit weights (the criteria's score dtype)
        assert snip[name].dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        assert taylor[name].dtype == snip[name].dtype
        assert torch.equal(taylor[name], snip[name]), name
        assert torch.equal(snip_scores(model, NAMES, data)[name], snip[name])


def test_taylor_equals_an_independent_autograd_reference():
    model = conv_bn_dropout(torch.float64).eval()  # eval: dropout off, stats used, not updated
    data = batches(torch.float64, n=3)
    x = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])
    weights = [model[0].weight, model[5].weight]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), weights)
    scores = get("taylor").scores(model, NAMES, batch=data)
    for name, w, g in zip(NAMES, weights, grads):
        torch.testing.assert_close(scores[name], (w.detach() * g).abs(), rtol=1e-12, atol=1e-15)


def test_taylor_from_dot_grad_is_the_same_saliency():
    model = conv_bn_dropout(torch.float64).eval()
    (x, y) = batches(torch.float64, n=1)[0]
    F.cross_entropy(model(x), y).backward()
    from_grad = get("taylor").scores(model, NAMES)  # the .grad already there
    from_batch = get("snip").scores(model, NAMES, batch=(x, y))
    for name in NAMES:
        torch.testing.assert_close(from_grad[name], from_batch[name], rtol=1e-12, atol=1e-15)
