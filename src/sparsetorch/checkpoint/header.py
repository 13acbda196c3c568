"""Reading and checking a safetensors header before any tensor data is touched.

File structure (safetensors): 8-byte little-endian header length N, N bytes of JSON
``{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}``,
then the data. sparsetorch keeps one key, ``__metadata__["sparsetorch"] = "<crc32 of JSON, 8 hex> <JSON>"``,
so no byte of its metadata can change unnoticed (and, being one key, the header is the same
bytes on every save: safetensors does not keep the order of ``__metadata__`` keys).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsetorch.checkpoint import dtypes
from sparsetorch.checkpoint.errors import CheckpointError

FORMAT_VERSION = 1
META_KEY = "sparsetorch"
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit
# What a file may expand to when loaded (its dense tensors' bytes): at most MAX_EXPANSION times
# the file's size, and never less than MIN_EXPANSION_BYTES (all-zero tensors store nothing).
# A 99.99%-sparse float32 weight with its mask expands ~7600x (values + 2-byte gaps stored,
# 4 + 1 bytes per element loaded); a header of a few hundred bytes claiming gigabytes is refused.
MAX_EXPANSION = 10_000
MIN_EXPANSION_BYTES = 64 << 20

_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1,
    "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F32": 4, "I32": 4, "U32": 4,
    "F64": 8, "I64": 8, "U64": 8, "C64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class TensorInfo:
    code: str  # safetensors dtype code, e.g. "F32"
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class Header:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def read_header(path: str | os.PathLike) -> Header:
    """Parse and check the header: every tensor's bytes lie inside the file and match its
    dtype and shape. Raises CheckpointError naming the first tensor that does not."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated ({size} bytes; a header needs 8)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise CheckpointError(
                f"{path}: truncated or corrupt header (claims {n} bytes, file has {size})"
            )
        raw = f.read(n)
    header = _parse_json(path, raw, "header")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(f"{path}: corrupt header (__metadata__ is not a str -> str map)")
    data_size = size - 8 - n
    tensors = {}
    for name, info in header.items():
        tensors[name] = _tensor_info(path, name, info, data_size)
    return Header(path, tensors, metadata)


def _parse_json(path: Path, raw: bytes, what: str) -> Any:
    """JSON text -> value; a nesting deeper than the parser's recursion limit (a crafted file:
    sparsetorch writes at most 4 levels) is a CheckpointError like any other corruption."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt {what} ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: corrupt {what} (JSON nested too deeply)") from None


def check_max_expansion(max_expansion: Any) -> float | None:
    """``max_expansion`` as a float > 0, or None (no bound); one clear error otherwise."""
    if max_expansion is None:
        return None
    if isinstance(max_expansion, bool) or not isinstance(max_expansion, numbers.Real):
        raise TypeError(f"max_expansion must be a finite number > 0 or None, got {max_expansion!r}")
    if not (math.isfinite(max_expansion) and max_expansion > 0):
        raise ValueError(f"max_expansion must be a finite number > 0 or None, got {max_expansion}")
    return float(max_expansion)


def expansion_problem(file_bytes: int, dense_bytes: int, max_expansion: float | None) -> str | None:
    """Why a file of ``file_bytes`` whose tensors take ``dense_bytes`` when loaded is over the
    bound (a decompression bomb, or a legitimately very sparse file), or None when it is not.
    The bound: ``max_expansion`` times the file's size, at least MIN_EXPANSION_BYTES."""
    if max_expansion is None:
        return None
    limit = max(MIN_EXPANSION_BYTES, max_expansion * file_bytes)
    if dense_bytes <= limit:
        return None
    return (
        f"its header describes {_human(dense_bytes)} of tensors from a {file_bytes}-byte file "
        f"({dense_bytes / max(file_bytes, 1):.3g}x; the bound is {max_expansion:g}x the file "
        f"size, at least {_human(MIN_EXPANSION_BYTES)})"
    )


def check_expansion(path: Path, dense_bytes: int, max_expansion: float | None) -> None:
    """Refuse, before anything is allocated, a file that expands beyond the bound."""
    problem = expansion_problem(path.stat().st_size, dense_bytes, max_expansion)
    if problem is not None:
        raise CheckpointError(
            f"{path}: {problem}: a corrupt or crafted file? If you trust it and it is this "
            "sparse, load it with max_expansion=None (or a larger ratio)"
        )


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _tensor_info(path: Path, name: str, info: Any, data_size: int) -> TensorInfo:
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict):
        raise CheckpointError(f"{where}: corrupt header entry")
    code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if code not in _ITEMSIZE:
        raise CheckpointError(f"{where}: unknown dtype {code!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise CheckpointError(f"{where}: corrupt shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise CheckpointError(f"{where}: corrupt data offsets {offsets!r}")
    begin, end = offsets
    if end > data_size:
        raise CheckpointError(
            f"{where}: data ends at byte {end} but the file holds {data_size} data bytes "
            "(truncated)"
        )
    nbytes = math.prod(shape) * _ITEMSIZE[code]
    if end - begin != nbytes:
        raise CheckpointError(
            f"{where}: holds {end - begin} bytes, dtype {code} and shape {shape} need {nbytes}"
        )
    return TensorInfo(code, tuple(shape), nbytes)


def metadata_json(meta: dict[str, Any]) -> dict[str, str]:
    """The ``__metadata__`` map that stores ``meta`` with its checksum."""
    text = json.dumps(meta, separators=(",", ":"))
    return {META_KEY: f"{zlib.crc32(text.encode('utf-8')):08x} {text}"}


def sparsetorch_metadata(header: Header) -> dict[str, Any] | None:
    """The checked sparsetorch metadata, or None for a plain safetensors file."""
    value = header.metadata.get(META_KEY)
    if value is None:
        parts = [name for name in header.tensors if "::" in name]
        if parts:
            raise CheckpointError(
                f"{header.path}: sparsetorch metadata is missing but the file holds "
                f"sparsetorch parts (e.g. {parts[:1]}); the header is corrupt"
            )
        return None
    crc, _, text = value.partition(" ")
    if crc != f"{zlib.crc32(text.encode('utf-8')):08x}":
        raise CheckpointError(f"{header.path}: sparsetorch metadata checksum mismatch (corrupt)")
    meta = _parse_json(header.path, text.encode("utf-8"), "sparsetorch metadata")
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if not _is_count(version):
        raise CheckpointError(f"{header.path}: sparsetorch metadata has no format version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{header.path}: written in checkpoint format version {version} by sparsetorch "
            f"{meta.get('sparsetorch')}; this sparsetorch reads versions up to "
            f"{FORMAT_VERSION}: upgrade sparsetorch"
        )
    if not isinstance(meta.get("tensors"), dict):
        raise CheckpointError(f"{header.path}: sparsetorch metadata lists no tensors")
    return meta


def code_of(dtype_name: str) -> str:
    return dtypes.CODE[dtype_name]
