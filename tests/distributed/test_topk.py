"""The sharded exact top-k (radix select over all-reduced histograms) against the one
single-process selector (``sparsetorch.selection``), bitwise: one process holding several
pieces (global order: piece, then index), and ranks simulated by threads exchanging their
histograms and tie counts (global order: piece, rank, index)."""

import itertools
import threading

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsetorch.selection import global_topk_masks, topk_mask
from sparsetorch.sharding.topk import (
    LOCAL,
    Comm,
    ShardSelector,
    sharded_topk,
    sortable_keys,
)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32]


def chunks(x: torch.Tensor, cuts: list[int]) -> list[torch.Tensor]:
    bounds = [0, *sorted(min(c, x.numel()) for c in cuts), x.numel()]
    return [x[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def scores(draw, max_size=40):
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, max_size))
    if dtype.is_floating_point:
        # few distinct values: many ties, signed zeros, infinities
        pool = [-2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0, float("-inf"), 1e-30, -1e30]
        values = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    else:
        lo, hi = (-(2**31), 2**31 - 1) if dtype == torch.int32 else (-(2**63), 2**63 - 1)
        small = st.integers(-2, 2)
        values = draw(st.lists(st.one_of(small, st.integers(lo, hi)), min_size=n, max_size=n))
    return torch.tensor(values, dtype=dtype)


@settings(max_examples=150, deadline=None)
@given(x=scores(), k_frac=st.floats(0, 1), cuts=st.lists(st.integers(0, 40), max_size=4))
def test_pieces_in_order_equal_topk_mask(x, k_frac, cuts):
    k = round(k_frac * x.numel())
    masks = sharded_topk([chunks(x, cuts)], [k])[0]
    assert torch.equal(torch.cat(masks), topk_mask(x, k))


@settings(max_examples=100, deadline=None)
@given(
    xs=st.lists(scores(max_size=15), min_size=1, max_size=4),
    k_frac=st.floats(0, 1),
    cuts=st.lists(st.integers(0, 15), max_size=2),
)
def test_global_over_several_tensors_equals_global_topk_masks(xs, k_frac, cuts):
    named = {f"t{i}": x for i, x in enumerate(xs)}
    k = round(k_frac * sum(x.numel() for x in xs))
    # each tensor split over "ranks"; one process holding all: order = (tensor, rank, index)
    pieces = [piece for x in xs for piece in chunks(x, cuts)]
    masks = sharded_topk([pieces], [k])[0]
    per = len(chunks(xs[0], cuts))
    got = [torch.cat(masks[i * per : (i + 1) * per]) for i in range(len(xs))]
    want = global_topk_masks(named, k)
    for g, (name, w) in zip(got, want.items()):
        assert torch.equal(g, w), name


def test_several_problems_in_one_call_are_independent():
    g = torch.Generator().manual_seed(0)
    xs = [torch.randint(0, 5, (n,), generator=g).float() for n in (7, 0, 12, 30)]
    ks = [3, 0, 12, 11]
    got = sharded_topk([[x[:5], x[5:]] for x in xs], ks)
    for x, k, masks in zip(xs, ks, got):
        assert torch.equal(torch.cat(masks), topk_mask(x, k))


class Ranks:
    """Ranks simulated by threads: each contributes a value, everyone gets all of them."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.barrier = threading.Barrier(n, timeout=30)
        self.slots: list = [None] * n

    def exchange(self, rank: int, value: torch.Tensor) -> list[torch.Tensor]:
        self.slots[rank] = value
        self.barrier.wait()
        out = list(self.slots)
        self.barrier.wait()
        return out

    def run(self, fn):
        """fn(comm) on every rank in parallel; the results in rank order."""
        results: list = [None] * self.n

        def target(rank):
            results[rank] = fn(ThreadComm(self, rank))

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results


class ThreadComm(Comm):
    def __init__(self, ranks: Ranks, rank: int) -> None:
        self.ranks, self.rank, self.world_size = ranks, rank, ranks.n

    def sum(self, values):
        return torch.stack(self.ranks.exchange(self.rank, values)).sum(0)

    def gather(self, values):
        return torch.stack(self.ranks.exchange(self.rank, values))


def rank_rows(x: torch.Tensor, world: int) -> list[torch.Tensor]:
    """torch.chunk row sizes, empty tails included (FSDP2's dim-0 sharding)."""
    parts = list(torch.chunk(x, world)) if x.numel() else []
    return parts + [x[:0]] * (world - len(parts))


@settings(max_examples=40, deadline=None)
@given(x=scores(), k_frac=st.floats(0, 1), world=st.integers(1, 4))
def test_ranks_holding_row_shards_equal_topk_mask(x, k_frac, world):
    k = round(k_frac * x.numel())
    shards = rank_rows(x, world)
    masks = Ranks(world).run(lambda comm: ShardSelector(comm).topk(shards[comm.rank], k))
    assert torch.equal(torch.cat(masks), topk_mask(x, k))


@settings(max_examples=30, deadline=None)
@given(xs=st.lists(scores(max_size=12), min_size=1, max_size=3), k_frac=st.floats(0, 1))
def test_ranks_global_topk_equals_global_topk_masks(xs, k_frac):
    world = 3
    named = {f"t{i}": x for i, x in enumerate(xs)}
    k = round(k_frac * sum(x.numel() for x in xs))

    def on_rank(comm):
        local = {n: rank_rows(x, world)[comm.rank] for n, x in named.items()}
        return ShardSelector(comm).global_topk(local, k)

    per_rank = Ranks(world).run(on_rank)
    want = global_topk_masks(named, k)
    for name in named:
        assert torch.equal(torch.cat([m[name] for m in per_rank]), want[name]), name


def test_ranks_count_and_sum():
    x = torch.arange(10)
    shards = rank_rows(x, 3)
    counts = Ranks(3).run(lambda comm: ShardSelector(comm).count(shards[comm.rank] % 2 == 0))
    assert counts == [5, 5, 5]


def test_sortable_keys_order_and_ties():
    x = torch.tensor([float("-inf"), -1e30, -2.0, -0.0, 0.0, 1e-45, 1.0, 3e38])
    keys = sortable_keys(x)
    assert keys[3] == keys[4]  # -0.0 == +0.0
    assert torch.equal(keys.argsort(stable=True), x.argsort(stable=True))
    wide = sortable_keys(x.double())
    assert torch.equal(wide.argsort(stable=True), x.argsort(stable=True))


def test_selectors_agree_on_the_whole_tensor():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 4, (50,), generator=g).double()
    alone = ShardSelector(Comm())
    assert torch.equal(alone.topk(x, 17), LOCAL.topk(x, 17))
    assert alone.count(x > 1) == LOCAL.count(x > 1) == int((x > 1).sum())
    named = {"a": x[:20], "b": x[20:]}
    assert all(
        torch.equal(alone.global_topk(named, 9)[n], LOCAL.global_topk(named, 9)[n]) for n in named
    )
    assert [m.sum().item() for m in alone.topk_each([x, x[:5]], [4, 5])] == [4, 5]


@pytest.mark.parametrize(
    ("k", "match"), [(-1, r"k must be an int in \[0, 3\]"), (4, r"\[0, 3\]"), (1.5, "int")]
)
def test_bad_k(k, match):
    with pytest.raises(ValueError, match=match):
        sharded_topk([[torch.ones(3)]], [k])


def test_nan_scores_refused():
    with pytest.raises(ValueError, match="NaN"):
        sharded_topk([[torch.tensor([1.0, float("nan")])]], [1])
