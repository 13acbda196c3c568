"""The torchrun helper passes a complete run that gloo aborted at teardown (with a warning)
and fails an aborted run whose output is incomplete or an abort of another kind."""

from __future__ import annotations

import pytest

from tests.distributed.torchrun import TEARDOWN_ABORT, torchrun

SCRIPT = """
import os, sys
if os.environ["RANK"] == "0":
    print("{printed}", flush=True)
    print("{message}", file=sys.stderr, flush=True)
    os.abort()
"""


def _script(tmp_path, printed: str, message: str = TEARDOWN_ABORT) -> list[str]:
    (tmp_path / "job.py").write_text(SCRIPT.format(printed=printed, message=message))
    return ["job.py"]


@pytest.mark.slow
def test_complete_output_then_teardown_abort_passes_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="gloo aborted at teardown after complete output"):
        done = torchrun(_script(tmp_path, "done"), tmp_path, lambda out: "done" in out)
    assert done.returncode != 0


@pytest.mark.slow
@pytest.mark.parametrize("printed, message", [("half", TEARDOWN_ABORT), ("done", "Segfault")])
def test_incomplete_output_or_another_fault_fails(tmp_path, printed, message):
    with pytest.raises(AssertionError, match="stderr"):
        torchrun(_script(tmp_path, printed, message), tmp_path, lambda out: "done" in out)
