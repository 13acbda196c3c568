"""Exact top-k over a tensor split into shards held by several processes (FSDP2's dim-0
shards), without gathering the tensor: the same mask, bitwise, as ``sparsetorch.selection``
gives on the whole tensor.

How (a radix select on the scores' bits, with all-reduced histograms):

1. every score becomes an integer key with the same order (``sortable_keys``: the IEEE bits
   of a float, sign-folded; ``-0.0`` and ``+0.0`` share a key because they compare equal);
2. the k-th largest key is found one byte at a time, most significant first: each process
   counts its candidates' current byte in 256 bins, the counts are summed over processes
   (one ``all_reduce`` of a (problems, 256) int64 tensor), and everyone walks the same summed
   histogram down from 255 to the byte where the count reaches k. 4 rounds for float32 scores
   (float16/bfloat16 are widened exactly), 8 for float64 and int64. The threshold is exact;
3. keys above the threshold are kept; ties at the threshold are kept in global order (lower
   global flat index first, as ``selection.topk_mask`` does): one ``all_gather`` of the
   per-process tie counts tells each process how many ties ranks before it hold.

Global order: ``pieces`` are one process's parts of the sequence being ranked; the global
sequence is ordered by (piece index, process rank, index within the piece). For one FSDP
weight (one piece per process, Shard(0) rows of a row-major tensor) this is the flat index
of the full tensor; for ``global_topk`` over several weights, piece ``i`` is weight ``i``:
weight by weight, then by flat index, as ``selection.global_topk_masks``.

Every selection costs 1 + rounds + 1 collectives, whatever the number of problems batched
into it (all layers of a RigL update go together), and transfers only counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from sparsetorch.selection import (
    _keep_first,
    check_scores,
    global_topk_masks,
    key_bytes,
    sortable_keys,
    topk_mask,
    unsigned_keys,
)


# ------------------------------------------------------------------------------ communication
class Comm:
    """How the processes holding the shards talk. This base class is one process alone (all
    pieces local): ``sum`` and ``gather`` are identities."""

    rank = 0
    world_size = 1

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Elementwise sum of ``values`` over the processes."""
        return values

    def max(self, values: torch.Tensor) -> torch.Tensor:
        """Elementwise maximum of ``values`` over the processes."""
        return values

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """(world_size, *values.shape): every process's ``values``, in rank order."""
        return values.unsqueeze(0)


ALONE = Comm()


@contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn a collective's failure into one clear error naming ``what``: TimeoutError when
    the others did not join in time, RuntimeError when one left (gloo raises both; NCCL's
    watchdog aborts the process after the group's timeout instead)."""
    try:
        yield
    except RuntimeError as exc:
        text = str(exc).lower()
        if "timed out" in text or "timeout" in text:
            raise TimeoutError(
                f"{what}: the other ranks did not join within the process group's timeout "
                f"(one crashed, hangs, or skipped this step; init_process_group(timeout=...) "
                f"sets the limit): {exc}"
            ) from exc
        if "connection closed" in text or "connection reset" in text:
            raise RuntimeError(
                f"{what}: another rank left the process group (it crashed or stopped early): {exc}"
            ) from exc
        raise


class GroupComm(Comm):
    """The processes of a ``torch.distributed`` group. Collectives run on the current CUDA
    device for NCCL, else on the CPU; results come back on the caller's device. ``what``
    names the work in the error raised when a collective times out."""

    def __init__(self, group: object = None, what: str = "sparsetorch mask selection") -> None:
        import torch.distributed as dist

        self.what = what
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        nccl = dist.get_backend(group) == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else None

    def _on_device(self, values: torch.Tensor) -> torch.Tensor:
        device = self.device or torch.device("cpu")
        return values.to(device, copy=True).contiguous()

    def _reduce(self, values: torch.Tensor, op: str) -> torch.Tensor:
        import torch.distributed as dist

        out = self._on_device(values)
        with collective(self.what):
            dist.all_reduce(out, op=getattr(dist.ReduceOp, op), group=self.group)
        return out.to(values.device)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        return self._reduce(values, "SUM")

    def max(self, values: torch.Tensor) -> torch.Tensor:
        return self._reduce(values, "MAX")

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        values = self._on_device(values)
        out = values.new_empty((self.world_size * values.numel(),))  # gloo wants it flat
        with collective(self.what):
            dist.all_gather_into_tensor(out, values.reshape(-1), group=self.group)
        return out.view(self.world_size, *values.shape)


# ------------------------------------------------------------------------------ keys
# key_bytes, sortable_keys and their unsigned form live with the one exact top-k (selection.py)
_unsigned = unsigned_keys


# ------------------------------------------------------------------------------ selection
def sharded_topk(
    problems: Sequence[Sequence[torch.Tensor]], ks: Sequence[int], comm: Comm = ALONE
) -> list[list[torch.Tensor]]:
    """For each problem (this process's pieces of one sequence, see the module docstring),
    bool masks (one per piece, the piece's shape) keeping exactly ``ks[i]`` of its highest
    scores over all processes, ties to the earlier global position. Collective: every process
    calls it with the same number of problems, pieces and ``ks``."""
    if len(problems) != len(ks):
        raise ValueError(f"got {len(problems)} problems but {len(ks)} values of k")
    for pieces in problems:
        for piece in pieces:
            check_scores(piece)
    device = _device(problems)
    sizes = torch.tensor([sum(p.numel() for p in pieces) for pieces in problems], device=device)
    totals = comm.sum(sizes.long()).tolist() if problems else []
    for k, n in zip(ks, totals):
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
            raise ValueError(f"k must be an int in [0, {n}], got {k!r}")
    if not problems:
        return []
    keys = [[sortable_keys(_promoted(p, pieces)) for p in pieces] for pieces in problems]
    nbytes = [key_bytes(_promoted_dtype(pieces)) for pieces in problems]
    thresholds, ties_wanted = _kth_keys(keys, ks, nbytes, comm, device)
    return _masks_at(problems, keys, thresholds, ties_wanted, ks, totals, comm, device)


def _device(problems: Sequence[Sequence[torch.Tensor]]) -> torch.device:
    for pieces in problems:
        for piece in pieces:
            return piece.device
    return torch.device("cpu")


def _promoted_dtype(pieces: Sequence[torch.Tensor]) -> torch.dtype:
    dtype = pieces[0].dtype if pieces else torch.float32
    for p in pieces:
        dtype = torch.promote_types(dtype, p.dtype)
    return dtype


def _promoted(piece: torch.Tensor, pieces: Sequence[torch.Tensor]) -> torch.Tensor:
    # compared in the common dtype, as selection.global_topk_masks does
    return piece.to(_promoted_dtype(pieces))


def _kth_keys(
    keys: list[list[torch.Tensor]], ks: Sequence[int], nbytes: list[int], comm: Comm, device
) -> tuple[list[int], list[int]]:
    """The k-th largest key of every problem and how many keys equal to it are to be kept,
    by a most-significant-byte-first radix select."""
    n = len(keys)
    prefix = [0] * n  # unsigned bits chosen so far
    remaining = list(ks)  # how many of the keys matching the prefix are still to be kept
    # unsigned keys that still match the prefix
    live = [[_unsigned(k, nb) for k in pieces] for pieces, nb in zip(keys, nbytes)]
    for byte in range(max(nbytes) - 1, -1, -1):
        shift = 8 * byte
        hist = torch.zeros(n, 256, dtype=torch.int64, device=device)
        digits = [[(k >> shift) & 0xFF for k in pieces] for pieces in live]
        for i, pieces in enumerate(digits):
            for d in pieces:
                hist[i] += torch.bincount(d, minlength=256)
        hist = comm.sum(hist)
        # descending cumulative counts: above[d] = number of keys with this byte >= d
        above = hist.flip(1).cumsum(1).flip(1).tolist()
        counts = hist.tolist()
        for i in range(n):
            if remaining[i] == 0:
                continue  # k = 0: nothing to find (every key is below "the threshold")
            d = max(j for j in range(256) if above[i][j] >= remaining[i])
            remaining[i] -= above[i][d] - counts[i][d]  # keys strictly above byte d
            prefix[i] |= d << shift
            live[i] = [k[digit == d] for k, digit in zip(live[i], digits[i])]
    return [p - 2 ** (8 * nb - 1) for p, nb in zip(prefix, nbytes)], remaining


def _masks_at(problems, keys, thresholds, ties_wanted, ks, totals, comm, device):
    """Masks from the thresholds: keys above are kept; ties in global order."""
    above, ties = [], []
    for pieces, threshold, k, total in zip(keys, thresholds, ks, totals):
        if k in (0, total):
            above.append([torch.full_like(p, k == total, dtype=torch.bool) for p in pieces])
            ties.append([torch.zeros_like(p, dtype=torch.bool) for p in pieces])
            continue
        above.append([p > threshold for p in pieces])
        ties.append([p == threshold for p in pieces])
    tie_counts = torch.tensor(
        [int(torch.count_nonzero(t)) for pieces in ties for t in pieces],
        dtype=torch.int64,
        device=device,
    )
    everyone = comm.gather(tie_counts).cpu()  # (world, total pieces)
    out, slot = [], 0
    for i, pieces in enumerate(problems):
        wanted = ties_wanted[i] if ks[i] not in (0, totals[i]) else 0
        masks = []
        for j, piece in enumerate(pieces):
            column = everyone[:, slot + j]
            # ties earlier in global order: earlier pieces on every process, then this
            # piece on lower ranks
            before = int(everyone[:, slot : slot + j].sum()) + int(column[: comm.rank].sum())
            take = min(int(column[comm.rank]), max(0, wanted - before))
            kept = above[i][j] | _keep_first(ties[i][j], take)
            masks.append(kept.reshape(piece.shape))
        out.append(masks)
        slot += len(pieces)
    return out


# ------------------------------------------------------------------------------ selectors
class Selector:
    """Counting and exact top-k over tensors that one process holds whole. The algorithms
    (RigL/SET updates, ``prune``, GMP) do their counting and selecting through a selector,
    so the same code runs on FSDP shards with :class:`ShardSelector`."""

    def count(self, flag: torch.Tensor) -> int:
        """The number of True entries (``count_nonzero``: a bool ``sum`` would make an int64
        copy of the whole tensor)."""
        return int(torch.count_nonzero(flag))

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the processes holding the shards (here: itself)."""
        return values

    def topk(self, scores: torch.Tensor, k: int) -> torch.Tensor:
        """``selection.topk_mask``."""
        return topk_mask(scores, k)

    def topk_each(self, scores: Sequence[torch.Tensor], ks: Sequence[int]) -> list[torch.Tensor]:
        """``topk(scores[i], ks[i])`` for every i."""
        return [self.topk(s, k) for s, k in zip(scores, ks)]

    def global_topk(self, scores: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        """``selection.global_topk_masks``."""
        return global_topk_masks(scores, k)


LOCAL = Selector()


class ShardSelector(Selector):
    """The same answers over tensors split into dim-0 shards across ``comm``'s processes:
    each process passes its own shard (a plain tensor) and gets its shard of the mask."""

    def __init__(self, comm: Comm) -> None:
        self.comm = comm

    def count(self, flag: torch.Tensor) -> int:
        return int(self.sum(torch.count_nonzero(flag).reshape(1).long()))

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        return self.comm.sum(values)

    def topk(self, scores: torch.Tensor, k: int) -> torch.Tensor:
        return sharded_topk([[scores]], [k], self.comm)[0][0]

    def topk_each(self, scores: Sequence[torch.Tensor], ks: Sequence[int]) -> list[torch.Tensor]:
        return [masks[0] for masks in sharded_topk([[s] for s in scores], list(ks), self.comm)]

    def global_topk(self, scores: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        if not isinstance(scores, dict) or not scores:
            raise ValueError("scores must be a non-empty dict {name: tensor}")
        masks = sharded_topk([list(scores.values())], [k], self.comm)[0]
        return dict(zip(scores, masks))


__all__ = [
    "ALONE",
    "LOCAL",
    "Comm",
    "GroupComm",
    "Selector",
    "ShardSelector",
    "collective",
    "key_bytes",
    "sharded_topk",
    "sortable_keys",
]
