"""RigL: every update equals a naive reference, counts are kept, new connections start at
zero with zero optimizer moments, the cosine schedule, determinism, resume, N:M, bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import sparsetorch as st
from sparsetorch.algorithms.during.topology import nm_group_ids
from sparsetorch.distributions import get as get_distribution
from sparsetorch.experiments.run_state import load_into
from sparsetorch.patterns import get as get_pattern
from tests.algorithms.during.helpers import (
    batch,
    fill_state,
    grads,
    make_optimizer,
    naive_drop_grow,
    state_tensors,
    tiny_mlp,
    train,
    weights,
)


def rigl(kind="momentum", seed=0, model_seed=0, **kw):
    model = tiny_mlp(model_seed)
    kw.setdefault("sparsity", 0.8)
    kw.setdefault("total_steps", 40)
    kw.setdefault("delta_t", 4)
    return st.RigL(model, make_optimizer(kind, model), seed=seed, **kw)


def test_every_update_equals_the_naive_reference_on_the_dense_gradient():
    algo = rigl(sparsity=0.7)
    seen = []

    def capture(t):
        if algo.is_update_step(t):
            masks, w, g = algo.masks(), weights(algo), grads(algo)
            # param.grad is the dense gradient: nonzero at pruned positions too
            assert all((g[n][~masks[n]] != 0).any() for n in g)
            seen.append((t, masks, w, g))

    def check(t):
        if seen and seen[-1][0] == t:
            _, masks, w, g = seen[-1]
            fraction = 0.3 / 2 * (1 + math.cos(math.pi * t / 30))
            for name, new in algo.masks().items():
                expected = naive_drop_grow(masks[name], w[name].abs(), g[name].abs(), fraction)
                assert torch.equal(new, expected), (t, name)

    train(algo, 40, before_step=capture, after_step=check)
    assert [t for t, *_ in seen] == [4, 8, 12, 16, 20, 24, 28]  # 0 < t < T_end = 30


@pytest.mark.parametrize("kind", ["momentum", "adam", "adamw"])
def test_counts_kept_and_new_connections_start_at_zero_with_zero_moments(kind):
    algo = rigl(kind)
    before = {}
    grown_total = 0

    def stale(t):
        if algo.is_update_step(t):
            fill_state(algo, 1.0)  # stale moments everywhere: only RigL may zero them
            before.update(algo.masks())

    def check(t):
        nonlocal grown_total
        if not algo.is_update_step(t):
            return
        for name, new in algo.masks().items():
            old = before[name]
            assert int(new.sum()) == int(old.sum())  # per-layer nnz unchanged
            grown = new & ~old
            grown_total += int(grown.sum())
            param = dict(algo.model.named_parameters())[name]
            assert (param[grown] == 0).all()
            for value in state_tensors(algo, name):
                assert (value[grown] == 0).all()
                assert (value[old & ~new] == 0).all()  # dropped: zeroed too
                assert (value[new & old] == 1).all()  # kept connections keep their moments

    train(algo, 40, before_step=stale, after_step=check)
    assert grown_total > 0


def test_naive_drop_bug_cannot_happen_on_a_very_sparse_model():
    # 95% of the weights are pruned zeros; a naive top-k of -(|w| * mask) would pick
    # those and drop nothing active. Here the first update (t = 4) must replace active ones.
    algo = rigl(sparsity=0.95)
    before = algo.masks()
    train(algo, 5)
    dropped = {n: before[n] & ~m for n, m in algo.masks().items()}
    assert sum(int(d.sum()) for d in dropped.values()) > 0
    assert algo.history[0]["dropped"] == sum(int(d.sum()) for d in dropped.values())


def test_update_iteration_replaces_the_optimizer_step():
    algo = rigl()
    snapshot = {}

    def keep(t):
        snapshot.update(w=weights(algo), m=algo.masks())

    def check(t):
        w, m = weights(algo), algo.masks()
        moved = any(
            not torch.equal(
                w[n][m[n] & snapshot["m"][n]], snapshot["w"][n][m[n] & snapshot["m"][n]]
            )
            for n in w
        )
        assert moved != algo.is_update_step(t), t

    train(algo, 12, before_step=keep, after_step=check)


def test_alpha_zero_never_changes_the_mask():
    algo = rigl(alpha=0.0)
    start = algo.masks()
    train(algo, 40)
    assert all(torch.equal(start[n], m) for n, m in algo.masks().items())
    assert algo.history == []


def test_cosine_drop_fraction_values():
    algo = rigl(total_steps=1000, delta_t=100, alpha=0.3)  # T_end = 750
    assert algo.t_end == 750
    for t in range(0, 1000, 50):
        expected = 0.15 * (1 + math.cos(math.pi * t / 750)) if 0 < t < 750 and t % 100 == 0 else 0
        assert algo.drop_fraction(t) == pytest.approx(expected, abs=1e-15)
    assert algo.drop_fraction(100) == pytest.approx(0.15 * (1 + math.cos(math.pi / 7.5)))
    assert algo.drop_fraction(700) == pytest.approx(0.15 * (1 + math.cos(math.pi * 700 / 750)))


def test_history_logs_fraction_changed_density_and_overlap():
    algo = rigl()
    train(algo, 40)
    assert [h["step"] for h in algo.history] == [4, 8, 12, 16, 20, 24, 28]
    first = algo.history[0]
    nnz = sum(int(m.sum()) for m in algo.masks().values())
    assert first["changed"] == pytest.approx(first["grown"] / nnz)
    assert first["grown"] == first["dropped"]
    assert first["overlap_prev"] == pytest.approx((nnz - first["grown"]) / (nnz + first["grown"]))
    for h in algo.history:
        assert h["density"] == {n: int(m.sum()) / m.numel() for n, m in algo.initial_masks.items()}
    logs = algo.logs()
    assert logs["rigl/step"] == 28 and "rigl/density/0.weight" in logs


def test_same_seed_same_run_bitwise_and_other_seed_differs():
    a, b, c = rigl(seed=5), rigl(seed=5), rigl(seed=6)
    assert not all(torch.equal(a.masks()[n], c.masks()[n]) for n in a.masks())
    train(a, 40)
    train(b, 40)
    for n in a.masks():
        assert torch.equal(a.masks()[n], b.masks()[n])
    assert all(torch.equal(weights(a)[n], weights(b)[n]) for n in weights(a))


def test_resume_from_state_equals_uninterrupted():
    full = rigl("adam")
    train(full, 30)

    first = rigl("adam")
    train(first, 14)
    model_state = {k: v.clone() for k, v in first.model.state_dict().items()}
    optim_state = first.optimizer.state_dict()
    algo_state = first.state_dict()

    model = tiny_mlp(1)  # different init: everything must come from the checkpoint
    load_into(model, model_state)
    optimizer = make_optimizer("adam", model)
    optimizer.load_state_dict(optim_state)
    resumed = st.RigL(model, optimizer, sparsity=0.8, total_steps=40, delta_t=4, seed=0)
    resumed.load_state_dict(algo_state)
    train(resumed, 16)
    assert resumed.t == full.t == 30
    for n, m in full.masks().items():
        assert torch.equal(m, resumed.masks()[n])
        assert torch.equal(weights(full)[n], weights(resumed)[n])
    assert resumed.history == full.history


@pytest.mark.parametrize(("pattern", "sparsity"), [("2:4", 0.5), ("2:4", 0.75), ("1:4", 0.8)])
def test_nm_pattern_stays_valid_and_every_group_keeps_its_count(pattern, sparsity):
    p = get_pattern(pattern)
    algo = rigl(pattern=pattern, sparsity=sparsity, distribution="uniform")
    start = algo.masks()

    def groups(mask):  # Linear weights (out, in), in % 4 == 0: groups of 4 along in
        return mask.reshape(-1, 4).sum(1)

    train(algo, 40)
    assert algo.history and sum(h["grown"] for h in algo.history) > 0
    for n, m in algo.masks().items():
        assert p.is_valid(m)
        assert torch.equal(groups(m), groups(start[n]))
    assert not all(torch.equal(start[n], m) for n, m in algo.masks().items())


def test_erk_is_the_default_distribution():
    algo = rigl(sparsity=0.8)
    shapes = {f: m._parameters[n].shape for f, m, n in algo.targets}
    expected = get_distribution("erk").densities(shapes, 0.2)
    for name, mask in algo.masks().items():
        assert int(mask.sum()) / mask.numel() == pytest.approx(
            expected[name], abs=1.5 / mask.numel()
        )


def test_existing_masks_are_the_starting_topology():
    """Kept as they are, and named in a warning (at the caller's line) when they are not at
    the sparsity asked for: drop-and-grow keeps their counts."""
    model = tiny_mlp()
    st.prune(model, sparsity=0.5, distribution="uniform")
    start = {n: m.clone() for n, m in st.masks(model).items()}
    with pytest.warns(
        UserWarning, match="masks are at sparsity 0.5000, not the sparsity 0.9"
    ) as rec:
        algo = st.RigL(model, make_optimizer("momentum", model), sparsity=0.9, total_steps=10)
    assert [r.filename for r in rec] == [__file__]
    assert all(torch.equal(start[n], m) for n, m in algo.masks().items())
    model = tiny_mlp()
    st.prune(model, sparsity=0.9, distribution="erk")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # at the sparsity asked for: nothing to say
        st.RigL(model, make_optimizer("momentum", model), sparsity=0.9, total_steps=10)


def test_bad_input():
    model = tiny_mlp()
    opt = make_optimizer("momentum", model)
    for kwargs, match in [
        (dict(delta_t=0), "delta_t"),
        (dict(delta_t=-5), "delta_t"),
        (dict(alpha=-0.1), "alpha"),
        (dict(alpha=1.5), "alpha"),
        (dict(t_end=41), "t_end"),
        (dict(t_end=0), "t_end"),
        (dict(sparsity=1.0), "sparsity"),
        (dict(total_steps=0), "total_steps"),
    ]:
        kwargs.setdefault("total_steps", 40)
        with pytest.raises(ValueError, match=match):
            st.RigL(model, opt, **kwargs)
    assert st.masks(model) == {}  # nothing attached by a failed call
    other = make_optimizer("momentum", tiny_mlp(1))
    with pytest.raises(ValueError, match="optimizer does not own"):
        st.RigL(model, other, total_steps=40)
    with pytest.raises(TypeError, match="optimizer"):
        st.RigL(model, "sgd", total_steps=40)
    with pytest.raises(ValueError, match="seed or generator"):
        st.RigL(model, opt, total_steps=40, seed=1, generator=torch.Generator())
    algo = st.RigL(model, opt, total_steps=40, delta_t=1)
    with pytest.raises(RuntimeError, match=r"after loss\.backward"):
        algo.t = 1
        algo.step()


@pytest.mark.gpu
@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_rigl_on_cuda_equals_the_reference(pattern):
    model = tiny_mlp().cuda()
    algo = st.RigL(
        model, make_optimizer("adam", model), sparsity=0.75, total_steps=20, delta_t=4,
        pattern=pattern, distribution="uniform",
    )  # fmt: skip
    checked = 0
    for t in range(20):
        x, y = (v.cuda() for v in batch(t))
        algo.optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        update = algo.is_update_step(t)
        if update:
            masks = {n: m.cpu() for n, m in algo.masks().items()}
            w = {n: v.cpu() for n, v in weights(algo).items()}
            g = {n: v.cpu() for n, v in grads(algo).items()}
        algo.step()
        if update:
            fraction = algo.history[-1]["drop_fraction"]
            for name, new in algo.masks().items():
                group = None
                if pattern == "2:4":
                    group = nm_group_ids(get_pattern(pattern), new.shape)
                expected = naive_drop_grow(
                    masks[name], w[name].abs(), g[name].abs(), fraction, group
                )
                assert new.is_cuda and torch.equal(new.cpu(), expected)
            checked += 1
    assert checked == 3  # t = 4, 8, 12 (T_end = 15)


class _Bag(torch.nn.Module):
    """Token embeddings (optionally with sparse gradients) averaged, then a classifier."""

    def __init__(self, sparse: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(64, 16, sparse=sparse, dtype=torch.float64)
        self.fc = torch.nn.Linear(16, 10, dtype=torch.float64)

    def forward(self, x):
        return self.fc(self.emb(x).mean(1))


def test_sparse_embedding_gradients_grow_as_their_dense_twin():
    runs = []
    for sparse in (True, False):
        model = _Bag(sparse)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        algo = st.RigL(model, opt, sparsity=0.8, total_steps=12, delta_t=2, seed=0)
        g = torch.Generator().manual_seed(1)
        for _ in range(12):
            x, y = (
                torch.randint(0, 64, (4, 6), generator=g),
                torch.randint(0, 10, (4,), generator=g),
            )
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            assert model.emb.weight.grad.is_sparse == sparse
            algo.step()
        runs.append(algo.masks())
    assert len(algo.history) == 4  # updates at t = 2, 4, 6, 8 (t_end 9)
    for name in runs[1]:
        assert torch.equal(runs[0][name], runs[1][name]), name
