"""Sparse attention: composable patterns, exact backends, a drop-in module.

    from sparsetorch.attention import causal, global_tokens, local, sparse_attention, strided

    longformer = local(128) | global_tokens([0])           # O(n(w + g))
    sparse_transformer = causal() & (local(128) | strided(128))
    out = sparse_attention(q, k, v, longformer)            # q, k, v: (B, H, n, D)

Patterns answer ``mask(n)`` (dense, for tests), ``nnz(n)`` (exact, analytic),
``block_layout(n, block)`` (analytic), ``mask_mod(n)`` (FlexAttention) and ``describe(n)``.
See docs/attention.md.
"""

from __future__ import annotations

from sparsetorch.attention.algebra import Complement, Intersection, Union
from sparsetorch.attention.backends import BACKENDS, choose
from sparsetorch.attention.bands import Band, band, causal, local
from sparsetorch.attention.block_sparse import BlockPattern, block
from sparsetorch.attention.functional import sparse_attention
from sparsetorch.attention.layout import BlockLayout
from sparsetorch.attention.module import SparseAttention
from sparsetorch.attention.parse import ATTENTION_PATTERNS, parse, register
from sparsetorch.attention.pattern import AttentionPattern
from sparsetorch.attention.periodic import Dilated, Strided, dilated, strided
from sparsetorch.attention.random_keys import RandomKeys, random
from sparsetorch.attention.tokens import GlobalTokens, global_tokens

for _name, _constructor in (
    ("causal", causal),
    ("local", local),
    ("band", band),
    ("global_tokens", global_tokens),
    ("strided", strided),
    ("dilated", dilated),
    ("random", random),
    ("block", block),
):
    register(_name, _constructor)

__all__ = [
    "ATTENTION_PATTERNS",
    "BACKENDS",
    "AttentionPattern",
    "Band",
    "BlockLayout",
    "BlockPattern",
    "Complement",
    "Dilated",
    "GlobalTokens",
    "Intersection",
    "RandomKeys",
    "SparseAttention",
    "Strided",
    "Union",
    "band",
    "block",
    "causal",
    "choose",
    "dilated",
    "global_tokens",
    "local",
    "parse",
    "random",
    "sparse_attention",
    "strided",
]
