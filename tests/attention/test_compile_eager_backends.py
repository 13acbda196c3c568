"""The backends that run eagerly on the CPU (reference; flex, whose CPU form reads whether any
position is non-finite and takes the reference's backward) inside ``torch.compile``: a graph
break with the same values and gradients as eager dense attention, and under
``fullgraph=True`` an error that says why and which backends compile whole."""

import pytest
import torch
from torch._dynamo.exc import Unsupported

from sparsetorch.attention import causal, local, sparse_attention, strided

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
