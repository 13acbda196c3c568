"""A run refused for its arguments leaves nothing on disk: bad method options, a layer collapse
that SNIP finds on the data, an unknown or absent device. The run dir's files are written only
once every hook has started (and the dirs this call made are removed when one refuses)."""

import pytest

from sparsetorch.cli import main
from sparsetorch.experiments import train
from sparsetorch.lottery import IMP, IMPConfig

REFUSED = {
    "rigl delta_t=0": (
        {"method": "rigl", "sparsity": 0.9, "options": {"delta_t": 0}},
        "cpu",
        "delta_t must be",
    ),
    "rigl alpha=5": (
        {"method": "rigl", "sparsity": 0.9, "options": {"alpha": 5.0}},
        "cpu",
        "alpha must be",
    ),
    "gmp t_end": (
        {"method": "gmp", "sparsity": 0.9, "options": {"t_end": 10**6}},
        "cpu",
        "t_end must be",
    ),
    "snip collapse (global)": (
        {"method": "snip", "sparsity": 0.99999, "distribution": "global"},
        "cpu",
        "layer collapse",
    ),
    "snip collapse (uniform)": (
        {"method": "snip", "sparsity": 0.99999, "distribution": "uniform"},
        "cpu",
        "layer collapse",
    ),
    "unknown device": ({}, "nonsense", r"device 'nonsense' is not a torch device"),
    "absent device": ({}, "cuda:7", r"device 'cuda:7' is not available"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_run_leaves_nothing(tmp_path, tiny_hp, digits, case):
    sparsity, device, message = REFUSED[case]
    for key, value in sparsity.items():
        setattr(tiny_hp.sparsity, key, value)
    out = tmp_path / "runs"
    with pytest.raises(ValueError, match=message):
        train(tiny_hp, out, dataset=digits, device=device)
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_does_not_take_the_data_leaves_nothing(tmp_path, tiny_hp, digits):
    from torch import nn

    class Seven(nn.Module):  # digits come as 28x28 images: 784 inputs, not 7
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(7, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))

    with pytest.raises(ValueError, match=r"does not take digits's inputs \(shape \(1, 28, 28\)"):
        train(tiny_hp, tmp_path / "runs", dataset=digits, model=Seven())
    assert list(tmp_path.iterdir()) == []


def test_an_explicit_empty_run_dir_is_left_as_it_was(tmp_path, tiny_hp, digits):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    tiny_hp.sparsity.method, tiny_hp.sparsity.sparsity = "rigl", 0.9
    tiny_hp.sparsity.options = {"delta_t": 0}
    with pytest.raises(ValueError, match="delta_t"):
        train(tiny_hp, run_dir=run_dir, dataset=digits)
    assert run_dir.is_dir() and list(run_dir.iterdir()) == []


def test_the_same_run_then_trains_normally(tmp_path, tiny_hp, digits):
    tiny_hp.sparsity.method, tiny_hp.sparsity.sparsity = "rigl", 0.9
    tiny_hp.sparsity.options = {"delta_t": 0}
    with pytest.raises(ValueError):
        train(tiny_hp, tmp_path, dataset=digits)
    tiny_hp.sparsity.options = {"delta_t": 2}
    result = train(tiny_hp, tmp_path, dataset=digits)
    assert not result.reused and (result.run_dir / "result.json").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "nonsense"], "device 'nonsense' is not a torch device"),
        (["--method", "rigl", "--sparsity", "0.9", "--alpha", "5"], "alpha must be"),
    ],
)
def test_cli_refusals_are_one_line(tmp_path, capsys, extra, message):
    argv = ["train", "--dataset", "digits", "--train-size", "64", "--val-size", "32",
            "--test-size", "32", "--steps", "2", "--out", str(tmp_path / "runs"), *extra]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    # one error line, the last (the lines before are train's progress lines: what it loads)
    (error,) = [line for line in err.splitlines() if "error:" in line]
    assert err.splitlines()[-1] == error and error.startswith("sparsetorch train: error:")
    assert message in error
    assert list(tmp_path.iterdir()) == []


def test_lottery_with_an_unknown_device_leaves_nothing(tmp_path, tiny_hp, digits):
    with pytest.raises(ValueError, match="device 'nonsense' is not a torch device"):
        IMP(tiny_hp, IMPConfig(rounds=1), out_dir=tmp_path / "runs", dataset=digits,
            device="nonsense").run()  # fmt: skip
    assert list(tmp_path.iterdir()) == []
