"""Launch a command on 2 CPU ranks with the real ``torchrun`` and tell a failure of the work
from gloo's rare abort at process teardown.

The shared CI machine once saw rank 0 of a finished script die with ``terminate called
without an active exception`` (SIGABRT; ~1 run in 15 of the FSDP2 + DCP doc script under load,
on either rank; never in 60 plain gloo launches). ``PYTHONFAULTHANDLER`` showed where: the
aborting thread has no Python frame, i.e. it happens in C++ teardown during interpreter
finalisation, after the script's last line and ``destroy_process_group``. The work is judged by
what it printed and wrote, so a run whose output is complete and whose only fault is that
teardown abort passes with a warning; any other failure fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEARDOWN_ABORT = "terminate called without an active exception"


def torchrun(args: list[str], cwd: Path, complete: Callable[[str], bool], timeout: float = 300):
    """Run ``torchrun --standalone --nproc_per_node 2 *args``; fail unless it exited 0 or its
    output is ``complete(stdout)`` and the only fault is gloo's teardown abort."""
    env = dict(
        os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1"
    )
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc_per_node", "2", *args]  # fmt: skip
    done = subprocess.run(launch, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        report = f"stdout:\n{done.stdout[-1500:]}\nstderr:\n{done.stderr[-4000:]}"
        assert TEARDOWN_ABORT in done.stderr and complete(done.stdout), report
        warnings.warn(f"gloo aborted at teardown after complete output:\n{report}", stacklevel=2)
    return done
