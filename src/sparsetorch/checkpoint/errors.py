"""The one exception every checkpoint problem raises."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated, from an unknown future format, or does not
    match the model it is loaded into. The message names the tensor (or the header) at fault."""
