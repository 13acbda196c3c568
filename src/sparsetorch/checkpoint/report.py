"""``report_file(path)``: what a checkpoint holds, per tensor, from its header alone."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from sparsetorch.checkpoint import dtypes
from sparsetorch.checkpoint.entries import ALIAS, MASK_OF, check_entries
from sparsetorch.checkpoint.header import (
    MAX_EXPANSION,
    expansion_problem,
    read_header,
    sparsetorch_metadata,
)
from sparsetorch.checkpoint.reader import _read_plain
from sparsetorch.model_report import format_bytes, format_table

COLUMNS = ("tensor", "shape", "dtype", "density", "pattern", "encoding", "stored", "dense")


def _row(name, shape, dtype, nnz, pattern, encoding, stored, dense) -> list[str]:
    numel = math.prod(shape)
    density = "-" if nnz is None or numel == 0 else f"{nnz / numel:.3f}"
    return [name, "x".join(map(str, shape)) or "()", dtype, density, pattern, encoding,
            format_bytes(stored), format_bytes(dense)]  # fmt: skip


def report_file(path: str | os.PathLike) -> str:
    """A per-tensor table (tensor, shape, dtype, density, pattern, encoding, stored bytes,
    dense bytes) and the file's total against a dense safetensors file. Reads only the header
    of a sparsetorch checkpoint (a plain safetensors file is read to count nonzeros)."""
    header = read_header(path)
    meta = sparsetorch_metadata(header)
    rows, stored_total, dense_total = [], 0, 0
    if meta is None:
        for key, value in _read_plain(header).items():
            nbytes = header.tensors[key].nbytes
            nnz = int(torch.count_nonzero(value)) if value.numel() else 0
            rows.append(_row(key, list(value.shape), dtypes.name_of(value.dtype), nnz, "-",
                             "dense", nbytes, nbytes))  # fmt: skip
            stored_total += nbytes
            dense_total += nbytes
        title = f"{Path(path).name}: plain safetensors file (not written by sparsetorch)"
    else:
        claimed = check_entries(header, meta["tensors"])
        for key, e in meta["tensors"].items():
            numel = math.prod(e["shape"])
            dense = numel * dtypes.itemsize(e["dtype"])
            if e["encoding"] in (MASK_OF, ALIAS):
                source = meta["tensors"][e["source"]]
                if source["encoding"] == MASK_OF:  # an alias of a mask
                    source = meta["tensors"][source["source"]]
                kind = "kept positions" if e["encoding"] == MASK_OF else "alias"
                how = f"{kind} of {e['source']}"
                rows.append(_row(key, e["shape"], e["dtype"], source["nnz"], source["pattern"],
                                 how, 0, dense))  # fmt: skip
                dense_total += dense if e["encoding"] == MASK_OF else 0
                continue
            stored = sum(header.tensors[name].nbytes for name in claimed[key].values())
            encoding = e["encoding"]
            if encoding == "block":
                encoding = f"block+{e['params']['index']}"
            rows.append(_row(key, e["shape"], e["dtype"], e["nnz"], e["pattern"], encoding,
                             stored, dense))  # fmt: skip
            stored_total += stored
            dense_total += dense
        title = (
            f"{Path(path).name}: sparsetorch checkpoint format {meta['format_version']} "
            f"(sparsetorch {meta.get('sparsetorch')}, torch {meta.get('torch')})"
        )
    size = Path(path).stat().st_size
    ratio = f"{size / dense_total:.3f}x" if dense_total else "-"
    rows.append(
        ["total", "", "", "", "", "", format_bytes(stored_total), format_bytes(dense_total)]
    )
    lines = [title, format_table(list(COLUMNS), rows, left={0, 1, 2, 4, 5}, total=True)]
    lines.append(f"file: {size} bytes (header included) = {ratio} of the tensors' dense bytes")
    problem = expansion_problem(size, dense_total, MAX_EXPANSION) if meta is not None else None
    if problem is not None:
        lines.append(
            f"warning: {problem}; load() refuses it unless given max_expansion=None (or a "
            "larger ratio): a corrupt or crafted file?"
        )
    return "\n".join(lines)
