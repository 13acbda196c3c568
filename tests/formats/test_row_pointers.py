"""Row pointers <-> row indices, the helpers every compressed format shares, against a loop."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from sparsetorch.formats._compressed import compress_rows, expand_rows

counts_lists = hs.lists(hs.integers(0, 5), min_size=0, max_size=12)


def naive_rows(counts: list[int]) -> list[int]:
    rows = []
    for r, c in enumerate(counts):
        rows += [r] * c
    return rows


@settings(max_examples=60, deadline=None)
@given(counts_lists, hs.sampled_from([torch.int32, torch.int64]), hs.booleans())
def test_rows_and_pointers_round_trip(counts, dtype, give_nnz):
    pointers = [0]
    for c in counts:
        pointers.append(pointers[-1] + c)
    row_ptr = torch.tensor(pointers, dtype=dtype)
    rows = expand_rows(row_ptr, pointers[-1] if give_nnz else None)
    assert rows.dtype == torch.int64
    assert rows.tolist() == naive_rows(counts)
    back = compress_rows(rows.to(dtype), len(counts), dtype)
    assert back.dtype == dtype and torch.equal(back, row_ptr)
