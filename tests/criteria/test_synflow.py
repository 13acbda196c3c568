import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import sparsetorch
from sparsetorch.algorithms.at_init import synflow
from sparsetorch.criteria.synflow import flowless_layers, synflow_scores


def test_closed_form_two_layer_with_biases():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    w1, b1 = model[0].weight.detach().double().abs(), model[0].bias.detach().double().abs()
    w2 = model[2].weight.detach().double().abs()
    # input ones: h = |W1| 1 + |b1| (positive, so ReLU is the identity); R = 1^T (|W2| h + |b2|)
    h = w1.sum(1) + b1  # (4,)
    c = w2.sum(0)  # (4,) = 1^T |W2|
    scores = synflow_scores(model, ["0.weight", "2.weight"], (5,))
    assert scores["0.weight"].dtype == torch.float64
    torch.testing.assert_close(scores["0.weight"], w1 * c[:, None], rtol=1e-14, atol=0)
    torch.testing.assert_close(scores["2.weight"], w2 * h[None, :], rtol=1e-14, atol=0)


@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_synaptic_flow_is_conserved_per_layer(widths, seed):
    # Tanaka et al., Theorem 1 consequence: without biases every layer's scores sum to R.
    torch.manual_seed(seed)
    layers = []
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out, bias=False), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    names = [f"{i}.weight" for i in range(0, len(layers) - 1, 2)]
    scores = synflow_scores(model, names, (widths[0],))
    r = torch.ones(1, widths[0], dtype=torch.float64)
    for name in names:
        r = r @ model.get_parameter(name).detach().double().abs().T
    for name in names:
        torch.testing.assert_close(scores[name].sum(), r.sum(), rtol=1e-12, atol=0)


def test_conv_bn_model_untouched_and_masked_weight_scores_zero():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)
    )
    with torch.no_grad():
        model[0].weight[0, 0, 1, 1] = 0
        model[1].running_mean.fill_(-0.5)  # abs() is taken on the copy only
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = synflow_scores(model, ["0.weight", "4.weight"], (1, 6, 6))
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert scores["0.weight"][0, 0, 1, 1] == 0
    assert (scores["0.weight"] == 0).sum() == 1 and (scores["4.weight"] > 0).all()


def test_float32_overflow_is_reported_and_float64_is_fine():
    layers = []
    for _ in range(12):
        lin = nn.Linear(64, 64, bias=False)
        nn.init.constant_(lin.weight, 100.0)
        layers.append(lin)
    model = nn.Sequential(*layers)
    names = [f"{i}.weight" for i in range(12)]
    with pytest.raises(ValueError, match=r"overflowed in torch\.float32"):
        synflow_scores(model, names, (64,), dtype=torch.float32)
    scores = synflow_scores(model, names, (64,))
    assert all(torch.isfinite(s).all() for s in scores.values())


def test_bad_inputs():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="input_shape must be"):
        synflow_scores(model, ["0.weight"], ())
    with pytest.raises(ValueError, match="input_shape must be"):
        synflow_scores(model, ["0.weight"], (0, 3))
    with pytest.raises(TypeError, match="floating-point dtype"):
        synflow_scores(model, ["0.weight"], (3,), dtype=torch.int64)
    with pytest.raises(ValueError, match="does not fit the model"):
        synflow_scores(model, ["0.weight"], (4,))
    with pytest.raises(ValueError, match="no prunable weights"):
        synflow_scores(model, [], (3,))


def test_registered_criterion_shape_from_batch_or_constructor():
    from sparsetorch.criteria import CRITERIA

    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    names = ["0.weight", "2.weight"]
    direct = synflow_scores(model, names, (5,))
    from_batch = CRITERIA.build("synflow").scores(
        model, names, batch=(torch.randn(2, 5), torch.zeros(2).long())
    )
    given = CRITERIA.build("synflow", input_shape=(5,)).scores(model, names)
    for n in names:
        assert torch.equal(from_batch[n], direct[n]) and torch.equal(given[n], direct[n])
    with pytest.raises(ValueError, match="needs the input shape"):
        CRITERIA.build("synflow").scores(model, names)


class _Attention(nn.Module):
    """Token embedding, one attention head (q, k, v, o) and a classifier head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(11, 8)
        self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))
        self.head = nn.Linear(8, 3)

    def forward(self, ids):
        x = self.embed(ids)  # (B, T, 8)
        weights = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2) / 8**0.5, -1)
        return self.head(self.o(weights @ self.v(x)).mean(1))


def test_layers_without_flow_are_named_where_the_user_called():
    """SynFlow's input makes every position identical, so attention is uniform whatever q
    and k hold: their scores are rounding noise (conservation: every other layer's scores
    sum to R), and both entry points name them at the caller's line."""
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(1))
    model = _Attention()
    scores = synflow_scores(model, ["q.weight", "k.weight", "v.weight", "o.weight"], inputs=ids)
    totals = {name: float(s.sum()) for name, s in scores.items()}
    assert totals["q.weight"] < 1e-12 * totals["v.weight"]
    assert flowless_layers(scores) == ["q.weight", "k.weight"]
    with pytest.warns(
        UserWarning, match=r"no synaptic flow reaches \['q.weight', 'k.weight'"
    ) as rec:
        sparsetorch.prune(
            model, 0.5, criterion="synflow", batch=(ids, torch.zeros(2, dtype=torch.long))
        )
    assert {r.filename for r in rec} == {__file__}  # the floor warning of the ranking too
    with pytest.warns(UserWarning, match="no synaptic flow reaches") as rec:
        synflow(_Attention(), None, 0.5, inputs=ids, iterations=3, distribution="uniform")
    assert [r.filename for r in rec if "synaptic flow" in str(r.message)] == [__file__]


def test_a_chain_without_attention_has_flow_everywhere():
    model = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 9), nn.ReLU(), nn.Linear(9, 2))
    scores = synflow_scores(model, ["0.weight", "2.weight", "4.weight"], input_shape=(6,))
    assert flowless_layers(scores) == []
