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


@pytest.mark.parametrize("config", ["2:4", "bsr"])
def test_config_without_a_cpu_path_says_why_instead_of_an_empty_table(capsys, config):
    argv = ["bench", "--config", config, "--shape", "128x128", "--m", "2", "--device", "cpu"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "dense ms" not in out  # no table with a dense column only
    assert err.startswith(f"sparsetorch bench: error: no compute path for --config {config} on cpu")
    assert "needs a CUDA device" in err and "on cpu try --config csr" in err


def test_torch_beta_warnings_are_silenced(capsys, monkeypatch):
    import warnings

    from sparsetorch.deploy import dispatch

    timer = dispatch.default_timer

    def warning_timer(fn, *args, **kwargs):  # what torch says on first use of a sparse layout
        warnings.warn("Sparse CSR tensor support is in beta state", UserWarning, stacklevel=1)
        return timer(fn, *args, **kwargs)

    monkeypatch.setattr(dispatch, "default_timer", warning_timer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert (
            main(["bench", "--config", "csr", "--shape", "64x64", "--m", "1", "--device", "cpu"])
            == 0
        )
        warnings.warn("other warnings still show", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["other warnings still show"]
    assert "0.00x" not in capsys.readouterr().out  # ratios keep 3 significant digits


def test_bench_help_lists_the_deploy_configs():
    from sparsetorch.cli.bench import CONFIG_NAMES
    from sparsetorch.deploy import CONFIGS

    assert sorted(CONFIG_NAMES) == sorted(CONFIGS)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "3:8"], "--config must be one of"),
        (["--shape", "64by64"], "--shape takes OUTxIN"),
        (["--sparsity", "1.5"], "--sparsity must be in"),
        (["--m", "0"], "--shape and --m take sizes >= 1"),
        (["--m", "-3"], "--shape and --m take sizes >= 1"),
        (["--shape", "0x64"], "--shape and --m take sizes >= 1"),
        (["--config", "bsr", "--shape", "30x30"], "needs OUT and IN multiples of 64"),
        (["--config", "2:4", "--shape", "64x30"], "needs IN a multiple of 4"),
        (["--device", "nonsense"], "device 'nonsense' is not a torch device"),
        (["--device", "meta"], "device 'meta' holds no data"),
    ],
)
def test_bench_bad_input(capsys, argv, message):
    assert main(["bench", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
