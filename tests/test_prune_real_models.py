"""st.prune on the layer types of real models and its safety on real architectures: weights
stored (in, out) (transformers' Conv1D), MultiheadAttention, the global floor, layers a
pattern does not tile, and the streaming path of large models (equal to the one-pass path)."""

import itertools
import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import sparsetorch as sparse
from sparsetorch import pruning
from sparsetorch.patterns import get as get_pattern
from sparsetorch.selection import streaming_topk
from tests.masking.test_prunable_registry import Conv1D


class HFBlock(nn.Module):
    """A GPT-2-like MLP of transformers' Conv1D layers, weights (in, out)."""

    def __init__(self, d=16, hidden=32):
        super().__init__()
        self.c_fc, self.c_proj = Conv1D(hidden, d), Conv1D(d, hidden)

    def forward(self, x):
        return self.c_proj(torch.relu(self.c_fc(x)))


class LinearBlock(nn.Module):
    """The same function with nn.Linear, weights (out, in) = the Conv1D weights transposed."""

    def __init__(self, hf: HFBlock):
        super().__init__()
        self.c_fc = nn.Linear(*hf.c_fc.weight.shape)
        self.c_proj = nn.Linear(*hf.c_proj.weight.shape)
        with torch.no_grad():
            for name in ("c_fc", "c_proj"):
                getattr(self, name).weight.copy_(getattr(hf, name).weight.T)
                getattr(self, name).bias.copy_(getattr(hf, name).bias)

    def forward(self, x):
        return self.c_proj(torch.relu(self.c_fc(x)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sparsity": 0.7},
        {"sparsity": None, "pattern": "2:4"},
        {"sparsity": 0.8, "pattern": "1:4"},
        {"sparsity": 0.5, "pattern": "block4x4", "distribution": "uniform"},
        {"sparsity": 0.5, "pattern": "channel", "distribution": "erk"},
    ],
)
def test_conv1d_is_pruned_as_the_equivalent_linear(kwargs):
    torch.manual_seed(0)
    hf = HFBlock()
    with torch.no_grad():  # ties across layers too: tie-breaking must agree as well
        hf.c_fc.weight[:4] = 0.01
    lin = LinearBlock(hf)
    x = torch.randn(3, 16)
    torch.testing.assert_close(hf(x), lin(x))
    sparse.prune(hf, **kwargs)
    sparse.prune(lin, **kwargs)
    for name in ("c_fc.weight", "c_proj.weight"):
        assert torch.equal(sparse.masks(hf)[name], sparse.masks(lin)[name].T)
    torch.testing.assert_close(hf(x), lin(x))  # the same network, pruned the same way


def test_multihead_attention_in_proj_pruned_and_counted():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    sparse.prune(layer, pattern="2:4")
    masks = sparse.masks(layer)
    assert sorted(masks) == [
        "linear1.weight",
        "linear2.weight",
        "self_attn.in_proj_weight",
        "self_attn.out_proj.weight",
    ]
    assert get_pattern("2:4").is_valid(masks["self_attn.in_proj_weight"])
    assert sparse.sparsity(layer) == 0.5
    x = torch.randn(2, 5, 16)
    rep = sparse.report(layer, example_input=x)
    flops = {row.name: row.flops for row in rep.layers}
    tokens = 2 * 5
    assert flops["self_attn.in_proj_weight"] == 2 * tokens * 16 * 48  # q, k, v projections
    assert flops["self_attn.out_proj.weight"] == 2 * tokens * 16 * 16
    assert flops["linear1.weight"] == flops["linear2.weight"] == 2 * tokens * 16 * 32
    assert layer.training  # the report's forward restored the mode


def test_mha_with_separate_key_value_dims_counts_each_projection():
    mha = nn.MultiheadAttention(8, 2, kdim=4, vdim=6, batch_first=True)
    q, k, v = torch.randn(1, 3, 8), torch.randn(1, 5, 4), torch.randn(1, 5, 6)
    flops = sparse.model_report.count_flops(mha, (q, k, v))
    assert flops == {
        "q_proj_weight": 2 * 3 * 8 * 8,
        "k_proj_weight": 2 * 5 * 4 * 8,
        "v_proj_weight": 2 * 5 * 6 * 8,
        "out_proj.weight": 2 * 3 * 8 * 8,
    }


class Attention(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.mha = nn.MultiheadAttention(d, 2, batch_first=True)
        self.ff = nn.Linear(d, d)

    def forward(self, x):
        return self.ff(self.mha(x, x, x, need_weights=False)[0])


def test_sparsify_keeps_mha_working_and_reports_what_it_cannot_swap():
    torch.manual_seed(0)
    model = nn.Sequential(Attention(), HFBlock(), nn.Embedding(4, 4)).eval()
    sparse.prune(model, 0.5, distribution="uniform")
    x = torch.randn(2, 5, 16)
    before = model[:2](x)
    report = sparse.sparsify_(model, "csr")
    assert set(report.swapped) == {"0.ff", "1.c_fc", "1.c_proj"}  # Conv1D: a Linear, (in, out)
    assert set(report.skipped) == {"0.mha", "0.mha.out_proj", "2"}
    assert "in_proj_weight" in report.skipped["0.mha"]
    assert "multiplies by out_proj.weight" in report.skipped["0.mha.out_proj"]
    assert model[1].c_fc.transposed and model[1].c_fc.weight.shape == (16, 32)
    assert "Embedding" in report.skipped["2"]
    torch.testing.assert_close(model[:2](x), before, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ the floor
def _small_head(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    with torch.no_grad():
        model[2].weight.mul_(1e-3)  # a classifier of tiny weights: global magnitude empties it
    return model


def test_global_floor_keeps_a_layer_that_the_threshold_would_empty():
    total = 64 * 64 + 640
    k = round(0.1 * total)
    bare = sparse.compute_masks(_small_head(), 0.9, min_layer_density=0)
    assert int(bare["2.weight"].sum()) == 0  # one global threshold empties the classifier

    model = _small_head()
    w0, w2 = model[0].weight.detach().abs(), model[2].weight.detach().abs()
    with pytest.warns(UserWarning, match=r"kept fewer than min_layer_density=0\.01 of 1 layer"):
        sparse.prune(model, 0.9)
    masks = sparse.masks(model)
    floor = math.ceil(0.1 * 0.1 * 640)  # a tenth of the target density: 7 weights
    assert int(masks["2.weight"].sum()) == floor
    assert sum(int(m.sum()) for m in masks.values()) == k  # the total stays exact
    # the floor layer keeps its best weights, the other layer the best of the rest
    expected2 = torch.zeros(640, dtype=torch.bool)
    expected2[torch.topk(w2.flatten(), floor).indices] = True
    expected0 = torch.zeros(4096, dtype=torch.bool)
    expected0[torch.topk(w0.flatten(), k - floor).indices] = True
    assert torch.equal(masks["2.weight"].flatten(), expected2)
    assert torch.equal(masks["0.weight"].flatten(), expected0)


def test_floor_option_values_and_errors():
    model = _small_head()
    masks = sparse.compute_masks(model, 0.9, min_layer_density=0.5)
    assert int(masks["2.weight"].sum()) == math.ceil(0.1 * 640)  # capped at the density
    with pytest.raises(ValueError, match="min_layer_density must be in"):
        sparse.compute_masks(model, 0.9, min_layer_density=1.5)
    with pytest.raises(ValueError, match="'auto' or a float"):
        sparse.compute_masks(model, 0.9, min_layer_density="always")
    tiny = nn.Sequential(*[nn.Linear(4, 4) for _ in range(5)])  # 80 weights, keep 2
    with pytest.warns(UserWarning) as record:
        masks = sparse.compute_masks(tiny, 0.975)
    said = " ".join(str(w.message) for w in record)
    assert "cannot meet the floor of every layer (5 units" in said
    assert "4 layer(s) keep no weight" in said  # never silent
    assert sum(int(m.sum()) for m in masks.values()) == 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scales=st.lists(st.sampled_from([1e-4, 1e-2, 1.0]), min_size=2, max_size=4),
    sparsity=st.floats(0.5, 0.98),
    seed=st.integers(0, 1000),
)
def test_floor_is_the_best_mask_under_the_floors(scales, sparsity, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(*[nn.Linear(12, 12, bias=False) for _ in scales])
    with torch.no_grad():
        for layer, scale in zip(model, scales):
            layer.weight.mul_(scale)
    density = 1 - sparsity
    floors = {
        f"{i}.weight": max(1, math.ceil(0.1 * density * 144 - 1e-9)) for i in range(len(scales))
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masks = sparse.compute_masks(model, sparsity)
    kept = {n: int(m.sum()) for n, m in masks.items()}
    assert sum(kept.values()) == round(density * 144 * len(scales))
    assert all(kept[n] >= floors[n] for n in masks)
    # layers above their floor hold the global top of what is left (every kept >= every pruned)
    free = [n for n in masks if kept[n] > floors[n]]
    if free:
        scores = torch.cat([model.get_parameter(n).detach().abs().flatten() for n in free])
        keep = torch.cat([masks[n].flatten() for n in free])
        if bool(keep.any()) and bool((~keep).any()):
            assert scores[keep].min() >= scores[~keep].max()
    for n in masks:  # every layer keeps its own best weights
        s, m = model.get_parameter(n).detach().abs().flatten(), masks[n].flatten()
        if bool(m.any()) and bool((~m).any()):
            assert s[m].min() >= s[~m].max()


# ------------------------------------------------------------------------------ indivisible
def _mobile_like():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3),  # stem: rows of 3 input channels
        nn.Conv2d(16, 16, 3, groups=16),  # depthwise: rows of 1
        nn.Flatten(),
        nn.Linear(16, 30),  # 30 outputs: no 4x4 blocks
        nn.Linear(30, 8),  # rows of 30 inputs
    )


def test_nm_skips_every_indivisible_layer_with_one_message():
    model = _mobile_like()
    with pytest.warns(UserWarning) as record:
        sparse.prune(model, pattern="2:4")
    (message,) = [str(w.message) for w in record]
    assert "does not tile 3 layer(s)" in message
    for name in ("0.weight", "1.weight", "4.weight"):
        assert name in message
    assert sorted(sparse.masks(model)) == ["3.weight"]
    assert int(sparse.masks(model)["3.weight"].sum()) == 30 * 8
    with pytest.raises(ValueError, match=r"does not tile 3 of .*0\.weight.*1\.weight.*4\.weight"):
        sparse.prune(_mobile_like(), pattern="2:4", indivisible="error")


@pytest.mark.parametrize("indivisible", ["skip", "partial"])
def test_nm_groups_never_cross_the_conv_groups_of_a_transposed_convolution(indivisible):
    """ConvTranspose2d(in, out, groups=g) stores (in, out / g, k, k): output channel j of group
    c sums over the in / g input channels of group c only, so N:M groups along ``in`` must stay
    inside a conv group. 12 / 2 = 6 is no multiple of 4: the layer is skipped even with
    'partial' (partial groups would still cross); 16 / 2 = 8 is, and every group fits."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(12, 8, 1, groups=2), nn.ConvTranspose2d(8, 16, 1))
    fits = nn.ConvTranspose2d(16, 8, 1, groups=2)
    model.append(fits)
    with pytest.warns(UserWarning, match=r"does not tile 1 layer.*0\.weight: each of its 2 conv"):
        sparse.prune(model, pattern="2:4", indivisible=indivisible)
    assert sorted(sparse.masks(model)) == ["1.weight", "2.weight"]
    mask = sparse.masks(model)["2.weight"][:, :, 0, 0]  # (16 inputs, 4 outputs per group)
    for group in range(2):
        rows = mask[group * 8 : (group + 1) * 8].t()  # each output's own 8 inputs
        assert bool((rows.reshape(4, 2, 4).sum(-1) == 2).all())
    with pytest.raises(ValueError, match="would cross them"):
        sparse.prune(nn.Sequential(nn.ConvTranspose2d(12, 8, 1, groups=2), nn.Linear(4, 4)),
                     pattern="2:4", indivisible="error")  # fmt: skip


def test_partial_keeps_the_earlier_nm_behaviour():
    model = _mobile_like()
    sparse.prune(model, pattern="2:4", indivisible="partial")
    p = get_pattern("2:4")
    for name, mask in sparse.masks(model).items():
        weight = model.get_parameter(name).detach().abs()
        assert torch.equal(mask, p.mask(weight)), name  # per layer, the pattern's own mask


def test_block_skips_indivisible_and_refuses_when_none_fits():
    model = _mobile_like()
    with pytest.warns(UserWarning, match=r"'block2x2' does not tile 2 layer.*0\.weight, 1\.weight"):
        sparse.prune(model, 0.5, pattern="block2x2", distribution="uniform")
    assert sorted(sparse.masks(model)) == ["3.weight", "4.weight"]
    with pytest.raises(ValueError, match=r"'block2x2' does not tile 2 of the prunable weights"):
        sparse.prune(_mobile_like(), 0.5, pattern="block2x2", indivisible="partial")
    with pytest.raises(ValueError, match="indivisible must be one of skip, error, partial"):
        sparse.prune(_mobile_like(), 0.5, indivisible="bogus")
    with pytest.raises(ValueError, match=r"tiles none of the prunable weights: 0\.weight"):
        sparse.prune(nn.Sequential(nn.Linear(6, 3)), 0.5, pattern="block4x4")


# ------------------------------------------------------------------------------ streaming
def _mixed_model(seed, sizes):
    torch.manual_seed(seed)
    layers = [nn.Embedding(8, sizes[0])]
    for a, b in itertools.pairwise(sizes):
        layers.append(nn.Linear(a, b))
    model = nn.Sequential(*layers)
    with torch.no_grad():  # ties within and across layers
        model[1].weight[0] = 0.5
        model[0].weight[:, 0] = 0.5
    return model


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    sizes=st.lists(st.sampled_from([4, 8, 12]), min_size=2, max_size=3),
    sparsity=st.floats(0.1, 0.9),
    pattern=st.sampled_from(["unstructured", "2:4", "block4x4"]),
    distribution=st.sampled_from(["global", "uniform", "erk"]),
    again=st.booleans(),
    floor=st.sampled_from([0, "auto"]),
    seed=st.integers(0, 1000),
)
def test_streaming_path_equals_the_one_pass_path(
    monkeypatch, sizes, sparsity, pattern, distribution, again, floor, seed
):
    kwargs = {"pattern": pattern, "distribution": distribution, "min_layer_density": floor}
    lowest = 1 - (get_pattern(pattern).fixed_density or 1.0)
    sparsity = lowest + (1 - lowest) * sparsity
    first = (lowest + sparsity) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one_pass = _mixed_model(seed, sizes)
        if again:  # cumulative: -inf for the weights an earlier call pruned
            sparse.prune(one_pass, first, **kwargs)
        try:
            expected = sparse.compute_masks(one_pass, sparsity, **kwargs)
        except ValueError as exc:  # a floor no mask of this tiny model can meet
            assume("floor of every layer" not in str(exc))
            raise
        streamed = _mixed_model(seed, sizes)
        if again:
            sparse.prune(streamed, first, **kwargs)
        calls = []

        def counted(*args, **kw):
            calls.append(1)
            return streaming_topk(*args, **kw)

        with monkeypatch.context() as patch:
            patch.setattr(pruning, "STREAM_ABOVE", 0)
            patch.setattr(pruning, "streaming_topk", counted)
            got = sparse.compute_masks(streamed, sparsity, **kwargs)
    assert calls or pattern != "unstructured"  # the streaming selection did run
    assert list(got) == list(expected)
    assert all(torch.equal(got[n], expected[n]) for n in expected)
