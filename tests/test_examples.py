"""Every script in examples/ runs as a user would run it (``python examples/NAME.py``, a fresh
process) and checks its own results with asserts; its closing line says what it showed. A
script exits with 77 and a reason when an optional part is missing (then it is skipped)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sparsetorch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
SKIP = 77
CLOSING = {
    "oneshot_transformer.py": "ok: one-shot 2:4",
    "own_data_runner.py": "ok: your data, your model",
    "prune_cnn.py": "ok: pruned and fine-tuned",
    "prune_hf_model.py": "ok: pruned, saved and reloaded",
    "rigl_own_loop.py": "ok: RigL trained a 90%-sparse network",
    "sparse_attention_model.py": "ok: sparse attention in a model",
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES) == sorted(CLOSING)
    readme = (ROOT / "examples" / "README.md").read_text()
    assert all(name in readme for name in CLOSING)


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    # the sparsetorch under test (this checkout's src when PYTHONPATH points there)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(sparsetorch.__file__).parents[1]), env.get("PYTHONPATH", "")]
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode == SKIP:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == CLOSING[script.name]
