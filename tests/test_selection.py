import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.selection import global_topk_masks, nearest_count, topk_mask


def reference_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Independent implementation: stable sort on (-score, index)."""
    flat = scores.reshape(-1).double().numpy()
    order = np.lexsort((np.arange(flat.size), -flat))  # by score desc, then index asc
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:k]] = True
    return torch.from_numpy(mask).reshape(scores.shape)


def test_golden_ties_lower_index_wins():
    s = torch.tensor([[1.0, 3.0, 2.0], [2.0, 3.0, 0.0]])
    assert topk_mask(s, 0).sum() == 0
    assert topk_mask(s, 1).tolist() == [[False, True, False], [False, False, False]]
    assert topk_mask(s, 3).tolist() == [[False, True, True], [False, True, False]]
    assert topk_mask(s, 4).tolist() == [[False, True, True], [True, True, False]]
    assert topk_mask(s, 6).all()


def test_all_equal_scores_keep_the_first_k():
    mask = topk_mask(torch.zeros(10), 4)
    assert mask.tolist() == [True] * 4 + [False] * 6


def test_neg_inf_is_chosen_last():
    s = torch.tensor([float("-inf"), 0.0, -5.0, float("-inf")])
    assert topk_mask(s, 2).tolist() == [False, True, True, False]
    assert topk_mask(s, 3).tolist() == [True, True, True, False]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_pos_inf_raise(bad):
    s = torch.tensor([1.0, bad, 0.0])
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        topk_mask(s, 1)
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        global_topk_masks({"a": torch.zeros(2), "b": s}, 1)


@pytest.mark.parametrize("k", [-1, 7, 2.0, True, None])
def test_bad_k_raises(k):
    with pytest.raises(ValueError, match=r"k must be an int in \[0, 6\]"):
        topk_mask(torch.zeros(2, 3), k)


def test_bool_and_complex_scores_raise_type_error():
    with pytest.raises(TypeError, match="real"):
        topk_mask(torch.zeros(3, dtype=torch.bool), 1)
    with pytest.raises(TypeError, match="real"):
        topk_mask(torch.zeros(3, dtype=torch.complex64), 1)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        topk_mask([1.0, 2.0], 1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int32])
def test_dtypes(dtype):
    s = torch.tensor([3, 1, 2, 2, 5, 2]).to(dtype)
    assert topk_mask(s, 3).tolist() == [True, False, True, False, True, False]


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    levels=st.integers(1, 5),
    frac=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_matches_sort_reference_with_many_ties(shape, levels, frac, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(0, levels, shape, generator=g).float()  # few distinct values: many ties
    k = round(frac * s.numel())
    mask = topk_mask(s, k)
    assert mask.dtype == torch.bool and mask.shape == s.shape
    assert int(mask.sum()) == k
    assert torch.equal(mask, reference_topk(s, k))


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=4),
    levels=st.integers(1, 4),
    frac=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_global_matches_reference_on_concatenation(sizes, levels, frac, seed):
    g = torch.Generator().manual_seed(seed)
    scores = {
        f"l{i}": torch.randint(0, levels, (n,), generator=g).float() for i, n in enumerate(sizes)
    }
    k = round(frac * sum(sizes))
    masks = global_topk_masks(scores, k)
    assert list(masks) == list(scores)
    expected = reference_topk(torch.cat(list(scores.values())), k)
    assert torch.equal(torch.cat(list(masks.values())), expected)


def test_global_keeps_shapes_and_tensor_order_for_ties():
    scores = {"a": torch.ones(2, 2), "b": torch.ones(3)}
    masks = global_topk_masks(scores, 5)
    assert masks["a"].shape == (2, 2) and masks["a"].all()
    assert masks["b"].tolist() == [True, False, False]


def test_global_matches_torch_prune_global_unstructured():
    # torch.nn.utils.prune.global_unstructured with L1: prunes the amount smallest |w|
    from torch.nn.utils import prune as torch_prune

    torch.manual_seed(1)
    layers = [torch.nn.Linear(20, 30), torch.nn.Linear(30, 10), torch.nn.Conv2d(3, 4, 3)]
    total = sum(m.weight.numel() for m in layers)
    amount = 700
    scores = {str(i): m.weight.detach().abs() for i, m in enumerate(layers)}
    ours = global_topk_masks(scores, total - amount)
    torch_prune.global_unstructured(
        [(m, "weight") for m in layers], pruning_method=torch_prune.L1Unstructured, amount=amount
    )
    for i, m in enumerate(layers):
        assert torch.equal(ours[str(i)], m.weight_mask.bool())  # continuous weights: no ties


def test_more_than_16m_elements_with_ties():
    # torch.quantile refuses > 16M elements; our selector must be exact there
    n = 17_000_000
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 1000, (n,), generator=g, dtype=torch.int16).float()
    k = n // 3
    mask = topk_mask(s, k)
    assert int(mask.sum()) == k
    threshold = s[mask].min()
    assert bool((s[~mask] <= threshold).all())
    ties = (s == threshold).nonzero().flatten()
    kept_ties = mask[ties]
    # ties are taken from the lowest indices: a prefix of the tie positions
    assert kept_ties[: int(kept_ties.sum())].all() and not kept_ties[int(kept_ties.sum()) :].any()
    half = {"a": s[: n // 2], "b": s[n // 2 :]}
    both = global_topk_masks(half, k)
    assert torch.equal(torch.cat([both["a"], both["b"]]), mask)


def test_nearest_count_rounds_half_up_and_clamps():
    assert nearest_count(0.3, 10) == 3
    assert nearest_count(0.25, 10) == 3  # 2.5 -> 3
    assert nearest_count(0.7, 10) == 7
    assert nearest_count(1.0, 7) == 7
    assert nearest_count(0.0, 7) == 0
