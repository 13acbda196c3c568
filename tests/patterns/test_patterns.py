import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.patterns import NM, PATTERNS, Block, Channel, Unstructured, get

W = torch.tensor(
    [
        [0.1, -0.9, 0.5, 0.3, 0.7, 0.2, -0.8, 0.6],
        [0.4, 0.0, -0.2, 0.9, 0.1, 0.3, 0.5, -0.6],
    ]
)


def ints(mask):
    return mask.int().tolist()


def test_registry_names_and_unknown():
    assert isinstance(get("unstructured"), Unstructured)
    assert get("2:4") == NM(2, 4) and get("block4x4") == Block(4, 4)
    assert isinstance(get("channel"), Channel)
    assert get(" Block2x8 ").name == "block2x8"
    with pytest.raises(
        ValueError, match="unknown pattern 'diagonal'; known: channel, unstructured, N:M, blockHxW"
    ):
        get("diagonal")
    with pytest.raises(TypeError):
        get(3)


@pytest.mark.parametrize("spec", ["5:4", "0:4", "0:0"])
def test_bad_nm(spec):
    with pytest.raises(ValueError, match="0 < N <= M"):
        PATTERNS.build(spec)


def test_bad_block():
    with pytest.raises(ValueError, match="positive"):
        PATTERNS.build("block0x4")


def test_golden_unstructured():
    assert ints(get("unstructured").mask(W.abs(), 0.25)) == [
        [0, 1, 0, 0, 1, 0, 1, 0],
        [0, 0, 0, 1, 0, 0, 0, 0],
    ]


def test_golden_2_4():
    p = get("2:4")
    assert p.fixed_density == 0.5
    full = p.mask(W.abs())
    assert ints(full) == [
        [0, 1, 1, 0, 1, 0, 1, 0],
        [1, 0, 0, 1, 0, 0, 1, 1],
    ]
    assert p.is_valid(full)
    # a lower density keeps the best of the 2:4 candidates
    assert ints(p.mask(W.abs(), 0.25)) == [
        [0, 1, 0, 0, 1, 0, 1, 0],
        [0, 0, 0, 1, 0, 0, 0, 0],
    ]


def test_golden_1_4_and_4_8():
    assert ints(get("1:4").mask(W.abs())) == [
        [0, 1, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 1, 0, 0, 0, 1],
    ]
    assert ints(get("4:8").mask(W.abs())) == [
        [0, 1, 0, 0, 1, 0, 1, 1],
        [1, 0, 0, 1, 0, 0, 1, 1],
    ]


def test_nm_ties_go_to_lower_index():
    assert ints(get("2:4").mask(torch.ones(1, 8))) == [[1, 1, 0, 0, 1, 1, 0, 0]]


def test_nm_partial_group_keeps_ceil():
    p = get("2:4")
    row = torch.tensor([[1.0, 2.0, 3.0, 4.0, 9.0, 8.0, 7.0]])  # 4 + partial group of 3
    assert ints(p.mask(row)) == [[0, 0, 1, 1, 1, 1, 0]]  # ceil(2*3/4) = 2
    assert p.max_units(row.shape) == 4
    one = torch.tensor([[5.0, 1.0, 2.0, 3.0, 4.0]])  # partial group of 1: ceil(0.5) = 1
    assert ints(p.mask(one)) == [[1, 0, 0, 1, 1]]
    assert ints(get("1:4").mask(torch.tensor([[1.0, 2.0, 3.0, 4.0, 6.0, 5.0]]))) == [
        [0, 0, 0, 1, 1, 0]
    ]  # ceil(1*2/4) = 1
    assert p.is_valid(torch.tensor([[True, True, False, False, True, True, False]]))
    assert not p.is_valid(torch.tensor([[True, True, False, False, True, True, True]]))


def test_nm_conv_groups_run_over_input_channels():
    # conv weight (out=1, in=4, kh=1, kw=2): groups are the 4 input channels at each position
    w = torch.tensor([[[[1.0, 8.0]], [[2.0, 7.0]], [[3.0, 6.0]], [[4.0, 5.0]]]])
    mask = get("2:4").mask(w)
    assert mask[0, :, 0, 0].tolist() == [False, False, True, True]
    assert mask[0, :, 0, 1].tolist() == [True, True, False, False]
    assert get("2:4").is_valid(mask)
    # all 4 channels at one position: 2 per group in memory order, but not 2:4 over channels
    one_position = torch.zeros_like(mask)
    one_position[0, :, 0, 0] = True
    assert one_position.reshape(2, 4).sum(1).tolist() == [2, 2]
    assert not get("2:4").is_valid(one_position)


def test_golden_block():
    p = get("block1x4")
    # block sums of |W|: [1.8, 2.3], [1.5, 1.5]
    assert ints(p.mask(W.abs(), 0.5)) == [
        [1, 1, 1, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ]
    assert ints(p.mask(W.abs(), 0.75)) == [
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0, 0, 0],
    ]  # tie 1.5 vs 1.5: the lower index wins
    b22 = get("block2x2").mask(W.abs(), 0.25)  # block sums 1.4, 1.9, 1.3, 2.4
    assert ints(b22) == [[0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 1, 1]]


def test_block_must_divide():
    with pytest.raises(
        ValueError, match=r"block size 4x4 does not divide the weight of shape \(2, 8\)"
    ):
        get("block4x4").mask(W.abs(), 0.5)
    assert not get("block4x4").is_valid(torch.ones(2, 8, dtype=torch.bool))


def test_golden_channel():
    p = get("channel")
    conv = torch.arange(3 * 2 * 2, dtype=torch.float32).reshape(3, 2, 2) * torch.tensor(
        [1.0, -1.0, 0.5]
    ).reshape(3, 1, 1)
    # channel sums of |w|: 6, 22, 19 -> keep channel 1 at density 1/3
    mask = p.mask(conv.abs(), 1 / 3)
    assert mask[1].all() and not mask[0].any() and not mask[2].any()
    assert p.is_valid(mask)
    bad = mask.clone()
    bad[0, 0, 0] = True
    assert not p.is_valid(bad)


def test_density_above_pattern_max_raises():
    with pytest.raises(ValueError, match=r"at most 0\.5"):
        get("2:4").mask(W.abs(), 0.75)
    with pytest.raises(ValueError, match="no fixed density"):
        get("unstructured").mask(W.abs())
    with pytest.raises(ValueError, match=r"density must be in \[0, 1\]"):
        get("unstructured").mask(W.abs(), 1.5)


def test_nan_scores_raise():
    for spec in ["unstructured", "2:4", "block1x2", "channel"]:
        with pytest.raises(ValueError, match="NaN"):
            get(spec).mask(torch.tensor([[1.0, float("nan"), 0.0, 1.0]]), 0.5)


def test_fill_grows_back_within_groups():
    p = get("2:4")
    mask = torch.tensor([[True, False, False, False, True, True, False, False]])
    grow = torch.tensor([[0.0, 1.0, 3.0, 2.0, 9.0, 9.0, 9.0, 9.0]])
    assert ints(p.fill(mask, grow)) == [[1, 0, 1, 0, 1, 1, 0, 0]]
    with pytest.raises(ValueError, match="not a valid 2:4"):
        p.fill(torch.ones(1, 8, dtype=torch.bool), grow)


def brute_force_best(scores: torch.Tensor, k: int, pattern) -> float:
    flat = scores.reshape(-1)
    best = -math.inf
    for idx in itertools.combinations(range(flat.numel()), k):
        mask = torch.zeros(flat.numel(), dtype=torch.bool)
        mask[list(idx)] = True
        mask = mask.reshape(scores.shape)
        if pattern.is_valid(mask):
            best = max(best, float(scores[mask].sum()))
    return best


@settings(max_examples=40, deadline=None)
@given(
    spec=st.sampled_from(
        ["unstructured", "2:4", "1:4", "1:2", "3:4", "block1x2", "block2x1", "channel"]
    ),
    cols=st.sampled_from([2, 4, 6]),
    density=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_mask_is_optimal_against_brute_force(spec, cols, density, seed):
    p = get(spec)
    shape = (2, cols)
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 5, shape, generator=g).float()
    density = min(density, p.max_density(shape))
    mask = p.mask(scores, density)
    k = int(mask.sum())
    assert p.is_valid(mask)
    assert float(scores[mask].sum()) == brute_force_best(scores, k, p)


SPECS = ["unstructured", "2:4", "1:4", "4:8", "1:3", "block2x2", "block1x4", "channel"]


@settings(max_examples=150, deadline=None)
@given(
    spec=st.sampled_from(SPECS),
    shape=st.sampled_from(
        [(8,), (4, 8), (6, 12), (8, 7), (4, 4, 3, 3), (8, 6, 5), (4, 2, 2, 2, 2)]
    ),
    density=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_sweep_exact_counts_and_validity(spec, shape, density, seed):
    p = get(spec)
    try:
        p.check(shape)
    except ValueError:
        return  # block sizes that do not divide: covered by test_block_must_divide
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(shape, generator=g)
    density = min(density, p.max_density(shape))
    mask = p.mask(scores, density)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    assert p.is_valid(mask)
    unit = p.unit_size(shape)
    expected_units = min(p.max_units(shape), round(density * p.num_units(shape) + 1e-9))
    assert int(mask.sum()) == expected_units * unit
    if p.fixed_density is not None:
        full = p.mask(scores)
        assert int(full.sum()) == p.max_units(shape) and p.is_valid(full)
        assert bool((mask <= full).all())  # lower densities keep a subset of the full mask


@settings(max_examples=80, deadline=None)
@given(
    n_m=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (2, 8), (4, 8)]),
    rows=st.integers(1, 5),
    cols=st.integers(1, 19),
    seed=st.integers(0, 2**16),
)
def test_nm_full_mask_counts_per_group(n_m, rows, cols, seed):
    n, m = n_m
    p = NM(n, m)
    scores = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    mask = p.mask(scores)
    counts, partial = p.group_counts(mask)
    assert bool((counts == n).all())
    rest = cols % m
    if rest:
        assert bool((partial == math.ceil(n * rest / m)).all())
    else:
        assert partial is None
    # each group keeps its n highest scores
    full = cols // m * m
    if full:
        g = scores[:, :full].reshape(rows, -1, m)
        kept = torch.where(mask[:, :full].reshape(rows, -1, m), g, torch.inf).amin(-1)
        dropped = torch.where(mask[:, :full].reshape(rows, -1, m), -torch.inf, g).amax(-1)
        assert bool((kept >= dropped).all())
