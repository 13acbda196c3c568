"""Non-finite keys and values stay where the pattern lets them: a query row allowed to attend a
position whose key or value holds NaN or ±inf outputs NaN (the whole row); every other row is
exactly what it is with that position holding finite values. Every backend agrees (so "auto"
does not change behaviour with the length), checked against an independent float64 masked
attention."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsetorch.attention as A
from sparsetorch.attention import sparse_attention
from tests.attention.helpers import naive_attention

CPU_BACKENDS = ["dense", "reference", "flex"]
PATTERNS = {
    "window": A.causal() & A.local(2),
    "window + global": A.local(3) | A.global_tokens([0]),
    "strided": A.strided(4),
}


def _inputs(n, seed=0, shape=(2, 2), head_dim=8):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, n, head_dim, generator=g) for _ in range(3)]


def _poison(k, v, where, what, value):
    """Copies of k and v with ``value`` at position ``where`` = (b, h, j) of ``what``."""
    k, v = k.clone(), v.clone()
    (k if what == "k" else v)[where][3] = value
    return k, v


def _check(out, clean, seeing):
    """Rows that see the position: all NaN. Others: bitwise the clean run's."""
    assert bool(out[seeing].isnan().all())
    assert torch.equal(out[~seeing], clean[~seeing])


CASES = [
    (backend, name, what, value)
    for backend in ("dense", "reference")
    for name in ("window", "window + global")
    for what, value in (
        ("k", float("nan")),
        ("v", float("nan")),
        ("k", float("inf")),
        ("v", float("-inf")),
    )
] + [("flex", "window", "v", float("nan"))]  # flex compiles per pattern on the CPU: one case


@pytest.mark.parametrize(("backend", "name", "what", "value"), CASES)
def test_a_non_finite_entry_reaches_only_the_rows_allowed_to_see_it(backend, name, what, value):
    pattern, n = PATTERNS[name], 150  # 150: partial blocks for both block sizes (64, 128)
    q, k, v = _inputs(n)
    where = (1, 0, 70)  # batch 1, head 0, key position 70
    bad_k, bad_v = _poison(k, v, where, what, value)
    clean_k, clean_v = _poison(k, v, where, what, 0.5)
    out = sparse_attention(q, bad_k, bad_v, pattern, backend=backend)
    clean = sparse_attention(q, clean_k, clean_v, pattern, backend=backend)
    seeing = torch.zeros(q.shape[:3], dtype=torch.bool)
    seeing[1, 0] = pattern.mask(n)[:, 70]
    assert 0 < int(seeing.sum()) < n
    _check(out, clean, seeing)
    expected = naive_attention(q, clean_k, clean_v, pattern.mask(n), 8**-0.5)
    torch.testing.assert_close(out[~seeing].double(), expected[~seeing], atol=1e-5, rtol=0)


def test_every_backend_marks_the_same_rows_for_several_positions():
    torch.manual_seed(0)
    n = 150
    q, k, v = _inputs(n, seed=1)
    k, v = k.clone(), v.clone()
    k[0, 1, 5, 0] = float("nan")
    v[1, 0, 140, 7] = float("inf")
    v[1, 1, 0, 2] = float("-inf")
    outs = {b: sparse_attention(q, k, v, PATTERNS["window"], backend=b) for b in CPU_BACKENDS}
    mask = PATTERNS["window"].mask(n)
    seeing = torch.zeros(q.shape[:3], dtype=torch.bool)
    seeing[0, 1] |= mask[:, 5]
    seeing[1, 0] |= mask[:, 140]
    seeing[1, 1] |= mask[:, 0]
    for name, out in outs.items():
        assert torch.equal(out.isnan().all(-1), seeing), name
    torch.testing.assert_close(outs["flex"], outs["dense"], atol=1e-5, rtol=0, equal_nan=True)
    torch.testing.assert_close(outs["reference"], outs["dense"], atol=1e-5, rtol=0, equal_nan=True)


@pytest.mark.parametrize("backend", ["dense", "reference"])
@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_gradients_of_the_unaffected_rows_are_those_of_the_clean_run(backend, name):
    pattern, n = PATTERNS[name], 70
    q, k, v = _inputs(n, seed=2)
    where = (0, 1, 33)
    seeing = torch.zeros(q.shape[:3], dtype=torch.bool)
    seeing[0, 1] = pattern.mask(n)[:, 33]
    grads = []
    for value in (float("nan"), 0.5):
        bad_k, bad_v = _poison(k, v, where, "v", value)
        leaves = [t.clone().requires_grad_() for t in (q, bad_k, bad_v)]
        out = sparse_attention(*leaves, pattern, backend=backend)
        out[~seeing].sum().backward()
        grads.append([t.grad for t in leaves])
    for bad, clean in zip(*grads):
        assert bool(bad.isfinite().all())
        torch.testing.assert_close(bad, clean, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", ["dense", "reference", "flex"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_query_in_a_row_without_keys_changes_no_gradient(backend, value):
    """Such a row outputs zeros and passes no gradient: a NaN or inf in its query (rows 0
    and 1 of band(2, None) see no key) gives every gradient of the clean run, finite (it
    had reached every key's gradient through a zero times NaN)."""
    pattern, n = A.band(2, None), 40
    q, k, v = _inputs(n, seed=3)
    grads = []
    for fill in (value, 0.25):
        bad_q = q.clone()
        bad_q[0, 1, 1, 0] = fill
        leaves = [t.clone().requires_grad_() for t in (bad_q, k, v)]
        out = sparse_attention(*leaves, pattern, backend=backend)
        assert bool(out.isfinite().all()) and not bool(out[:, :, :2].any())
        out.square().sum().backward()
        grads.append([t.grad for t in leaves])
    for bad, clean in zip(*grads):
        assert bool(bad.isfinite().all())
        torch.testing.assert_close(bad, clean, atol=1e-6, rtol=0)


def test_auto_agrees_at_every_length():
    """auto runs dense below its switch length and a sparse backend above it."""
    pattern = A.local(16)
    for n in (64, 2048 + 64):
        q, k, v = _inputs(n, shape=(1, 1))
        k[0, 0, n // 2, 0] = float("nan")
        out = sparse_attention(q, k, v, pattern, backend="auto")
        assert torch.equal(out[0, 0].isnan().all(-1), pattern.mask(n)[:, n // 2]), n


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -float("inf"), True, "0.5"])
def test_scale_must_be_a_finite_number(scale):
    q, k, v = _inputs(16, shape=(1, 1))
    error = TypeError if isinstance(scale, bool | str) else ValueError
    with pytest.raises(error, match="scale must be a finite number"):
        sparse_attention(q, k, v, "local(2)", backend="dense", scale=scale)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["dense", "reference", "flex"])
@pytest.mark.parametrize("name", ["window", "window + global"])
@pytest.mark.parametrize(("what", "value"), [("k", float("nan")), ("v", float("inf"))])
def test_cuda_backends_contain_non_finite_entries(backend, name, what, value):
    """On CUDA the flex backend contains them inside its compiled call (a window builds its
    lists in the graph there); its compiled backward runs too."""
    # (head dim 16: the smallest FlexAttention compiles on CUDA)
    q, k, v = (t.cuda() for t in _inputs(1024 + 70, head_dim=16))
    _check_on_cuda(PATTERNS[name], backend, q, k, v, what, value, atol=(1e-5, 1e-4))


def _check_on_cuda(pattern, backend, q, k, v, what, value, atol):
    """Position 700 of batch 1, head 0 made bad: NaN rows where the pattern reaches it, the
    other rows and every gradient as in the clean run (within ``atol`` = (outputs, grads))."""
    n = q.shape[2]
    bad_k, bad_v = _poison(k, v, (1, 0, 700), what, value)
    clean_k, clean_v = _poison(k, v, (1, 0, 700), what, 0.5)
    seeing = torch.zeros(q.shape[:3], dtype=torch.bool, device="cuda")
    seeing[1, 0] = pattern.mask(n, "cuda")[:, 700]
    grads = []
    for inputs in ((q, bad_k, bad_v), (q, clean_k, clean_v)):
        leaves = [t.clone().requires_grad_() for t in inputs]
        out = sparse_attention(*leaves, pattern, backend=backend)
        out[~seeing].float().sum().backward()
        grads.append((out.detach(), [t.grad for t in leaves]))
    (out, bad_grads), (clean, clean_grads) = grads
    assert bool(out[seeing].isnan().all())
    torch.testing.assert_close(out[~seeing], clean[~seeing], atol=atol[0], rtol=0)
    for bad, good in zip(bad_grads, clean_grads):
        assert bool(bad.isfinite().all())
        torch.testing.assert_close(bad, good, atol=atol[1], rtol=0)


def test_the_cuda_flex_containment_run_eagerly_on_the_cpu():
    """The CUDA path of the flex backend (score bias, rows marked by their log-sum-exp) is
    plain torch around FlexAttention: its forward runs with eager FlexAttention on the CPU."""
    import warnings

    from torch.nn.attention.flex_attention import flex_attention

    from sparsetorch.attention.backends import flex, nonfinite

    pattern, n = PATTERNS["window + global"], 150
    q, k, v = _inputs(n, seed=3)
    bad_k, bad_v = _poison(k, v, (0, 1, 40), "k", float("nan"))
    bad_v[1, 0, 90, 0] = float("inf")
    seeing = torch.zeros(q.shape[:3], dtype=torch.bool)
    seeing[0, 1] = pattern.mask(n)[:, 40]
    seeing[1, 0] = pattern.mask(n)[:, 90]
    mask = flex.block_mask(pattern, n, q.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile()"
        out = nonfinite.flex_by_log_sum_exp(flex_attention, q, bad_k, bad_v, mask, 8**-0.5)
    assert torch.equal(out.isnan().all(-1), seeing)
    dense = sparse_attention(q, bad_k, bad_v, pattern, backend="dense")
    torch.testing.assert_close(out, dense, atol=1e-5, rtol=0, equal_nan=True)
    # (FlexAttention has no backward on the CPU: the gradients are the GPU test's)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    lo=st.integers(-45, 45),
    width=st.integers(0, 50),
    group=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_band_rows_by_prefix_sums_equal_the_dense_mask_product(n, lo, width, group, seed):
    """The band kernel's containment marks exactly the rows a dense band mask marks."""
    from sparsetorch.attention.backends.nonfinite import band_rows_seeing, rows_seeing
    from sparsetorch.kernels.band_attention import clip_band

    bad = torch.rand(2, 2, n, generator=torch.Generator().manual_seed(seed)) < 0.1
    lo, hi = clip_band(lo, lo + width, n)
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    mask = (i - j >= lo) & (i - j <= hi)
    expected = rows_seeing(mask, bad).repeat_interleave(group, dim=1)
    assert torch.equal(band_rows_seeing(bad, lo, hi, 2 * group), expected)
    assert band_rows_seeing(None, lo, hi, 2) is None


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["window", "causal window"])
@pytest.mark.parametrize(("what", "value"), [("k", float("nan")), ("v", float("inf"))])
def test_cuda_band_kernel_contains_non_finite_entries(name, what, value):
    """The band kernel agrees with the other backends: NaN rows exactly where the band reaches
    the bad position, the other rows (and gradients) those of the clean run."""
    pattern = {"window": A.local(64), "causal window": A.causal() & A.local(64)}[name]
    q, k, v = (t.cuda().half() for t in _inputs(1024 + 70, shape=(2, 4), head_dim=16))
    _check_on_cuda(pattern, "band", q, k, v, what, value, atol=(2e-3, 2e-2))


def test_containment_compiles_without_a_graph_break_on_the_cpu():
    """Eagerly the CPU reads a flag to skip the cleaning of finite inputs; under torch.compile
    that read would break the graph, so the cleaning runs in the graph and gives the same rows."""
    from torch._dynamo.testing import CompileCounter

    backend = "dense"
    pattern, n = PATTERNS["window"], 40
    q, k, v = _inputs(n)
    bad_k, bad_v = _poison(k, v, (1, 0, 20), "v", float("nan"))
    counter = CompileCounter()
    fn = torch.compile(
        lambda q, k, v: sparse_attention(q, k, v, pattern, backend=backend),
        backend=counter,
        fullgraph=True,
    )
    for kk, vv in ((k, v), (bad_k, bad_v)):
        torch.testing.assert_close(
            fn(q, kk, vv), sparse_attention(q, kk, vv, pattern, backend=backend), equal_nan=True
        )
    assert counter.frame_count == 1
