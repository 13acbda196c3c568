import re

import pytest

from sparsetorch.cli import main


def test_bench_csr_on_cpu_prints_one_row_per_m(capsys):
    assert (
        main(["bench", "--config", "csr", "--shape", "64x128", "--m", "1,4", "--device", "cpu"])
        == 0
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\s+\d+\s+\d", line)]
    assert [int(r.split()[0]) for r in rows] == [1, 4]
    assert all(r.rstrip().endswith("x") for r in rows)  # a csr speed-up column per row
    assert "csr 64x128 torch.float32 on cpu" in out


def test_bench_2to4_on_cpu_reports_why_engines_are_skipped(capsys):
    assert (
        main(["bench", "--config", "2:4", "--shape", "64x64", "--m", "2", "--device", "cpu"]) == 0
    )
    out = capsys.readouterr().out
    assert "semi_structured: skipped (needs a CUDA device)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "3:8"], "--config must be one of"),
        (["--shape", "64by64"], "--shape takes OUTxIN"),
        (["--sparsity", "1.5"], "--sparsity must be in"),
    ],
)
def test_bench_bad_input(capsys, argv, message):
    assert main(["bench", "--device", "cpu", *argv]) == 2
    assert message in capsys.readouterr().err
