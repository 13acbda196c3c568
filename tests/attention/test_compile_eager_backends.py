"""Sparse attention inside ``torch.compile`` on the CPU. The backends that run eagerly there
(reference; flex, whose CPU form reads whether any position is non-finite and takes the
reference's backward) are a graph break with the same values and gradients as eager dense
attention, and under ``fullgraph=True`` an error that says why and what to use instead; auto's
choice is made when tracing."""

import pytest
import torch
from torch._dynamo.exc import Unsupported
from torch._dynamo.testing import CompileCounter

from sparsetorch._eager_cache import eager_cache
from sparsetorch.attention import SparseAttention, causal, local, sparse_attention, strided
from sparsetorch.attention.backends import MIN_SPARSE_N, choose

PATTERNS = {"window": local(8), "causal strided window": causal() & (local(8) | strided(16))}


def _inputs(n: int = 96):
    g = torch.Generator().manual_seed(n)
    return tuple(torch.randn(1, 2, n, 16, generator=g).requires_grad_() for _ in range(3))


@pytest.mark.parametrize("backend", ["reference", "flex"])
@pytest.mark.parametrize("name", list(PATTERNS))
def test_runs_inside_torch_compile_with_eager_values_and_gradients(backend, name):
    """Inductor failed on these backends' data-dependent steps ("vr must not be None for
    symbol", torch 2.13) before they ran as a graph break."""
    torch._dynamo.reset()
    pattern = PATTERNS[name]
    q, k, v = _inputs()

    def loss(q, k, v, backend=backend):
        out = sparse_attention(q, k, v, pattern, backend=backend)
        return (out * torch.linspace(-1, 1, 16)).sum()

    got = torch.autograd.grad(torch.compile(loss)(q, k, v), (q, k, v))
    want = torch.autograd.grad(loss(q, k, v, "dense"), (q, k, v))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("backend", "says"), [("reference", "reference attention backend"), ("flex", "on the CPU")]
)
def test_fullgraph_says_the_backend_runs_eagerly(backend, says):
    torch._dynamo.reset()
    q, k, v = (t.detach() for t in _inputs(32))
    fn = torch.compile(
        lambda q, k, v: sparse_attention(q, k, v, local(4), backend=backend), fullgraph=True
    )
    with pytest.raises(Unsupported, match=f"(?s){says}.*runs eagerly|runs eagerly.*{says}"):
        fn(q, k, v)


def test_auto_in_a_compiled_training_step_past_the_dense_lengths():
    """auto decides from the pattern's block density, computed on CPU tensors; inside
    torch.compile that is evaluated once when tracing (Inductor failed on it before, "vr must
    not be None for symbol", n = 2100), then the chosen backend runs as it does eagerly."""
    torch._dynamo.reset()
    n = MIN_SPARSE_N["cpu"] + 52
    attn = SparseAttention(32, 2, local(16))
    x = torch.randn(2, n, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    got = torch.autograd.grad(torch.compile(attn)(x).sum(), x)[0]
    want = torch.autograd.grad(attn(x).sum(), x)[0]
    assert choose(local(16), n, x.device, True) == "reference"  # (after: no warm cache)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_auto_compiles_whole_for_a_band_built_in_the_compiled_function():
    """The band's closed-form block density is a constant when tracing, so a model that
    builds ``local(w)`` in its forward compiles with fullgraph=True where auto runs dense."""
    torch._dynamo.reset()
    n = MIN_SPARSE_N["cpu"] + 52
    q, k, v = (
        torch.randn(1, 2, n, 16, generator=torch.Generator().manual_seed(i)) for i in range(3)
    )
    assert choose(local(n // 3), n, q.device, False) == "dense"
    counter = CompileCounter()
    fn = torch.compile(
        lambda q, k, v: sparse_attention(q, k, v, local(n // 3)), backend=counter, fullgraph=True
    )
    torch.testing.assert_close(fn(q, k, v), sparse_attention(q, k, v, local(n // 3)))
    assert counter.frame_count == 1


@pytest.mark.gpu
def test_auto_inside_torch_compile_on_cuda_equals_eager():
    """On CUDA auto's flex runs inside the outer graph (its window's block lists built there)."""
    torch._dynamo.reset()
    n = MIN_SPARSE_N["cuda"] + 52
    g = torch.Generator(device="cuda").manual_seed(1)
    q, k, v = (torch.randn(1, 2, n, 64, device="cuda", generator=g) for _ in range(3))
    assert choose(local(16), n, q.device, False, q.dtype, 64) == "flex"
    fn = torch.compile(lambda q, k, v: sparse_attention(q, k, v, local(16)))
    torch.testing.assert_close(
        fn(q, k, v), sparse_attention(q, k, v, local(16)), rtol=2e-3, atol=2e-3
    )


def test_export_leaves_the_eager_caches_clean():
    """torch.export (non-strict) runs the Python on traced tensors: the dense mask and layout
    caches must not keep them. Before, the eager call after an export failed ("Could not guard
    on data-dependent expression")."""
    torch.manual_seed(0)
    attn = SparseAttention(32, 2, local(16)).eval()
    x = torch.randn(1, 128, 32)
    exported = torch.export.export(attn, (x,))
    with torch.no_grad():
        want = attn(x)
        torch.testing.assert_close(exported.module()(x), want)
        torch.testing.assert_close(attn(x), want)


@pytest.mark.parametrize("name", ["global_tokens", "random"])
def test_export_as_the_first_call_leaves_the_pattern_tables_real(name):
    """The tables a global-token or random pattern keeps per device (and length) are built
    while exporting when no eager call came first; a traced table kept there made the eager
    call after the export return a FakeTensor."""
    from sparsetorch.attention import global_tokens, random

    pattern = global_tokens([0]) if name == "global_tokens" else random(2, seed=0)
    torch.manual_seed(0)
    attn = SparseAttention(32, 4, pattern, backend="dense").eval()
    x = torch.randn(2, 40, 32)
    torch.export.export(attn, (x,))  # no eager call before it
    with torch.no_grad():
        out = attn(x)
        assert type(out) is torch.Tensor and torch.isfinite(out).all()
        assert type(pattern.mask(40)) is torch.Tensor
        torch.testing.assert_close(out, attn.to(torch.float64)(x.double()).float())


def test_eager_cache_is_bypassed_while_tracing(monkeypatch):
    calls = []

    @eager_cache(maxsize=4)
    def build(n):
        calls.append(n)
        return torch.arange(n)

    build(3), build(3)
    assert calls == [3] and build.cache_info().currsize == 1
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    build(3), build(5)
    assert calls == [3, 3, 5] and build.cache_info().currsize == 1  # neither read nor written
