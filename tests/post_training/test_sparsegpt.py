import pytest
import torch
from torch import nn

import sparsetorch as st
from sparsetorch.patterns import NM
from sparsetorch.post_training import Magnitude, SparseGPT, Wanda, make_target, sparsegpt
from sparsetorch.post_training.statistics import Hessian, SquaredNorms
from sparsetorch.selection import nearest_count
from tests.post_training.helpers import correlated_inputs, naive_sparsegpt


def _layer(rows, cols, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g, dtype=torch.float64)


def _stats(x):
    h = Hessian(x.shape[1], x.device, torch.float64)
    n = SquaredNorms(x.shape[1], x.device, torch.float64)
    h.add(x)
    n.add(x)
    return h, n


@pytest.mark.parametrize(
    ("sparsity", "pattern", "blocksize", "cols"),
    [
        (0.5, None, 8, 24),  # three blocks: lazy updates between blocks
        (0.7, None, 5, 17),  # a partial last block
        (None, "2:4", 8, 22),  # a partial N:M group at the end of every row
        (None, "4:8", 16, 32),
        (None, "1:4", 4, 12),
    ],
)
def test_sparsegpt_equals_a_naive_obs_loop_in_float64(sparsity, pattern, blocksize, cols):
    w = _layer(6, cols)
    x = correlated_inputs(64, cols)
    h, _ = _stats(x)
    target = make_target(sparsity, pattern)
    new, keep = sparsegpt(w, h.hessian(), target, blocksize=blocksize, dampening=0.01)
    nm = None if pattern is None else tuple(int(v) for v in pattern.split(":"))
    ref_w, ref_keep = naive_sparsegpt(w, h.hessian(), sparsity, nm, blocksize, 0.01)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(new, ref_w, rtol=0, atol=1e-9)
    assert torch.equal(new == 0, ~keep)  # pruned weights exact zeros, kept ones not
    if pattern is not None:
        assert NM(*nm).is_valid(keep)
    else:
        blocks = [keep[:, i : i + blocksize] for i in range(0, cols, blocksize)]
        for b in blocks:  # adaptive selection keeps the share in every block (within one)
            assert abs(int((~b).sum()) - sparsity * b.numel()) < 1
        assert int(keep.sum()) == nearest_count(1 - sparsity, keep.numel())  # the layer exact


def test_dead_inputs_are_zeroed_and_treated_as_in_the_paper():
    w = _layer(4, 8)
    x = correlated_inputs(32, 8)
    x[:, 3] = 0  # input 3 is never active
    h, _ = _stats(x)
    new, keep = sparsegpt(w, h.hessian(), make_target(0.5, None), blocksize=4)
    ref_w, ref_keep = naive_sparsegpt(w, h.hessian(), 0.5, None, 4, 0.01)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(new, ref_w, rtol=0, atol=1e-10)
    assert torch.equal(new[:, 3], torch.zeros(4, dtype=torch.float64))
    assert not keep[:, 3].any()  # zero weights have the lowest saliency


def _error(w, new, x):
    return float(((x @ w.t() - x @ new.t()) ** 2).sum())


@pytest.mark.parametrize(("sparsity", "pattern"), [(0.5, None), (None, "2:4"), (None, "4:8")])
def test_sparsegpt_reconstructs_better_than_wanda_and_magnitude(sparsity, pattern):
    w = _layer(32, 64, seed=3)
    x = correlated_inputs(512, 64, seed=4)
    h, n = _stats(x)
    target = make_target(sparsity, pattern)
    errors = {}
    for method, stats in ((SparseGPT(), h), (Wanda(), n), (Magnitude(), None)):
        new, keep = method.prune(w, stats, target)
        new = (w if new is None else new) * keep
        errors[method.name] = _error(w, new, x)
        assert target.pattern.is_valid(keep)
        assert int(keep.sum()) == 32 * 32  # half of every layer (and of every row / group)
    assert errors["sparsegpt"] < errors["wanda"] < errors["magnitude"], errors


def test_reconstruction_only_updates_weights_to_the_right():
    """Column 0 is processed first: nothing before it can change it."""
    w = _layer(8, 16)
    h, _ = _stats(correlated_inputs(64, 16))
    new, keep = sparsegpt(w, h.hessian(), make_target(0.5, None), blocksize=16)
    assert torch.equal(new[:, 0], torch.where(keep[:, 0], w[:, 0], 0.0))


def test_float32_matches_float64_closely():
    w = _layer(16, 32)
    h, _ = _stats(correlated_inputs(128, 32))
    new64, keep64 = sparsegpt(w, h.hessian(), make_target(None, "2:4"), blocksize=16)
    new32, keep32 = sparsegpt(w.float(), h.hessian().float(), make_target(None, "2:4"), 16)
    assert new32.dtype == torch.float32
    assert (keep32 != keep64).float().mean() < 0.02
    torch.testing.assert_close(new32.double() * keep64 * keep32, new64 * keep64 * keep32,
                               rtol=1e-3, atol=1e-3)  # fmt: skip


def test_sparsity_zero_keeps_everything_and_changes_nothing():
    w = _layer(4, 8)
    h, _ = _stats(correlated_inputs(32, 8))
    new, keep = sparsegpt(w, h.hessian(), make_target(0.0, None), blocksize=4)
    assert keep.all()
    torch.testing.assert_close(new, w, rtol=0, atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="blocksize must be an int >= 1"):
        SparseGPT(blocksize=0)
    with pytest.raises(ValueError, match="dampening must be a finite float >= 0"):
        SparseGPT(dampening=float("nan"))
    with pytest.raises(TypeError, match="dampening must be a float"):
        SparseGPT(dampening="0.1")
    with pytest.raises(ValueError, match=r"blocksize \(6\) must be a multiple of M \(4\)"):
        SparseGPT(blocksize=6).check(make_target(None, "2:4"))
    w = _layer(4, 8)
    x = correlated_inputs(32, 8)
    x[:, 2] = x[:, 1]  # a singular Hessian: without dampening no Cholesky factor
    h, _ = _stats(x)
    with pytest.raises(ValueError, match=r"not positive definite after dampening 0.0"):
        sparsegpt(w, h.hessian(), make_target(0.5, None), dampening=0.0)


@pytest.mark.parametrize(
    ("rows", "cols", "blocksize", "sparsity"),
    [(16, 300, 16, 0.9), (16, 300, 16, 0.3), (64, 130, 32, 0.9), (3, 5, 128, 0.5)],
)
def test_the_layer_keeps_its_whole_count_as_magnitude_does(rows, cols, blocksize, sparsity):
    """Rounded per block, a partial last block missed the layer's count by up to a weight a
    block (487 kept of 4800 at 90%, not 480) and a half rounded the other way from
    magnitude's (7 kept of 15 at 50%, magnitude 8)."""
    w = _layer(rows, cols)
    h, _ = _stats(correlated_inputs(64, cols))
    _, keep = sparsegpt(w, h.hessian(), make_target(sparsity, None), blocksize=blocksize)
    assert int(keep.sum()) == nearest_count(1 - sparsity, rows * cols)


def test_the_hessian_stays_finite_where_the_raw_sum_overflows_float32():
    """Kept as a running mean: 512 tokens of one feature at 1e18 (x² = 1e36 each) sum past
    float32's 3.4e38 in X^T X, while H (about 2e36 there) does not."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    x[:, 3] *= 1e18
    h = Hessian(8, x.device, torch.float32)
    for i in range(0, 512, 64):
        h.add(x[i : i + 64])
    want = 2 * x.double().t() @ x.double() / 512
    assert bool(h.hessian().isfinite().all())
    torch.testing.assert_close(h.hessian().double(), want, rtol=1e-4, atol=1e-4)


def test_hessian_statistics_are_2_xtx_over_tokens():
    x = torch.randn(10, 3, dtype=torch.float64)
    h = Hessian(3, x.device, torch.float64)
    h.add(x[:4])
    h.add(x[4:])
    assert h.tokens == 10
    torch.testing.assert_close(h.hessian(), 2 * x.t() @ x / 10)


def test_a_linear_layer_pruned_by_oneshot_matches_the_naive_loop():
    torch.manual_seed(0)
    layer = nn.Linear(16, 8).double()
    w0 = layer.weight.detach().clone()
    x = correlated_inputs(40, 16)
    st.oneshot(layer, "sparsegpt", [x[:20], x[20:]], sparsity=0.5)  # the layer is one block
    h, _ = _stats(x)
    ref_w, ref_keep = naive_sparsegpt(w0, h.hessian(), 0.5)
    assert torch.equal(layer.weight_sparsity_mask, ref_keep)
    torch.testing.assert_close(layer.weight.detach(), ref_w, rtol=0, atol=1e-9)
