import pytest

from sparsetorch.cli import demo as demo_cli
from sparsetorch.cli import main
from sparsetorch.data import load
from tests.data.test_idx import _fake_fashion_dir

LENET = [(300, 784), (100, 300), (10, 100)]


@pytest.fixture(scope="module")
def small_fashion():
    return load("fashion-mnist").slice(5000, 500, 2000)


def test_demo_on_real_data(small_fashion):
    lines = []
    results = demo_cli.run_demo(small_fashion, epochs=1, seed=0, out=lines.append, repeats=3)
    assert results["accuracy"] > 0.6  # 40 Adam steps on real Fashion-MNIST; chance is 0.1
    for sparsity, figures in results["sparsities"].items():
        nnz = [round((1 - sparsity) * r * c) for r, c in LENET]  # exactly k zeros per layer
        formats = figures["formats"]
        assert formats["dense"]["bytes"] == 266_200 * 4
        assert formats["csr"]["bytes"] == sum(n * 8 + (r + 1) * 4 for n, (r, _) in zip(nnz, LENET))
        assert formats["coo"]["bytes"] == sum(n * 12 for n in nnz)
        assert all(f["matvec_us"] > 0 for f in formats.values())
        assert 0.0 <= figures["accuracy"] <= 1.0
    rep = results["report"]
    assert [row.density for row in rep.layers] == pytest.approx([0.1, 0.1, 0.1])
    assert rep.total.flops == 2 * sum(r * c for r, c in LENET)
    assert [row.format for row in rep.layers] == ["csr", "csr", "csr"]
    text = "\n".join(lines)
    assert f"test accuracy {results['accuracy']:.4f}" in text
    assert "fc1.weight  300x784   0.1000  23,520" in text
    for sparsity in ("0.50", "0.90", "0.95"):
        for name in demo_cli.COMPARED:
            assert any(
                row.split()[:1] == [sparsity] and name in row.split()
                for row in lines[-1].splitlines()
            )


def test_same_seed_same_numbers(small_fashion):
    tiny = small_fashion.slice(600, 100, 300)
    runs = [demo_cli.run_demo(tiny, seed=5, out=lambda s: None, repeats=1) for _ in range(2)]
    assert runs[0]["accuracy"] == runs[1]["accuracy"]
    assert runs[0]["sparsities"][0.9]["accuracy"] == runs[1]["sparsities"][0.9]["accuracy"]


def test_cli_flags_reach_the_demo(tmp_path, monkeypatch, capsys):
    data_dir = _fake_fashion_dir(tmp_path, n_train=5000 + 256, n_test=100)
    seen = {}

    def fake_run_demo(data, epochs, seed):
        seen.update(train=len(data.train), test=len(data.test), epochs=epochs, seed=seed)

    monkeypatch.setattr(demo_cli, "run_demo", fake_run_demo)
    assert main(["demo", "--epochs", "3", "--seed", "7", "--data-dir", str(data_dir)]) == 0
    assert seen == {"train": 256, "test": 100, "epochs": 3, "seed": 7}


def test_cli_end_to_end_on_a_data_dir(tmp_path, capsys):
    data_dir = _fake_fashion_dir(tmp_path, n_train=5000 + 256, n_test=100)
    assert main(["demo", "--epochs", "1", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "256 training examples, 1 epoch(s)" in out and "(100 examples)" in out
    assert out.count("bsr2x2") == 3  # one row per sparsity


def test_cli_help_and_bad_epochs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--epochs", "--seed", "--data-dir"):
        assert flag in help_text
    data_dir = _fake_fashion_dir(tmp_path, n_train=5000 + 10, n_test=10)
    assert main(["demo", "--epochs", "0", "--data-dir", str(data_dir)]) == 2
    assert "--epochs must be an int >= 1, got 0" in capsys.readouterr().err
