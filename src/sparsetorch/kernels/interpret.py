"""Whether the Triton kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``): there
the kernels take one small fixed config each, since autotuning times configs on a GPU."""

from __future__ import annotations

import os


def interpreting() -> bool:
    """True when Triton is installed and runs kernels in its CPU interpreter."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


__all__ = ["interpreting"]
