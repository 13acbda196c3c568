"""Warnings that point at the user's line, whichever public function they called."""

from __future__ import annotations

import functools
import os
import sys


@functools.cache
def _libraries() -> tuple[str, ...]:
    """sparsetorch's directory and torch's, whose wrappers (``torch.compiler.disable``,
    ``nn.Module.__call__``) sit between a user's line and ours."""
    import torch

    return tuple(os.path.dirname(os.path.abspath(p)) + os.sep for p in (__file__, torch.__file__))


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` made by the caller of this function that
    names the first frame outside sparsetorch and torch (the user's call), however deep."""
    libraries = _libraries()
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(libraries):
        frame, level = frame.f_back, level + 1
    return level
