"""The flex backend on CPU: compiled FlexAttention forward with our block masks, and (torch has
no CPU FlexAttention backward) the exact block-sparse backward. One compile: one pattern."""

import warnings

import pytest
import torch

import sparsetorch.attention as A
from sparsetorch.attention import sparse_attention
from sparsetorch.attention.backends import flex
from tests.attention.helpers import naive_attention

# Every kind of leaf, a complement, and a query row without keys (query 0).
PATTERN = (
    A.band(1, None) & (A.local(6) | A.strided(9) | A.random(2, seed=5))
    | A.dilated(2, 4) & ~A.global_tokens([0])
    | A.block(
        32, [[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]]
    )
)


@pytest.mark.slow
def test_flex_on_cpu_equals_masked_dense_attention_values_and_gradients():
    n = 150  # not a multiple of the 128 block
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, n, 16, generator=g).requires_grad_() for _ in range(3))
    mask = PATTERN.mask(n)
    assert not mask[0].any()
    expected = naive_attention(q, k, v, mask, 0.25)
    out = sparse_attention(q, k, v, PATTERN, backend="flex", scale=0.25)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    assert torch.equal(out[:, :, 0], torch.zeros_like(out[:, :, 0]))
    upstream = torch.randn(out.shape, generator=g)
    got = torch.autograd.grad(out, (q, k, v), upstream)
    want = torch.autograd.grad(expected, (q, k, v), upstream.double())
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-5, rtol=0)
    with torch.no_grad():  # the inference path: FlexAttention alone
        torch.testing.assert_close(
            sparse_attention(q, k, v, PATTERN, backend="flex", scale=0.25), out, atol=1e-6, rtol=0
        )
    # the block mask is cached per (pattern, n, device, block)
    assert flex.block_mask(PATTERN, n, q.device) is flex.block_mask(PATTERN, n, q.device)


def test_past_the_recompile_limit_new_shapes_run_on_the_reference(monkeypatch):
    """The CPU's static compiles stop at Dynamo's recompile limit (2 here): a third length
    runs on the reference backend with a warning, where Dynamo would have run torch's
    unfused FlexAttention (an n x n score matrix); values as masked attention either way."""
    import torch._dynamo

    monkeypatch.setattr(flex, "_CPU_COMPILED", set())
    torch._dynamo.reset()  # Dynamo's own count of compiles starts again too
    pattern = A.local(3)
    with torch._dynamo.config.patch(recompile_limit=2), torch.no_grad():
        for n, warns in ((20, False), (21, False), (20, False), (22, True)):
            q, k, v = (torch.randn(1, 2, n, 16, generator=torch.Generator().manual_seed(n))
                       for _ in range(3))  # fmt: skip
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = sparse_attention(q, k, v, pattern, backend="flex")
            said = [str(w.message) for w in caught if "recompile limit" in str(w.message)]
            assert bool(said) == warns, (n, said)
            assert not any("unfused" in str(w.message) for w in caught)
            want = naive_attention(q, k, v, pattern.mask(n), 16**-0.5)
            torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=0)
