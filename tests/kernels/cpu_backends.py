"""The two implementations of the CPU kernels a test runs: the pure-torch twin and the
compiled extension (skipped where it did not build)."""

import pytest

from sparsetorch.kernels.cpu import available

BACKENDS = [
    "torch",
    pytest.param(
        "cpp",
        marks=pytest.mark.skipif(
            not available(), reason="the compiled CPU kernels did not build on this machine"
        ),
    ),
]
