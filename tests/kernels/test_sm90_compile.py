"""The Triton kernels compiled for an H100 (sm_90) on this machine, without a GPU
(``tests/kernels/sm90_ptx.py``): what their docstrings promise about the generated code
(asynchronous copies a stage ahead, wgmma, shared memory, 128-bit accesses) read off the PTX."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparsetorch.kernels import bsr_triton

pytest.importorskip("triton")
from tests.kernels.sm90_ptx import BSR_CASES  # after the skip: it imports Triton

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compiled() -> dict:
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        from tests.kernels.sm90_ptx import compile_all

        try:
            return compile_all()
        except RuntimeError as exc:
            pytest.skip(f"cannot compile for sm_90 here: {exc}")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-m", "tests.kernels.sm90_ptx"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if run.returncode:
        if "ptxas" in run.stderr:
            pytest.skip(f"cannot compile for sm_90 here: {run.stderr[-300:]}")
        raise AssertionError(run.stderr[-2000:])
    return json.loads(run.stdout.splitlines()[-1])


@pytest.mark.parametrize(("block_m", "w_left", "stages"), BSR_CASES)
def test_bsr_kernel_pipelines_its_loads_on_sm90(compiled, block_m, w_left, stages):
    ptx = compiled[f"bsr {block_m} {w_left} {stages}"]
    assert ptx["cp.async.cg.shared.global"] and ptx["cp.async.wait_group"]  # a stage ahead
    assert ptx["wgmma.mma_async"]
    # the operand buffers are those the autotuner's shared-memory pruning counts
    assert ptx["shared"] - bsr_triton._smem_bytes(block_m, 64, stages) in range(0, 1025)


def test_nonfinite_cleaning_moves_128_bit_words_on_sm90(compiled):
    ptx = compiled["clean"]
    assert ptx["ld.global"] == ptx["ld.global.v4"] > 0  # every load 128-bit
    assert ptx["st.global.v4"] > 0


def test_row_fill_moves_128_bit_words_on_sm90(compiled):
    """The fill reads and writes the output's rows in 128-bit words (32 rows of 128 bf16 over
    128 threads: 4 words each way per thread); the only narrower loads are the marks, one per
    row a thread holds."""
    ptx = compiled["fill"]
    assert ptx["ld.global.v4"] == ptx["st.global.v4"] == 4
    assert ptx["ld.global"] - ptx["ld.global.v4"] == 4


def test_band_containment_keeps_the_forward_pipeline_on_sm90(compiled):
    """The band forward's first pass with containment (``DETECT``) keeps the plain kernel's
    software pipeline: the same asynchronous copies a stage ahead, wgmma and shared memory;
    it adds only the 128-bit reads of the tile's own k and v rows, once, after the output
    is stored (no per-tile work in the loop)."""
    plain, contained = compiled["band plain"], compiled["band detect"]
    for key in ("shared", "cp.async.cg.shared.global", "cp.async.wait_group", "wgmma.mma_async"):
        assert contained[key] == plain[key] > 0, key
    assert contained["st.global.v4"] == plain["st.global.v4"]
    # 128 rows of k and of v, 128 bf16 each, over 256 threads: 8 + 8 words per thread
    assert contained["ld.global.v4"] - plain["ld.global.v4"] == 16
    assert contained["ld.global"] - contained["ld.global.v4"] == 0


def test_band_fixup_pass_compiles_with_a_pipeline_on_sm90(compiled):
    """The second pass (``_band_fixup``) is the contained forward behind a branch: it keeps
    asynchronous copies and wgmma."""
    fixup = compiled["band fixup"]
    assert fixup["cp.async.cg.shared.global"] and fixup["cp.async.wait_group"]
    assert fixup["wgmma.mma_async"]


@pytest.mark.parametrize("kernel", ["dkdv", "dq"])
def test_band_backward_containment_keeps_the_pipeline_on_sm90(compiled, kernel):
    """The backward kernels with containment keep the plain ones' asynchronous copies and
    wgmma; they add narrow loads only (the marks; dq's two prefix counts per key tile, whose
    scalars take a few bytes of shared memory)."""
    plain = compiled[f"band {kernel} contain=False"]
    contained = compiled[f"band {kernel} contain=True"]
    for key in ("cp.async.cg.shared.global", "cp.async.wait_group", "wgmma.mma_async"):
        assert contained[key] == plain[key] > 0, key
    assert contained["shared"] - plain["shared"] in range(0, 65)
    assert contained["ld.global.v4"] == plain["ld.global.v4"]
    assert contained["ld.global"] > plain["ld.global"]
    assert compiled["band delta contain"]["st.global.v4"] > 0  # dO with the NaN rows 0
