"""Triton's CPU interpreter (TRITON_INTERPRET=1) for kernel tests.

Triton 3.6's interpreter converts a scalar to a Python int with ``int(array)``, which numpy
>= 2.3 refuses for its 1-element arrays; a kernel whose loop bounds are computed from
``program_id`` (the band attention kernels) then fails to run in the interpreter only.
``patch()`` converts through the array's single element instead."""

import os

import pytest

try:
    import triton
    import triton.runtime.interpreter as _interp
except ImportError:  # pragma: no cover
    triton = None

INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

needs_interpreter = pytest.mark.skipif(
    triton is None or not INTERPRETING, reason="needs Triton; on CPU run with TRITON_INTERPRET=1"
)


def patch() -> None:
    if triton is None or getattr(_interp, "_sparsetorch_patched", False):
        return
    original = _interp._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    _interp._patch_lang_tensor = patched
    _interp._sparsetorch_patched = True
