"""Seeds of the controls, derived from the run's seed so that every branch is reproducible
and independent of the others."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *labels: object) -> int:
    """A 31-bit seed that is a pure function of ``seed`` and ``labels`` (e.g. the control's name
    and the round): same inputs, same seed, on every machine and Python version."""
    text = "/".join(str(part) for part in (seed, *labels))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
