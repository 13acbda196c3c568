"""Patterns: definitions (golden masks), exact nnz, analytic block layouts, algebra, errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsetorch.attention as A
from tests.attention.helpers import block_states, patterns_with_n


def _pairs(mask):
    return {tuple(p) for p in mask.nonzero().tolist()}


# ---- definitions ---------------------------------------------------------------------------
def test_causal_and_local_golden():
    assert torch.equal(A.causal().mask(4), torch.ones(4, 4, dtype=torch.bool).tril())
    i, j = torch.arange(6)[:, None], torch.arange(6)[None]
    assert torch.equal(A.local(2).mask(6), (i - j).abs() <= 2)
    assert A.local(0).mask(3).equal(torch.eye(3, dtype=torch.bool))


def test_strided_is_the_sparse_transformer_second_head():
    # Child et al. 2019: A(2) = {j : (i - j) mod k = 0}
    assert _pairs(A.strided(3).mask(7)) == {
        (i, j) for i in range(7) for j in range(7) if (i - j) % 3 == 0
    }


def test_dilated_keeps_w_keys_per_side_spaced_d_apart():
    row = A.dilated(2, 3).mask(20)[10]
    assert row.nonzero().flatten().tolist() == [4, 7, 10, 13, 16]
    assert torch.equal(A.dilated(5, 1).mask(17), A.local(5).mask(17))


def test_global_tokens_attend_everywhere_and_are_attended_by_all():
    m = A.global_tokens([1, 4]).mask(6)
    for i in range(6):
        for j in range(6):
            assert bool(m[i, j]) == (i in (1, 4) or j in (1, 4))


def test_block_pattern_maps_cells_and_crops_shorter_sequences():
    cells = [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    m = A.block(2, cells).mask(5)
    expected = torch.tensor(cells, dtype=torch.bool).repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(m, expected[:5, :5])


def test_random_draws_r_distinct_keys_per_query_deterministically():
    p = A.random(3, seed=7)
    m = p.mask(50)
    assert (m.sum(1) == 3).all()
    assert torch.equal(m, A.random(3, seed=7).mask(50))  # same seed: same pattern, bitwise
    assert not torch.equal(m, A.random(3, seed=8).mask(50))
    assert (A.random(9, seed=0).mask(5).sum(1) == 5).all()  # r >= n: every key


def test_block_random_attends_to_r_key_blocks_per_query_block():
    m = A.random(2, seed=1, block=4).mask(16)
    cells = m.view(4, 4, 4, 4).any(3).any(1)  # (query block, key block)
    assert (cells.sum(1) == 2).all()
    full = m.view(4, 4, 4, 4).all(3).all(1)
    assert torch.equal(cells, full)  # whole blocks


# ---- exact nnz and block layouts -----------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(patterns_with_n())
def test_nnz_is_exact_for_every_pattern_and_combination(pattern_n):
    pattern, n = pattern_n
    assert pattern.nnz(n) == int(pattern.mask(n).sum())


@settings(max_examples=120, deadline=None)
@given(patterns_with_n(), st.integers(1, 9), st.integers(1, 9))
def test_block_layout_is_exactly_the_masks_block_states(pattern_n, bq, bk):
    pattern, n = pattern_n
    layout = pattern.block_layout(n, (bq, bk))
    assert torch.equal(layout.state, block_states(pattern.mask(n), bq, bk))


def test_nnz_closed_forms_at_lengths_no_dense_mask_could_hold():
    n, w = 10**7, 64
    assert A.local(w).nnz(n) == n * (2 * w + 1) - w * (w + 1)
    assert A.causal().nnz(n) == n * (n + 1) // 2
    assert A.strided(4).nnz(n) == 4 * (n // 4) ** 2  # n divisible by 4
    assert A.global_tokens([0, 5]).nnz(n) == 2 * 2 * n - 4
    assert A.random(3, seed=0).nnz(n) == 3 * n
    assert (A.causal() & A.local(w)).nnz(n) == n * (w + 1) - w * (w + 1) // 2
    for n in (2**31 - 1, 3 * 10**9):  # n * (n + 1) itself overflows int64 here
        assert A.causal().nnz(n) == n * (n + 1) // 2
        assert A.band(None, None).nnz(n) == n * n


def test_composite_nnz_and_layout_at_a_long_length_match_rowwise_counts():
    n = 3000
    pattern = A.causal() & (A.local(40) | A.strided(97)) | A.global_tokens([0, 1500])
    rows = torch.arange(n)
    total = 0
    for start in range(0, n, 500):  # row chunks: never the whole mask at once
        total += int(pattern.fn(n)(rows[start : start + 500, None], rows[None, :]).sum())
    assert pattern.nnz(n) == total
    layout = pattern.block_layout(n, 128)
    assert torch.equal(layout.state, block_states(pattern.mask(n), 128, 128))


def test_local_layout_lists_the_band_of_key_blocks():
    layout = A.local(64).block_layout(1000, 128)
    num, idx = layout.kv_blocks("any")
    assert num.tolist() == [2] + [3] * 6 + [2]
    assert idx[3, :3].tolist() == [2, 3, 4]
    full_num, _ = layout.kv_blocks("full")
    assert full_num.tolist() == [0] * 8  # |i - j| <= 64 never covers a 128 x 128 block
    assert layout.shape == (8, 8)


# ---- algebra -------------------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(patterns_with_n(depth=1), patterns_with_n(depth=1))
def test_operators_act_on_masks(a_n, b_n):
    (a, n), (b, m) = a_n, b_n
    n = min(n, m)
    try:
        ma, mb = a.mask(n), b.mask(n)
    except ValueError:  # a global token or block layout drawn for the longer length
        return
    assert torch.equal((a | b).mask(n), ma | mb)
    assert torch.equal((a & b).mask(n), ma & mb)
    assert torch.equal((~a).mask(n), ~ma)


def test_bands_simplify_and_keep_their_meaning():
    assert A.causal() & A.local(5) == A.band(0, 5)
    assert A.local(2) | A.band(3, 6) == A.band(-2, 6)  # touching bands merge
    assert ~A.causal() == A.band(None, -1)
    assert ~~A.strided(3) == A.strided(3)
    n = 30
    assert torch.equal((A.causal() & A.local(5)).mask(n), A.causal().mask(n) & A.local(5).mask(n))


def test_parse_reads_back_every_repr():
    spec = (
        "causal() & (local(3) | strided(5)) | ~global_tokens([1, 2]) & random(2, seed=3, block=2)"
        " | block(4, [[1, 0], [0, 1]]) | dilated(2, 3) | band(-1, None)"
    )
    pattern = A.parse(spec)
    assert A.parse(repr(pattern)) == pattern
    assert torch.equal(A.parse(repr(pattern)).mask(8), pattern.mask(8))
    assert A.local(3) | A.global_tokens([0]) == A.global_tokens([0]) | A.local(3)
    empty = A.band(1, None) & ~A.causal()  # band(1, -1): no pair, and no local(-1) either
    assert repr(empty) == "band(1, -1)" and A.parse(repr(empty)) == empty
    assert A.parse(repr(A.band(3, -3))) == A.band(3, -3)


def test_describe_states_the_textbook_cost_and_the_exact_count():
    text = (A.local(64) | A.global_tokens([0])).describe(1024)
    assert "O(n(w + g))" in text
    assert f"{(A.local(64) | A.global_tokens([0])).nnz(1024):,}" in text
    assert "O(n²/k)" in A.strided(8).describe(64)
    assert "O(nr)" in A.random(2, seed=0).describe(64)
    assert "O(nw)" in A.local(3).describe(64)


# ---- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: A.local(-1), r"w must be an int in \[0, 2\*\*62\], got -1"),
        (lambda: A.local(2**63), r"w must be an int in \[0, 2\*\*62\]"),  # int64 overflow
        (lambda: A.band(0, -(2**63)), r"hi must be within ±2\*\*62"),
        (lambda: A.strided(0), "stride k must be an int >= 1"),
        (lambda: A.dilated(2, 0), "dilation d must be an int >= 1"),
        (lambda: A.random(0, seed=1), "r must be an int >= 1"),
        (lambda: A.global_tokens([-1]), "indices must be >= 0"),
        (lambda: A.global_tokens([]), "at least one token"),
        (lambda: A.block(0, [[1]]), "size must be an int >= 1"),
        (lambda: A.block(2, [1, 0]), "2-D"),
        (lambda: A.parse("local(2) + causal()"), "cannot parse"),
        (lambda: A.parse("sliding(2)"), "unknown attention pattern 'sliding'"),
        (lambda: A.parse("local()"), r"local\(\.\.\.\): .*missing 1 required"),
        (lambda: A.parse("random(2)"), r"random\(\.\.\.\): .*'seed'"),
        (lambda: A.parse("global_tokens(3)"), r"cannot parse attention pattern 'global_tokens"),
        (lambda: A.parse("band(-None, 3)"), "only an int can be negated"),
    ],
)
def test_bad_arguments_raise_one_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_lengths_a_pattern_does_not_cover_are_rejected():
    with pytest.raises(ValueError, match=r"index 9 is out of range .* n=8"):
        A.global_tokens([9]).nnz(8)
    with pytest.raises(ValueError, match="covers sequences of length <= 4"):
        A.block(2, [[1, 0], [0, 1]]).block_layout(5, 2)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        A.causal().mask(0)
    with pytest.raises(ValueError, match="block must be an int >= 1"):
        A.causal().block_layout(8, 0)
    with pytest.raises(TypeError, match="cannot combine"):
        A.causal() | 3


@pytest.mark.parametrize(
    "spec",
    [
        "~" * 100_000 + "local(4)",  # the parser's own recursion
        " | ".join(["local(4)"] * 3_000),  # a left-nested chain deeper than the recursion limit
    ],
)
def test_expressions_nested_too_deeply_are_one_clear_error(spec):
    with pytest.raises(ValueError, match=r"cannot parse attention pattern .*nested too deeply"):
        A.parse(spec)


def test_a_long_flat_expression_still_parses():
    spec = " | ".join(f"global_tokens([{i}])" for i in range(200))
    assert torch.equal(A.parse(spec).mask(256), A.global_tokens(list(range(200))).mask(256))
