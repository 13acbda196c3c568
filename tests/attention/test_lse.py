"""The log-sum-exp helpers with their own backward (backends/lse.py): the chunked token
columns and the merge of disjoint key sets equal finite differences (``gradcheck`` in
float64, both outputs used, rows without keys included) and autograd through the plain
:func:`masked_lse`; and they keep for backward no more than their inputs and the lse (no
float32 copy of a half-precision q or output)."""

from __future__ import annotations

import torch
from torch.autograd import gradcheck

from sparsetorch.attention.backends.lse import chunked_lse, masked_lse, merge_lse


def _finite(lse):
    """lse with +inf (no key) as 0, so that finite differences stay finite."""
    return torch.where(torch.isinf(lse), 0.0, lse)


def _columns(n=11, keys=3, heads=2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, heads, n, 4, dtype=dtype, generator=g)
    k, v = (torch.randn(2, heads, keys, 4, dtype=dtype, generator=g) for _ in "kv")
    allowed = torch.rand(n, keys, generator=g) < 0.6
    allowed[3] = False  # a row without keys
    allowed[4] = True
    return q, k, v, allowed


def test_chunked_columns_equal_finite_differences():
    q, k, v, allowed = _columns()
    inputs = tuple(t.requires_grad_() for t in (q, k, v))

    def f(q, k, v):
        out, lse = chunked_lse(q, k, v, allowed, 0.7, 4)  # chunks 4, 4, 3
        return out, _finite(lse)

    assert gradcheck(f, inputs)


def test_chunked_columns_equal_autograd_through_masked_lse():
    q, k, v, allowed = _columns(n=13, keys=4, seed=1)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    got = chunked_lse(q, k, v, allowed, 0.4, 5)
    want = masked_lse(q, k, v, allowed, 0.4)
    torch.testing.assert_close(got[0], want[0], atol=1e-14, rtol=0)
    assert torch.equal(torch.isinf(got[1]), torch.isinf(want[1]))
    g = torch.Generator().manual_seed(2)
    up = torch.randn(got[0].shape, dtype=torch.float64, generator=g)
    up_lse = torch.randn(got[1].shape, dtype=torch.float64, generator=g)
    grads = [
        torch.autograd.grad((r[0] * up).sum() + (_finite(r[1]) * up_lse).sum(), (q, k, v))
        for r in (got, want)
    ]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def _parts(n=9, parts=3, seed=3):
    g = torch.Generator().manual_seed(seed)
    outs = [torch.randn(1, 2, n, 3, dtype=torch.float64, generator=g) for _ in range(parts)]
    lses = [torch.randn(1, 2, n, dtype=torch.float64, generator=g) * 3 for _ in range(parts)]
    lses[0][0, 0, 2] = float("inf")  # one part without keys on a row
    for lse in lses:
        lse[0, 1, 5] = float("inf")  # a row without keys in any part
    return outs, lses


def test_merge_equals_finite_differences():
    outs, lses = _parts()
    inf = [torch.isinf(x) for x in lses]
    finite = [_finite(x).requires_grad_() for x in lses]
    outs = [o.requires_grad_() for o in outs]

    def f(*tensors):
        o, x = tensors[: len(outs)], tensors[len(outs) :]
        lse = [torch.where(m, float("inf"), t) for m, t in zip(inf, x, strict=True)]
        out, total = merge_lse(list(o), lse)
        return out, _finite(total)

    assert gradcheck(f, (*outs, *finite))


def test_merge_of_rows_without_keys_gives_zeros_and_zero_gradients():
    outs, lses = _parts()
    outs = [o.requires_grad_() for o in outs]
    out, lse = merge_lse(outs, lses)
    assert torch.equal(out[0, 1, 5], torch.zeros(3, dtype=torch.float64))
    assert bool(torch.isinf(lse[0, 1, 5]))
    grads = torch.autograd.grad(out.sum(), outs)
    assert all(bool((g[0, 1, 5] == 0).all()) for g in grads)
    assert bool((grads[0][0, 0, 2] == 0).all())  # the part without keys on that row


def _saved_bytes(fn, *args) -> int:
    """The bytes of distinct storages autograd keeps for ``fn(*args)``'s backward."""
    kept = []  # the tensors themselves: no storage is freed and its address reused meanwhile

    def pack(t):
        kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in kept}
    return sum(storages.values())


def test_half_precision_parts_keep_no_float32_copies():
    q, k, v, allowed = _columns(n=64, keys=2, heads=4, dtype=torch.bfloat16)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    lse_bytes = q[..., 0].numel() * 4
    inputs = q.nbytes + k.nbytes + v.nbytes + allowed.nbytes
    assert _saved_bytes(chunked_lse, q, k, v, allowed, 0.5, 16) <= inputs + lse_bytes
    outs = [torch.randn_like(q).requires_grad_() for _ in range(3)]
    lses = [torch.randn(q.shape[:3]).requires_grad_() for _ in range(3)]
    saved = _saved_bytes(merge_lse, outs, lses)
    assert saved <= sum(o.nbytes for o in outs) + 4 * lse_bytes  # the stacked lses, the lse
