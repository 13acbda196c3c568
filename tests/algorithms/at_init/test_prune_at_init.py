"""One-shot pruning at init: exact counts, masks equal to independent top-k, patterns,
determinism, layer collapse, bad input."""

import pytest
import torch
from torch import nn

from sparsetorch.algorithms.at_init import (
    empty_layers,
    exponential_densities,
    grasp,
    random_prune,
    snip,
    synflow,
)
from sparsetorch.criteria.grasp import grasp_scores
from sparsetorch.criteria.snip import snip_scores
from sparsetorch.criteria.synflow import synflow_scores
from sparsetorch.masking import get_masks
from sparsetorch.patterns import get as get_pattern

NAMES = ["0.weight", "2.weight", "6.weight"]


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),  # 0: (4, 1, 3, 3)
        nn.ReLU(),
        nn.Conv2d(4, 8, 3),  # 2: (8, 4, 3, 3)
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 4),  # 6: (4, 32)
    )


def _batch(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def _naive_global_keep(scores, keep):
    """Sort-based global top-k (stable, lower index of earlier layer first on ties)."""
    flat = torch.cat([scores[n].flatten().double() for n in NAMES])
    order = torch.sort(flat, descending=True, stable=True).indices
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[order[:keep]] = True
    out, start = {}, 0
    for n in NAMES:
        size = scores[n].numel()
        out[n] = chosen[start : start + size].view(scores[n].shape)
        start += size
    return out


def _total():
    return sum(_net().get_parameter(n).numel() for n in NAMES)


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.97])
def test_snip_global_mask_equals_sorted_topk_and_exact_count(sparsity):
    model, batch = _net(), _batch()
    scores = snip_scores(model, NAMES, batch)
    keep = round((1 - sparsity) * _total())
    snip(model, batch, sparsity)
    masks = get_masks(model)
    assert sum(int(m.sum()) for m in masks.values()) == keep
    expected = _naive_global_keep(scores, keep)
    for n in NAMES:
        assert torch.equal(masks[n], expected[n]), n
        assert torch.equal(model.get_parameter(n)[~masks[n]], torch.zeros(int((~masks[n]).sum())))


def test_grasp_removes_the_largest_paper_scores():
    # the paper/official code remove the top p of S(-theta) = -theta * Hg; we keep the rest
    model, batch = _net(1), _batch(1)
    s_paper = {n: -s for n, s in grasp_scores(model, NAMES, batch).items()}
    flat = torch.cat([s_paper[n].flatten() for n in NAMES])
    n_remove = round(0.8 * flat.numel())
    threshold = torch.topk(flat, n_remove).values[-1]
    grasp(model, batch, 0.8)
    masks = get_masks(model)
    for n in NAMES:
        assert torch.equal(masks[n], s_paper[n] < threshold), n


def test_snip_under_2_4_keeps_top_two_snip_scores_per_group():
    model, batch = _net(2), _batch(2)
    scores = snip_scores(model, NAMES, batch)
    snip(model, batch, 0.5, pattern="2:4", distribution="uniform")
    pattern = get_pattern("2:4")
    for n, mask in get_masks(model).items():
        assert pattern.is_valid(mask), n
        assert torch.equal(mask, pattern.mask(scores[n], 0.5)), n
        assert int(mask.sum()) * 2 == mask.numel()


def test_synflow_under_2_4_and_90_percent_is_valid_and_exact():
    model = _net(3)
    synflow(model, (1, 8, 8), 0.9, iterations=10, pattern="2:4", distribution="uniform")
    pattern = get_pattern("2:4")
    masks = get_masks(model)
    assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * _total())
    for n, mask in masks.items():
        assert pattern.is_valid(mask), n
        assert abs(int(mask.sum()) - 0.1 * mask.numel()) < 1, n


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
def test_random_per_layer_counts_and_determinism(distribution):
    from sparsetorch.distributions import get as get_distribution

    shapes = {n: _net().get_parameter(n).shape for n in NAMES}
    densities = get_distribution(distribution).densities(shapes, 0.2)
    a = get_masks(random_prune(_net(), 0.8, generator=7, distribution=distribution))
    b = get_masks(
        random_prune(
            _net(), 0.8, generator=torch.Generator().manual_seed(7), distribution=distribution
        )
    )
    c = get_masks(random_prune(_net(), 0.8, generator=8, distribution=distribution))
    assert sum(int(m.sum()) for m in a.values()) == round(0.2 * _total())
    for n in NAMES:
        assert abs(int(a[n].sum()) - densities[n] * a[n].numel()) <= 1, n
        assert torch.equal(a[n], b[n])
    assert any(not torch.equal(a[n], c[n]) for n in NAMES)


def test_same_inputs_same_masks_bitwise():
    for prune in (
        lambda m: snip(m, _batch(4), 0.9),
        lambda m: grasp(m, _batch(4), 0.9),
        lambda m: synflow(m, (1, 8, 8), 0.9, iterations=5),
    ):
        a, b = get_masks(prune(_net(4))), get_masks(prune(_net(4)))
        assert all(torch.equal(a[n], b[n]) for n in NAMES)


def test_exponential_densities_golden():
    assert exponential_densities(0.01, 2) == [pytest.approx(0.1, rel=1e-12), 0.01]
    ds = exponential_densities(0.01, 100)
    assert len(ds) == 100 and ds[-1] == 0.01
    assert ds[49] == pytest.approx(0.1, rel=1e-12)
    assert exponential_densities(0.1, 2, start=0.5) == [pytest.approx(0.5 * 0.2**0.5), 0.1]
    with pytest.raises(ValueError, match="density <= start"):
        exponential_densities(0.6, 3, start=0.5)
    with pytest.raises(ValueError, match="iterations must be an int >= 1"):
        exponential_densities(0.1, 0)


def test_synflow_one_iteration_is_one_shot_topk_and_keeps_weights():
    model = _net(5)
    before = {n: model.get_parameter(n).detach().clone() for n in NAMES}
    scores = synflow_scores(model, NAMES, (1, 8, 8))
    synflow(model, (1, 8, 8), 0.5, iterations=1)
    masks = get_masks(model)
    expected = _naive_global_keep(scores, round(0.5 * _total()))
    for n in NAMES:
        assert torch.equal(masks[n], expected[n])
        # kept weights are bitwise the original ones (signs restored: never changed)
        assert torch.equal(model.get_parameter(n).detach(), before[n] * masks[n])


def _collapse_net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 256),
        nn.ReLU(),
        nn.Linear(256, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def _paths(masks, names):
    """Number of input -> output paths through kept weights (0 = disconnected network)."""
    count = torch.ones(1, masks[names[0]].shape[1], dtype=torch.float64)
    for n in names:
        count = count @ masks[n].double().T
    return count.sum().item()


def test_layer_collapse_snip_yes_synflow_no(seed=0):
    # 99.9% of 33,024 weights = 33 kept. SNIP puts all of them in the last layer (its scores
    # there are far larger) and empties the first two; iterative SynFlow keeps every layer and
    # input->output paths. Counts (seed 0): SNIP {1: 0, 3: 0, 5: 33}, SynFlow {1: 10, 3: 6, 5: 17}.
    from sparsetorch.pruning import compute_masks

    names = ["1.weight", "3.weight", "5.weight"]
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g))
    model = _collapse_net(seed)
    scores = snip_scores(model, names, batch)
    snip_masks = compute_masks(model, 0.999, scores=scores, min_layer_density=0)
    kept_snip = {n: int(m.sum()) for n, m in snip_masks.items()}
    assert min(kept_snip.values()) == 0 and sum(kept_snip.values()) == 33
    # st.prune's default floor keeps every layer alive (a tenth of the density, >= 1 weight)
    with pytest.warns(UserWarning, match=r"kept fewer than min_layer_density"):
        floored = compute_masks(model, 0.999, scores=scores)
    assert min(int(m.sum()) for m in floored.values()) >= 1
    assert sum(int(m.sum()) for m in floored.values()) == 33
    with pytest.raises(ValueError, match=r"would empty layer\(s\) \['1.weight'"):
        snip(model, batch, 0.999)
    assert get_masks(model) == {}  # untouched on error

    synflow_masks = get_masks(synflow(_collapse_net(seed), (1, 8, 8), 0.999))
    kept_synflow = {n: int(m.sum()) for n, m in synflow_masks.items()}
    assert min(kept_synflow.values()) > 0 and sum(kept_synflow.values()) == 33
    assert _paths(synflow_masks, names) > 0 and _paths(snip_masks, names) == 0


def test_uniform_that_empties_a_small_layer_fails_erk_does_not():
    # 452 weights, 98.8% sparse: 5 kept. Uniform gives the 36-weight first conv 0.43 -> 0;
    # ERK gives it 0.92 -> 1 (small layers are denser)
    model = _net(6)
    with pytest.raises(
        ValueError, match=r"\['0\.weight'\].*distribution 'erk', or method 'synflow'"
    ):
        random_prune(model, 0.988, generator=0, distribution="uniform")
    assert get_masks(model) == {}
    masks = get_masks(random_prune(model, 0.988, generator=0, distribution="erk"))
    assert empty_layers(masks) == []


def test_synflow_failure_leaves_model_untouched():
    model = _net(7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"would empty .* distribution 'erk'$"):
        synflow(model, (1, 8, 8), 0.997, iterations=3, distribution="uniform")
    assert get_masks(model) == {}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_bad_inputs():
    bad_batch = (torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))
    model = _net()
    for prune in (snip, grasp):
        with pytest.raises(ValueError, match="does not fit the model"):
            prune(model, bad_batch, 0.9)
    with pytest.raises(ValueError, match="does not fit the model"):
        synflow(model, (3, 8, 8), 0.9, iterations=2)
    assert get_masks(model) == {}
    no_weights = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3))
    x = (torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    for prune in (
        lambda m: snip(m, x, 0.5),
        lambda m: grasp(m, x, 0.5),
        lambda m: synflow(m, (3,), 0.5),
    ):
        with pytest.raises(ValueError, match="no prunable weights"):
            prune(no_weights)
    with pytest.raises(ValueError, match="no prunable parameters"):
        random_prune(no_weights, 0.5, generator=0)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        synflow(model, (1, 8, 8), 1.0)
    with pytest.raises(TypeError, match="generator must be"):
        random_prune(model, 0.5, generator=None)


def test_synflow_needs_its_iterations():
    # one round at 90% empties the middle conv of this net (the AdaptiveAvgPool makes its flow
    # per weight small); 100 rounds keep every layer
    with pytest.raises(ValueError, match=r"synflow: .*\['2\.weight'\]"):
        synflow(_net(0), (1, 8, 8), 0.9, iterations=1)
    kept = {n: int(m.sum()) for n, m in get_masks(synflow(_net(0), (1, 8, 8), 0.9)).items()}
    assert kept == {"0.weight": 9, "2.weight": 14, "6.weight": 22}


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["snip", "grasp", "synflow", "random"])
def test_cuda_masks_match_cpu(method):
    def prune(device):
        model = _net(8).double().to(device)
        x, y = (t.to(device) for t in _batch(8))
        if method == "snip":
            return get_masks(snip(model, (x.double(), y), 0.9))
        if method == "grasp":
            return get_masks(grasp(model, (x.double(), y), 0.9))
        if method == "synflow":
            return get_masks(synflow(model, (1, 8, 8), 0.9, iterations=10))
        return get_masks(random_prune(model, 0.9, generator=3, distribution="erk"))

    cpu, cuda = prune("cpu"), prune("cuda")
    assert sum(int(m.sum()) for m in cuda.values()) == sum(int(m.sum()) for m in cpu.values())
    for n in NAMES:
        # float64 on both; reduction order may differ, so allow a near-tie to flip
        assert cuda[n].is_cuda and (cuda[n].cpu() != cpu[n]).sum() <= 2, n
