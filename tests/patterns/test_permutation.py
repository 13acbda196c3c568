import itertools

import pytest
import torch
from torch import nn

import sparsetorch as sparse
from sparsetorch.patterns import get
from sparsetorch.patterns.permutation import kept_magnitude, permute_channels_, search_permutation


def direct_kept(weight, perm, spec="2:4"):
    w = weight[:, perm].abs().double()
    return float(w[get(spec).mask(w)].sum())


def test_golden_two_groups():
    w = torch.tensor([[9.0, 9.0, 9.0, 9.0, 1.0, 1.0, 1.0, 1.0]])
    assert kept_magnitude(w) == 20.0
    perm = search_permutation(w)
    assert sorted(perm.tolist()) == list(range(8))
    assert kept_magnitude(w[:, perm]) == 36.0  # the optimum: two 9s in each group


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("spec", ["2:4", "1:4", "2:8"])
def test_never_worse_and_a_local_optimum_by_brute_force_swaps(seed, spec):
    g = torch.Generator().manual_seed(seed)
    m = get(spec).m
    w = torch.randn(6, 2 * m, generator=g)
    perm = search_permutation(w, spec)
    found = direct_kept(w, perm, spec)
    assert found >= kept_magnitude(w, spec) - 1e-9
    for i, j in itertools.combinations(range(2 * m), 2):  # no single swap improves
        other = perm.clone()
        other[[i, j]] = other[[j, i]]
        assert direct_kept(w, other, spec) <= found + 1e-9


def test_small_case_reaches_the_brute_force_optimum():
    # 8 channels, 2:4: 35 ways to split into two groups; greedy swaps reach the best here
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 8, generator=g)
    best = max(
        direct_kept(w, torch.tensor(list(a) + [c for c in range(8) if c not in a]))
        for a in itertools.combinations(range(8), 4)
    )
    assert direct_kept(w, search_permutation(w)) == pytest.approx(best, abs=1e-9)


def test_conv_weight_permutes_input_channels():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 16, 3, 3, generator=g)
    perm = search_permutation(w)
    assert kept_magnitude(w[:, perm]) >= kept_magnitude(w)


def test_errors():
    with pytest.raises(ValueError, match="multiple of M=4"):
        search_permutation(torch.randn(3, 6))
    with pytest.raises(ValueError, match="needs an N:M pattern"):
        search_permutation(torch.randn(3, 8), "block2x2")
    with pytest.raises(ValueError, match="permutation of range"):
        permute_channels_(nn.Linear(2, 4), nn.Linear(4, 2), torch.tensor([0, 1, 1, 2]))
    with pytest.raises(ValueError, match="must equal consumer input channels"):
        permute_channels_(nn.Linear(2, 3), nn.Linear(4, 2), torch.arange(4))
    with pytest.raises(ValueError, match="GroupNorm"):
        permute_channels_(
            nn.Conv2d(1, 4, 1), nn.Conv2d(4, 1, 1), torch.arange(4), [nn.GroupNorm(2, 4)]
        )


def test_mlp_function_unchanged_and_kept_magnitude_raised():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(12, 32),
        nn.LayerNorm(32),
        nn.ReLU(),
        nn.Linear(32, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.1, 0.1)
    x = torch.randn(20, 12)
    before = model(x)
    k3, k5 = kept_magnitude(model[3].weight), kept_magnitude(model[5].weight)
    perm3 = search_permutation(model[3].weight)
    permute_channels_(model[0], model[3], perm3, between=[model[1]])
    perm5 = search_permutation(model[5].weight)
    permute_channels_(model[3], model[5], perm5)
    assert torch.allclose(model(x), before, atol=1e-6)
    assert kept_magnitude(model[3].weight) > k3 and kept_magnitude(model[5].weight) > k5


def test_conv_bn_function_unchanged_and_masks_follow():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    model.train()
    model(torch.randn(16, 3, 10, 10))  # non-trivial running statistics
    model.eval()
    sparse.prune(model, 0.5, exclude=["3"])
    mask = model[0].weight_sparsity_mask.clone()
    x = torch.randn(2, 3, 10, 10)
    before = model(x)
    perm = search_permutation(model[3].weight)
    permute_channels_(model[0], model[3], perm, between=[model[1]])
    assert torch.allclose(model(x), before, atol=1e-5)
    assert torch.equal(model[0].weight_sparsity_mask, mask[perm])
    assert bool((model[0].weight[~model[0].weight_sparsity_mask] == 0).all())
