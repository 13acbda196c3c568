"""What autograd keeps for the backward of the global-token parts of the ``bands`` backend
(the token columns, the log-sum-exp merges and the token rows), beyond q, k and v and beyond
what the band kernel keeps itself, for ``local(512) | global_tokens(G)``, B1 H16 D128 bf16.

    PYTHONPATH=src python benchmarks/attention_tokens_memory.py --n 8192 --tokens 1

Runs on the CPU: the base's band-kernel call is replaced by a stand-in whose (out, lse) are
leaves, so every tensor counted is one the token parts keep. Counted once per storage with
``torch.autograd.graph.saved_tensors_hooks``. Grows linearly in n (times 8 for n = 65536).
"""

from __future__ import annotations

import argparse

import torch

from sparsetorch.attention import global_tokens, local
from sparsetorch.attention.backends.bands import bands_attention
from sparsetorch.attention.backends.tokens import split_tokens
from sparsetorch.attention.pieces import Piece


def saved_by_token_parts(n: int, tokens: int, heads: int = 16, dim: int = 128) -> tuple[int, int]:
    """(bytes kept beyond q, k, v and the base's own output, q's bytes)."""
    q, k, v = (
        torch.randn(1, heads, n, dim, dtype=torch.bfloat16, requires_grad=True) for _ in "qkv"
    )
    pattern = local(512) | global_tokens(list(range(0, n, max(1, n // tokens)))[:tokens])
    found = split_tokens(pattern)
    base = [torch.zeros_like(q, requires_grad=True), torch.zeros(q.shape[:3], requires_grad=True)]

    def stand_in(q, k, v, lo, hi, scale):  # the band kernel keeps its own (out, lse)
        return base[0], base[1]

    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        bands_attention(q, k, v, [Piece(-512, 512, 1)], dim**-0.5, stand_in, found)
    own = {t.untyped_storage().data_ptr() for t in (q, k, v, *base)}
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in kept}
    return sum(b for p, b in storages.items() if p not in own), q.nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[8192])
    parser.add_argument("--tokens", type=int, default=1)
    args = parser.parse_args()
    for n in args.n:
        extra, q_bytes = saved_by_token_parts(n, args.tokens)
        print(
            f"n={n}, {args.tokens} global token(s): kept {extra / 2**20:.1f} MiB = "
            f"{extra / q_bytes:.2f}x q's bytes ({q_bytes / 2**20:.0f} MiB)"
        )


if __name__ == "__main__":
    main()
