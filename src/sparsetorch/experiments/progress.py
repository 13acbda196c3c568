"""Progress bars (tqdm) that stay quiet when nobody watches: off when stderr is not a
terminal or the CI environment variable is set, unless asked for explicitly."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_enabled(requested: bool | None = None) -> bool:
    if requested is not None:
        return requested
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress_bar(total: int, initial: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        disable=not enabled,
        dynamic_ncols=True,
        leave=False,
    )
