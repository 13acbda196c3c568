"""Compressed sparse checkpoints on safetensors: a pruned model is really smaller on disk.

``save(model_or_state_dict, path)`` stores each masked or pruned tensor as its kept values plus
the cheapest index encoding for its pattern (``codecs``), dense tensors as they are, with a JSON
header (format version, versions, per-tensor pattern, encoding, nnz and crc32) in safetensors'
``__metadata__``. ``load(path, model=None, as_format=None, dtype=None)`` checks everything and
restores bitwise. No pickle anywhere. docs/checkpoints.md has the format and the measurements.
"""

from __future__ import annotations

from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.header import FORMAT_VERSION
from sparsetorch.checkpoint.reader import load, read_state
from sparsetorch.checkpoint.report import report_file
from sparsetorch.checkpoint.writer import save

__all__ = ["FORMAT_VERSION", "CheckpointError", "load", "read_state", "report_file", "save"]
