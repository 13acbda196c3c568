"""Element types a checkpoint can hold, by name, with their safetensors codes.

Names are torch's (``"float32"``, ``"bfloat16"``); index parts use the numpy names of the same
integer types. Sparse encodings read every element as raw bits (an integer view of the same
width), so -0.0 and NaN payloads survive bitwise.
"""

from __future__ import annotations

import torch

# name -> (torch dtype, safetensors code, integer view used for bitwise work)
_TABLE: dict[str, tuple[torch.dtype, str, torch.dtype]] = {
    "float64": (torch.float64, "F64", torch.int64),
    "float32": (torch.float32, "F32", torch.int32),
    "float16": (torch.float16, "F16", torch.int16),
    "bfloat16": (torch.bfloat16, "BF16", torch.int16),
    "int64": (torch.int64, "I64", torch.int64),
    "int32": (torch.int32, "I32", torch.int32),
    "int16": (torch.int16, "I16", torch.int16),
    "int8": (torch.int8, "I8", torch.int8),
    "uint8": (torch.uint8, "U8", torch.uint8),
    "bool": (torch.bool, "BOOL", torch.bool),
}
for _name, _code in (("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64")):
    if hasattr(torch, _name):  # torch >= 2.3
        _dtype = getattr(torch, _name)
        _TABLE[_name] = (_dtype, _code, _dtype)
for _name, _code in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")):
    if hasattr(torch, _name):
        _TABLE[_name] = (getattr(torch, _name), _code, torch.uint8)

NAMES = tuple(_TABLE)
CODE = {name: code for name, (_, code, _) in _TABLE.items()}


def name_of(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def is_supported(dtype: torch.dtype) -> bool:
    return name_of(dtype) in _TABLE


def torch_dtype(name: str) -> torch.dtype:
    return _TABLE[name][0]


def bits_view(dtype: torch.dtype) -> torch.dtype:
    """The integer dtype of the same width (bool stays bool)."""
    return _TABLE[name_of(dtype)][2]


def itemsize(name: str) -> int:
    return _TABLE[name][0].itemsize
