import dataclasses
import json

import pytest
import torch

from sparsetorch.algorithms.config import CONFIGS
from sparsetorch.cli import build_parser, main
from sparsetorch.experiments.flags import flag_name, hparams_from_args
from sparsetorch.experiments.hparams import GROUPS, Hparams

TINY = ["--dataset", "digits", "--train-size", "128", "--val-size", "50", "--test-size", "50",
        "--batch-size", "32", "--steps", "6", "--eval-every", "3"]  # fmt: skip


def parsed(*argv) -> Hparams:
    args = build_parser().parse_args(["train", *argv])
    return hparams_from_args(args, None)


def dry_run(capsys, *argv):
    assert main(["train", "--dry-run", *argv]) == 0
    text = capsys.readouterr().out
    body, _, run_dir = text.rpartition("# run dir: ")
    return Hparams.from_dict(json.loads(body)), run_dir.strip()


def test_help_shows_every_hparams_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for group_cls in GROUPS.values():
        for f in dataclasses.fields(group_cls):
            if f.metadata.get("method_options"):  # one flag per option of every method
                for config in CONFIGS.names():
                    for option in CONFIGS.lookup(config).option_fields():
                        assert "--" + option.name.replace("_", "-") in text, option.name
                continue
            assert flag_name(f) in text, flag_name(f)
    for flag in ("--config", "--out", "--device", "--threads", "--progress", "--dry-run"):
        assert flag in text


def test_every_flag_sets_its_field():
    """Each flag lands in its field (parsed only: a dry run would refuse /d and these options
    for digits, as train does)."""
    hp = parsed(
        *["--model", "conv4", "--model-option", "width=3", "--dataset", "digits"],
        *["--data-dir", "/d", "--split-seed", "2", "--train-size", "10", "--val-size", "11"],
        *["--test-size", "12", "--data-option", "context=64", "--optimizer", "momentum"],
        *["--lr", "0.05", "--momentum", "0.8", "--weight-decay", "1e-4", "--batch-size", "7"],
        *["--epochs", "3", "--lr-schedule", "step", "--milestones", "5,9", "--gamma", "0.5"],
        *["--warmup-steps", "2", "--eval-every", "4", "--seed", "3", "--data-seed", "4"],
        *["--method", "rigl", "--sparsity", "0.9", "--pattern", "2:4", "--distribution", "erk"],
        *["--delta-t", "50", "--alpha", "0.4", "--t-end", "none", "--schedule", "constant"],
    )
    expected = Hparams()
    expected.model.name, expected.model.options = "conv4", {"width": 3}
    d = expected.dataset
    d.name, d.data_dir, d.split_seed, d.train_size, d.val_size, d.test_size = (
        "digits", "/d", 2, 10, 11, 12)  # fmt: skip
    d.options = {"context": 64}
    t = expected.training
    t.optimizer, t.lr, t.momentum, t.weight_decay, t.batch_size, t.epochs = (
        "momentum", 0.05, 0.8, 1e-4, 7, 3)  # fmt: skip
    t.lr_schedule, t.milestones, t.gamma, t.warmup_steps, t.eval_every = "step", (5, 9), 0.5, 2, 4
    t.seed, t.data_seed = 3, 4
    s = expected.sparsity
    s.method, s.sparsity, s.pattern, s.distribution = "rigl", 0.9, "2:4", "erk"
    s.options = {"delta_t": 50, "alpha": 0.4, "t_end": None, "schedule": "constant"}
    assert hp == expected


def test_config_file_and_flags_round_trip(tmp_path, capsys):
    flags = ["--model", "conv2", "--lr", "0.003", "--steps", "40", "--method", "gmp"]
    flags += ["--sparsity", "0.5", "--delta-t", "5"]
    from_flags, run_dir = dry_run(capsys, *flags, "--out", str(tmp_path))
    config = tmp_path / "c.yaml"
    from_flags.save(config)
    from_config, run_dir_2 = dry_run(capsys, "--config", str(config), "--out", str(tmp_path))
    assert from_config == from_flags and run_dir_2 == run_dir
    assert run_dir.startswith(str(tmp_path / "conv2-gmp-"))
    # flags override the file; method options merge key by key
    over, _ = dry_run(capsys, "--config", str(config), "--lr", "0.1", "--t-start", "2")
    assert over.training.lr == 0.1 and over.training.steps == 40
    assert over.sparsity.options == {"delta_t": 5, "t_start": 2}
    # --epochs on the command line wins over steps from the file
    epochs, _ = dry_run(capsys, "--config", str(config), "--epochs", "2")
    assert (epochs.training.epochs, epochs.training.steps) == (2, None)


def test_train_then_rerun_from_its_hparams_json_reuses_the_run(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path), "--no-progress"]) == 0
    first = capsys.readouterr().out
    (run_dir,) = tmp_path.iterdir()
    assert f"-> {run_dir}" in first and "(reused)" not in first
    assert main(["train", "--config", str(run_dir / "hparams.json"), "--out", str(tmp_path)]) == 0
    second = capsys.readouterr().out
    assert "(reused)" in second and f"-> {run_dir}" in second
    assert [p.name for p in tmp_path.iterdir()] == [run_dir.name]
    result = json.loads((run_dir / "result.json").read_text())
    assert f"test acc {result['final']['test_acc']:.4f}" in second


def test_threads_flag(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path), "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2
    assert main(["train", *TINY, "--out", str(tmp_path), "--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_parser_rejects_malformed_values(capsys):
    parser = build_parser()
    for argv, message in (
        (["train", "--lr", "fast"], "invalid float value: 'fast'"),
        (["train", "--milestones", "3,x"], "expected integers separated by commas"),
        (["train", "--model-option", "novalue"], "expected KEY=VALUE"),
        (["train", "--delta-t", "often"], "expected int or 'none'"),
        (["train", "--eval-every", "often"], "expected int or 'none'"),
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "vgg"], "unknown model 'vgg'; known: conv2, conv4, conv6, lenet300"),
        (["--dataset", "cifar"], "unknown dataset 'cifar'; known: digits, fashion-mnist, text"),
        (["--method", "magic"], "unknown method 'magic'; known: dense"),
        (["--epochs", "2", "--steps", "5"], "give --epochs or --steps, not both"),
        (["--sparsity", "0.5"], "method is 'dense'"),
        (["--lr", "-1"], "training.lr must be a finite number > 0"),
        (["--config", "missing.yaml"], "config 'missing.yaml' is not a file"),
        (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent"], "is not a directory"),
        (["--dataset", "digits", "--data-dir", "/nonexistent"], "digits ships with scikit-learn"),
        (
            ["--method", "snip", "--sparsity", "0.5", "--pattern", "3:2"],
            "N:M pattern needs integers 0 < N <= M",
        ),
        (["--device", "nonsense"], "device 'nonsense' is not a torch device"),
        (["--distributed", "ddp"], "--distributed needs the environment torchrun sets"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "runs"
    assert main(["train", "--out", str(out), *argv]) == 2
    *status, error = capsys.readouterr().err.splitlines()
    assert error.startswith("sparsetorch train: error: ") and message in error
    assert all(line.endswith(" ...") for line in status)  # what it was loading
    assert not out.exists()


def test_out_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "runs").write_text("")
    assert main(["train", *TINY, "--out", str(tmp_path / "runs")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_interrupt_prints_how_to_resume(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("sparsetorch.experiments.train", interrupted)
    assert main(["train", *TINY, "--out", str(tmp_path)]) == 130
    assert "run the same command again to resume" in capsys.readouterr().out


def test_a_method_without_sparsity_is_refused_before_anything_runs(tmp_path, capsys):
    for extra in ([], ["--dry-run"]):
        assert main(["train", "--method", "rigl", "--out", str(tmp_path / "runs"), *extra]) == 2
        out, err = capsys.readouterr()
        assert "sparsity.method is 'rigl' but sparsity.sparsity is 0" in err
        assert "--sparsity 0.9" in err and "run dir" not in out
    assert not (tmp_path / "runs").exists()


def test_help_lists_exactly_the_methods_train_accepts(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = text.split("--method NAME sparsity method: ")[1].split(" (default: dense)")[0]
    names = [n.split(" (")[0] for n in listed.replace(")", ") ,").split(", ") if n.strip(" ,")]
    names = [n.strip(" ,") for n in names]
    assert sorted(names) == sorted(["dense", *CONFIGS.names()])
    assert "(at initialisation)" in listed and "(during training)" in listed
    for name in names:
        sparsity = [] if name == "dense" else ["--sparsity", "0.5"]
        hp, _ = dry_run(capsys, "--method", name, *sparsity, "--out", str(tmp_path))
        assert hp.sparsity.method == name
    assert main(["train", "--dry-run", "--method", "magnitude", "--sparsity", "0.5"]) == 2
    assert "unknown method 'magnitude'; known: dense, " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--model", "resnet", "unknown model 'resnet'"),
        ("--dataset", "mnist", "unknown dataset 'mnist'"),
        ("--optimizer", "lamb", "unknown optimizer 'lamb'"),
        ("--pattern", "3x3", "unknown pattern '3x3'"),
    ],
)
def test_dry_run_refuses_unknown_names_and_prints_no_run_dir(
    tmp_path, capsys, flag, value, message
):
    argv = ["train", "--dry-run", "--out", str(tmp_path / "r"), flag, value]
    if flag == "--pattern":
        argv += ["--method", "snip", "--sparsity", "0.5"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert message in err and "known:" in err and out == ""
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model-option", "foo=1"], "model 'lenet300' rejects option(s) {'foo': 1}"),
        (["--data-option", "foo=1"], "dataset 'digits' rejects option(s) {'foo': 1}"),
        (["--data-dir", "/nonexistent"], "digits ships with scikit-learn and reads no data dir"),
    ],
)
def test_dry_run_refuses_what_loading_and_building_refuse(tmp_path, capsys, argv, message):
    """What train refuses only once it loads the data or builds the model, the dry run
    refuses too, printing no run dir and writing nothing."""
    base = ["train", "--dataset", "digits", "--steps", "5", "--out", str(tmp_path / "r")]
    assert main([*base, "--dry-run", *argv]) == 2
    out, err = capsys.readouterr()
    assert message in err and out == ""
    assert main([*base, *argv]) == 2  # the same refusal without --dry-run
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main([*base, "--dry-run"]) == 0 and "# run dir:" in capsys.readouterr().out


def test_unknown_flags_name_the_subcommand_and_the_closest_flag(capsys):
    with pytest.raises(SystemExit):
        main(["lottery", "--seed", "1"])
    err = capsys.readouterr().err
    assert "sparsetorch lottery: error: unrecognized arguments: --seed 1" in err
    assert "(--seed: did you mean --seeds?)" in err
    with pytest.raises(SystemExit):
        main(["train", "--stepz=3"])
    assert "did you mean --steps?" in capsys.readouterr().err


def test_model_and_dataset_help_name_the_registries():
    from sparsetorch.data import DATASETS
    from sparsetorch.models import MODELS

    model_help = dataclasses.fields(GROUPS["model"])[0].metadata["help"]
    data_help = dataclasses.fields(GROUPS["dataset"])[0].metadata["help"]
    assert all(name in model_help for name in MODELS.names())
    assert all(name in data_help for name in DATASETS.names())


def test_train_says_what_it_loads_before_training(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path), "--no-progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    (run_dir,) = tmp_path.iterdir()
    assert err == [
        "sparsetorch train: importing torch ...",
        "sparsetorch train: loading digits ...",
        err[2],
        f"sparsetorch train: training lenet300 (dense) in {run_dir}",
    ]
    assert err[2].startswith("sparsetorch train: digits: train 128, val 50, test 50 examples")
    assert main(["train", *TINY, "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err.splitlines()[1] == (
        f"sparsetorch train: {run_dir} is finished: reusing it (delete it to train again)"
    )
    assert main(["train", *TINY, "--out", str(tmp_path), "--device", "nonsense"]) == 2
    err = capsys.readouterr().err  # refused before the run dir is looked at: one line
    assert "reusing" not in err and "device 'nonsense' is not a torch device" in err


def test_a_size_larger_than_the_data_set_warns_once(tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--train-size", "5000", "--steps", "2"]
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert warned == [
        "sparsetorch train: warning: digits train: 5000 examples asked for, it holds 1297: "
        "all are used"
    ]


def test_the_run_dir_printed_for_a_data_file_is_the_one_trained_in(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    arrays = {"x_train": torch.randn(64, 8, generator=g), "x_test": torch.randn(16, 8, generator=g)}
    arrays |= {"y_train": torch.arange(64) % 3, "y_test": torch.arange(16) % 3}
    path = tmp_path / "mine.npz"
    import numpy as np

    np.savez(path, **{k: v.numpy() for k, v in arrays.items()})
    argv = ["--dataset", str(path), "--model", "mlp", "--steps", "4", "--out", str(tmp_path / "r")]
    _, printed = dry_run(capsys, *argv)
    assert main(["train", *argv, "--no-progress"]) == 0
    err = capsys.readouterr().err
    (run_dir,) = (tmp_path / "r").iterdir()
    assert printed == str(run_dir) and f"in {run_dir}" in err
    assert main(["train", *argv]) == 0  # finished: reused, the data not loaded again
    err = capsys.readouterr().err
    assert f"{run_dir} is finished: reusing it" in err and "loading" not in err


def test_command_line_answers_without_importing_torch(tmp_path):
    """Building the parser and refusing bad flags load no torch (seconds on a busy machine)."""
    import subprocess
    import sys

    code = (
        "import sys; from sparsetorch.cli import build_parser, main; build_parser(); "
        f"rc = main(['train', '--method', 'set', '--out', {str(tmp_path)!r}]); "
        "print(rc, 'torch' in sys.modules, 'numpy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    assert "sparsity.sparsity is 0" in done.stderr
