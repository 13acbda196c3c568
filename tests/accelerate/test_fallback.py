"""Without the compiled kernels (no compiler, or switched off) everything runs on the
pure-torch twin, after one warning."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import warnings
    import torch
    from torch import nn
    import sparsetorch as st

    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        model = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 4))
        st.prune(model, sparsity=0.8, criterion="random")
        report = st.accelerate_(model)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(5, 16)).square().mean().backward()
            opt.step()
    ours = [w for w in caught if "CPU kernels are not available" in str(w.message)]
    print(report.backend, len(ours), model[0].last_path)
    print(str(ours[0].message) if ours else "")
    """
)


def _run(env_extra: dict[str, str], tmp_path: Path) -> list[str]:
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "SPARSETORCH_KERNELS_DIR": str(tmp_path)}
    env.update(env_extra)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_a_failed_build_warns_once_and_trains_on_the_torch_twin(tmp_path):
    # a compiler that fails: the build raises, one warning names the cause
    lines = _run({"CXX": "/bin/false"}, tmp_path)
    assert lines[0] == "torch 1 sparse"
    assert "pure-torch fallback" in lines[1] and "python -m sparsetorch.kernels.cpu" in lines[1]


def test_switched_off_kernels_use_the_twin_silently(tmp_path):
    lines = _run({"SPARSETORCH_CPU_KERNELS": "0"}, tmp_path)
    assert lines[0] == "torch 0 sparse"
