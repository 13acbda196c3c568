"""Every backend equals masked dense softmax attention, values and gradients (fp32, 1e-5)."""

import pytest
import torch

import sparsetorch.attention as A
from sparsetorch.attention import sparse_attention
from sparsetorch.attention.backends import reference
from tests.attention.helpers import naive_attention

ATTENTION_PATTERNS = [
    A.causal(),
    A.causal() & A.local(5),  # causal window: short first rows
    A.local(70) | A.global_tokens([0, 33]),
    A.causal() & (A.local(4) | A.strided(16)),
    A.random(3, seed=2) | A.dilated(2, 5),
    A.block(32, torch.rand(5, 5, generator=torch.Generator().manual_seed(0)) > 0.5),
    A.band(1, None),  # query 0 has no key at all
]


def _inputs(n, heads=2, dim=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(2, heads, n, dim, generator=g, dtype=dtype).requires_grad_() for _ in range(3)
    ]


def _check(backend, pattern, n, atol=1e-5):
    q, k, v = _inputs(n)
    scale = 0.3
    expected = naive_attention(q, k, v, pattern.mask(n), scale)
    out = sparse_attention(q, k, v, pattern, backend=backend, scale=scale)
    assert out.dtype == torch.float32 and not out.isnan().any()
    torch.testing.assert_close(out.double(), expected, atol=atol, rtol=0)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad(out, (q, k, v), upstream)
    want = torch.autograd.grad(expected, (q, k, v), upstream.double())
    for name, a, b in zip("qkv", got, want):
        assert not a.isnan().any(), name
        torch.testing.assert_close(
            a.double(), b.double(), atol=atol, rtol=0, msg=lambda m, name=name: f"d{name}: {m}"
        )


@pytest.mark.parametrize("backend", ["reference", "dense"])
@pytest.mark.parametrize("pattern", ATTENTION_PATTERNS, ids=repr)
@pytest.mark.parametrize("n", [37, 150])  # 150 = 2 blocks of 64 + a clipped one
def test_backend_equals_masked_dense_attention(backend, pattern, n):
    _check(backend, pattern, n)


@pytest.mark.parametrize("backend", ["reference", "dense"])
@pytest.mark.parametrize("pattern", [A.causal(), A.band(1, None)], ids=repr)
def test_a_single_token(backend, pattern):
    _check(backend, pattern, 1)


@pytest.mark.parametrize("backend", ["reference", "dense"])
def test_rows_without_keys_output_zeros_and_get_zero_gradients(backend):
    pattern = A.causal() & ~A.global_tokens([0, 5])  # query 0 and 5 see only masked keys...
    pattern = pattern & ~A.band(0, 0)  # ... and not even themselves
    n = 40
    q, k, v = _inputs(n)
    empty = ~pattern.mask(n).any(-1)
    assert empty[0] and empty[5]
    out = sparse_attention(q, k, v, pattern, backend=backend)
    assert torch.equal(out[:, :, empty], torch.zeros_like(out[:, :, empty]))
    (dq,) = torch.autograd.grad(out.square().sum(), (q,))
    assert torch.equal(dq[:, :, empty], torch.zeros_like(dq[:, :, empty]))
    assert not dq.isnan().any()


def test_reference_in_many_chunks_equals_one_chunk(monkeypatch):
    pattern = A.local(10) | A.global_tokens([3, 200])  # query blocks of very different widths
    n = 260
    q, k, v = _inputs(n)
    whole = sparse_attention(q, k, v, pattern, backend="reference")
    dwhole = torch.autograd.grad(whole.sum(), (q, k, v))
    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 1)  # one query block per chunk
    parts = sparse_attention(q, k, v, pattern, backend="reference")
    dparts = torch.autograd.grad(parts.sum(), (q, k, v))
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=0)
    for a, b in zip(dparts, dwhole):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_reference_accumulates_half_precision_in_float32():
    n, pattern = 100, A.causal() & A.local(20)
    q, k, v = _inputs(n, dtype=torch.bfloat16)
    out = sparse_attention(q, k, v, pattern, backend="reference")
    assert out.dtype == torch.bfloat16
    expected = naive_attention(q, k, v, pattern.mask(n), q.shape[-1] ** -0.5)
    torch.testing.assert_close(out.double(), expected, atol=2e-2, rtol=0)


def test_auto_picks_dense_for_short_sequences_and_patterns_needing_most_blocks():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    local = A.local(64)
    assert A.choose(local, 256, cpu, requires_grad=False) == "dense"
    assert A.choose(local, 512, cuda, requires_grad=True) == "dense"
    assert A.choose(local, 8192, cpu, requires_grad=True) == "reference"
    assert A.choose(local, 8192, cpu, requires_grad=False) == "flex"
    # Inductor's CPU FlexAttention takes no float64: the reference, exact in it
    assert A.choose(local, 8192, cpu, requires_grad=False, dtype=torch.float64) == "reference"
    assert A.choose(A.causal(), 8192, cpu, requires_grad=False) == "dense"
    # 1/64 of the pairs, but some pair in every block: block-sparse kernels gain nothing
    strided = A.strided(64)
    assert strided.density(8192) < 0.02
    assert strided.block_layout(8192, 64).block_density == 1.0
    assert A.choose(strided, 8192, cpu, requires_grad=True) == "dense"


def test_float64_on_the_cpu_runs_auto_exactly_and_flex_says_why_not():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 2048, 8, dtype=torch.float64, generator=g) for _ in "qkv")
    pattern = A.local(16)
    with torch.no_grad():
        out = A.sparse_attention(q, k, v, pattern, backend="auto")
        want = A.sparse_attention(q, k, v, pattern, backend="dense")
        torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
        with pytest.raises(TypeError, match=r"FlexAttention on the CPU takes .* got torch.float64"):
            A.sparse_attention(q, k, v, pattern, backend="flex")


def test_auto_equals_masked_dense_attention():
    _check("auto", A.causal() & A.local(8), 50)


def test_sparse_attention_accepts_pattern_strings():
    q, k, v = _inputs(20)
    a = sparse_attention(q, k, v, "causal() & local(3)", backend="reference")
    b = sparse_attention(q, k, v, A.band(0, 3), backend="reference")
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda q, k, v: (q, k[:, :, :-1], v), ValueError, "same shape"),
        (lambda q, k, v: (q[0], k[0], v[0]), ValueError, r"shape \(B, H, n, D\)"),
        (lambda q, k, v: (q, k.double(), v), TypeError, "one dtype"),
        (lambda q, k, v: (q.long(), k, v), TypeError, "floating point"),
        (lambda q, k, v: (q, k, v.tolist()), TypeError, "must be a tensor"),
    ],
)
def test_bad_inputs_raise_one_clear_error(change, error, message):
    q, k, v = (t.detach() for t in _inputs(8))
    with pytest.raises(error, match=message):
        sparse_attention(*change(q, k, v), A.causal(), backend="reference")


def test_unknown_backend_and_uncovered_lengths_are_rejected():
    q, k, v = (t.detach() for t in _inputs(8))
    with pytest.raises(ValueError, match=r"unknown attention backend 'fast'.*reference"):
        sparse_attention(q, k, v, A.causal(), backend="fast")
    with pytest.raises(ValueError, match="out of range"):
        sparse_attention(q, k, v, A.global_tokens([8]), backend="reference")


def test_auto_routes_finite_bands_in_half_precision_to_the_band_kernel(monkeypatch):
    from sparsetorch.attention import backends

    monkeypatch.setattr(backends.band_kernel, "available", lambda: True)
    cuda = torch.device("cuda")
    assert backends.AUTO_BAND_MIN_N == 4096 and backends.AUTO_BANDS_MIN_N == 16384
    assert A.choose(A.local(512), 65536, cuda, True, torch.bfloat16, 128) == "band"
    assert A.choose(A.band(0, 512), 4096, cuda, False, torch.float16, 64) == "band"
    assert A.choose(A.band(0, 512), 3072, cuda, False, torch.float16, 64) == "flex"  # short
    strided = A.causal() & (A.local(512) | A.strided(256))
    assert A.choose(strided, 16384, cuda, False, torch.float16, 64) == "bands"
    assert A.choose(strided, 8192, cuda, False, torch.float16, 64) == "flex"  # short for bands
    monkeypatch.setattr(backends, "AUTO_BAND_MIN_N", None)
    assert A.choose(A.local(512), 65536, cuda, True, torch.bfloat16, 128) == "flex"  # off
    monkeypatch.setattr(backends, "AUTO_BAND_MIN_N", 0)
    assert A.choose(A.local(512), 65536, cuda, True, torch.float32, 128) == "flex"  # fp32
    assert A.choose(A.local(512), 65536, cuda, True, torch.bfloat16, 96) == "flex"  # head dim
    assert A.choose(A.local(512), 65536, cuda, True, torch.bfloat16, 128, 64) == "flex"  # v's
    assert A.choose(A.local(512), 65536, cuda, True, torch.bfloat16, 128, 128) == "band"
    assert A.choose(A.local(512) | A.global_tokens([0]), 65536, cuda, True, torch.bfloat16) == (
        "flex"
    )
    assert A.choose(A.local(512), 1024, cuda, True, torch.bfloat16, 128) == "dense"  # short
    assert A.choose(A.local(512), 65536, torch.device("cpu"), True, torch.bfloat16) == "reference"


def test_auto_routes_strided_unions_to_the_bands_backend(monkeypatch):
    from sparsetorch.attention import backends

    monkeypatch.setattr(backends.band_kernel, "available", lambda: True)
    cuda = torch.device("cuda")
    sparse_transformer = A.causal() & (A.local(512) | A.strided(256))
    assert A.choose(sparse_transformer, 16384, cuda, True, torch.bfloat16, 128) == "bands"
    assert A.choose(A.local(512) | A.strided(256), 65536, cuda, False, torch.float16) == "bands"
    # below the band kernel's length, in float32, on the CPU: as before
    assert A.choose(sparse_transformer, 8192, cuda, False, torch.bfloat16, 128) != "bands"
    assert A.choose(sparse_transformer, 65536, cuda, False, torch.float32, 128) != "bands"
    assert A.choose(sparse_transformer, 65536, torch.device("cpu"), False, torch.bfloat16) != (
        "bands"
    )
    # a narrow periodic piece keeps the block masks; a plain band takes the band kernel
    assert A.choose(A.dilated(128, 4), 65536, cuda, False, torch.bfloat16, 128) == "flex"
    assert A.choose(A.local(512), 65536, cuda, False, torch.bfloat16, 128) == "band"
    monkeypatch.setattr(backends.band_kernel, "available", lambda: False)
    assert A.choose(sparse_transformer, 65536, cuda, False, torch.bfloat16, 128) != "bands"


@pytest.mark.parametrize("backend", ["reference", "dense", "flex"])
def test_grouped_query_attention_equals_repeated_heads(backend):
    g = torch.Generator().manual_seed(5)
    q = torch.randn(1, 4, 300, 16, generator=g)
    k, v = (torch.randn(1, 2, 300, 16, generator=g) for _ in "kv")
    pattern = A.causal() & (A.local(20) | A.global_tokens([0]))
    out = sparse_attention(q, k, v, pattern, backend=backend)
    rep = [t.repeat_interleave(2, dim=1) for t in (k, v)]
    torch.testing.assert_close(out, sparse_attention(q, *rep, pattern, backend=backend))
    assert out.shape == q.shape


def test_band_backend_refuses_other_patterns_by_name():
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ValueError, match="backend 'band' runs finite bands only"):
        sparse_attention(q, q, q, A.causal(), backend="band")
