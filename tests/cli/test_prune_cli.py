import pytest
import torch

import sparsetorch as st
from sparsetorch.cli import build_parser, main
from sparsetorch.masking import masks_from_state_dict
from sparsetorch.models import build
from sparsetorch.patterns import get


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "lenet.pt"
    torch.save(build("lenet300").state_dict(), path)
    return path


SIZES = {"fc1.weight": 784 * 300, "fc2.weight": 300 * 100, "fc3.weight": 100 * 10}


def test_prune_2_4_at_90_percent_prints_the_report_and_saves(checkpoint, tmp_path, capsys):
    out = tmp_path / "pruned.pt"
    args = ["prune", "--checkpoint", str(checkpoint), "--model", "lenet300"]
    assert main([*args, "--sparsity", "0.9", "--pattern", "2:4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fc1.weight" in printed and "total" in printed and f"pruned model: {out}" in printed
    assert "0.1000" in printed  # total density
    state = torch.load(out, weights_only=True)
    masks = masks_from_state_dict(state)
    assert sorted(masks) == sorted(SIZES)
    assert all(get("2:4").is_valid(m) for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * sum(SIZES.values()))
    # the same as the library call on the same weights
    model = build("lenet300")
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    st.prune(model, 0.9, pattern="2:4")
    assert all(torch.equal(st.masks(model)[n], masks[n]) for n in SIZES)


def test_safetensors_in_and_out_and_pruning_continues_from_saved_masks(
    checkpoint, tmp_path, capsys
):
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    base = ["prune", "--model", "lenet300", "--distribution", "uniform"]
    assert (
        main([*base, "--checkpoint", str(checkpoint), "--sparsity", "0.5", "--out", str(first)])
        == 0
    )
    assert main([*base, "--checkpoint", str(first), "--sparsity", "0.8", "--out", str(second)]) == 0
    capsys.readouterr()
    a, b = build("lenet300"), build("lenet300")
    st.load(first, a)
    st.load(second, b)
    for name, size in SIZES.items():
        assert int(st.masks(b)[name].sum()) == round(0.2 * size)
        assert bool((st.masks(b)[name] <= st.masks(a)[name]).all())  # pruned stay pruned


def test_fixed_density_pattern_without_sparsity_exclude_and_random(checkpoint, capsys):
    args = ["prune", "--checkpoint", str(checkpoint), "--model", "lenet300", "--pattern", "1:4"]
    assert main([*args, "--exclude", "fc3", "--criterion", "random", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("fc1.weight"))
    assert "0.2500" in row
    row = next(line for line in lines if line.startswith("fc3.weight"))
    assert "1.0000" in row


@pytest.mark.parametrize("criterion", ["taylor", "snip", "synflow"])
def test_data_driven_criteria_score_on_a_batch(checkpoint, tmp_path, capsys, criterion):
    out = tmp_path / "out.pt"
    args = ["prune", "--checkpoint", str(checkpoint), "--model", "lenet300", "--sparsity", "0.7"]
    extra = ["--criterion", criterion, "--data", "digits", "--batch-size", "16", "--out", str(out)]
    assert main([*args, *extra]) == 0
    assert "total" in capsys.readouterr().out
    # the same masks as the library call on the same batch
    data = st.data.load("digits")
    idx = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:16]
    model = build("lenet300")
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    st.prune(model, 0.7, criterion=criterion, batch=(data.train.x[idx], data.train.y[idx]))
    saved = masks_from_state_dict(torch.load(out, weights_only=True))
    assert all(torch.equal(st.masks(model)[n], saved[n]) for n in SIZES)


def test_input_shape_and_num_classes_build_the_right_model(tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.save(build("lenet300", input_shape=(1, 8, 8), num_classes=4).state_dict(), path)
    args = ["prune", "--checkpoint", str(path), "--model", "lenet300", "--sparsity", "0.5"]
    assert main([*args, "--input-shape", "1", "8", "8", "--num-classes", "4"]) == 0
    assert "300x64" in capsys.readouterr().out  # fc1 of a 1x8x8-input LeNet
    assert main(args) == 2  # the default 1x28x28 model does not fit this checkpoint
    assert "does not fit the model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--pattern", "dots", "--sparsity", "0.5"], "unknown pattern 'dots'; known:"),
        (["--sparsity", "1.5"], r"sparsity must be in [0, 1)"),
        (["--pattern", "unstructured"], "sparsity is required"),
        (["--sparsity", "0.5", "--exclude", "fc9"], "exclude names no module"),
        (["--sparsity", "0.5", "--out", "."], "--out '.' is a directory; name the file"),
        (
            ["--sparsity", "0.5", "--criterion", "taylor", "--batch-size", "0"],
            "--batch-size must be >= 1",
        ),
    ],
)
def test_errors_exit_2_with_one_line(checkpoint, capsys, extra, message):
    assert main(["prune", "--checkpoint", str(checkpoint), "--model", "lenet300", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsetorch prune: error:") and message in err


def test_missing_checkpoint_and_not_a_state_dict(tmp_path, capsys):
    assert (
        main(
            [
                "prune",
                "--checkpoint",
                str(tmp_path / "nope.pt"),
                "--model",
                "lenet300",
                "--sparsity",
                "0.5",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], bad)
    assert (
        main(["prune", "--checkpoint", str(bad), "--model", "lenet300", "--sparsity", "0.5"]) == 2
    )
    assert "does not hold a state_dict" in capsys.readouterr().err
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    for path, message in ((text, "torch.load refused it"), (tmp_path, "is a directory")):
        argv = ["prune", "--checkpoint", str(path), "--model", "lenet300", "--sparsity", "0.5"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_flags_are_taken_as_written_not_abbreviated(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["lottery", "--seed", "3"])  # lottery has --seeds only
    assert "unrecognized arguments: --seed 3" in capsys.readouterr().err


def test_help_shows_every_flag():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["prune"]
    text = sub.format_help()
    for flag in (
        "--checkpoint",
        "--model",
        "--input-shape",
        "--num-classes",
        "--sparsity",
        "--pattern",
        "--criterion",
        "--distribution",
        "--exclude",
        "--data",
        "--batch-size",
        "--seed",
        "--out",
        "--min-layer-density",
        "--indivisible",
    ):
        assert flag in text
    assert "N:M" in text and "erk" in text and "taylor" in text


def test_floor_and_indivisible_flags_reach_st_prune(checkpoint, tmp_path, capsys):
    args = ["prune", "--checkpoint", str(checkpoint), "--model", "lenet300"]
    out = tmp_path / "a.pt"
    assert main([*args, "--sparsity", "0.999", "--min-layer-density", "0", "--out", str(out)]) == 0
    bare = masks_from_state_dict(torch.load(out, weights_only=True))
    assert main([*args, "--sparsity", "0.999", "--out", str(out)]) == 0
    floored = masks_from_state_dict(torch.load(out, weights_only=True))
    assert sum(int(m.sum()) for m in bare.values()) == sum(int(m.sum()) for m in floored.values())
    model = build("lenet300")
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    expected = st.compute_masks(model, 0.999)  # the library's default floor
    assert all(torch.equal(floored[n], expected[n]) for n in SIZES)
    # lenet300's fc3 has 10 rows: no 4x4 blocks; refused with --indivisible error
    block = [*args, "--sparsity", "0.5", "--pattern", "block4x4", "--distribution", "uniform"]
    assert main([*block, "--indivisible", "error"]) == 2
    assert "does not tile 1 of the prunable weights" in capsys.readouterr().err
    assert main(block) == 0  # the default skips fc3: one warning line, not Python's
    err = capsys.readouterr().err
    assert err.startswith("sparsetorch prune: warning: pattern 'block4x4' does not tile 1")
    assert err.count("\n") == 1 and "UserWarning" not in err and ".py:" not in err
    assert main([*args, "--sparsity", "0.5", "--min-layer-density", "lots"]) == 2
    assert "--min-layer-density must be 'auto' or a number" in capsys.readouterr().err


def test_drop_masks_starts_over_from_a_masked_checkpoint(checkpoint, tmp_path, capsys):
    first = tmp_path / "90.safetensors"
    base = ["prune", "--model", "lenet300", "--distribution", "uniform"]
    assert (
        main([*base, "--checkpoint", str(checkpoint), "--sparsity", "0.9", "--out", str(first)])
        == 0
    )
    capsys.readouterr()
    # continuing: a lower sparsity cannot be reached, and the error says how to start over
    assert main([*base, "--checkpoint", str(first), "--sparsity", "0.5"]) == 2
    out, err = capsys.readouterr()
    assert "continuing from the masks saved in" in out and "sparsity 0.9000" in out
    assert "remain unpruned" in err and "--drop-masks prunes the checkpoint's weights" in err
    # another pattern after dropping the masks: 2:4 over the 90%-pruned weights
    second = tmp_path / "24.safetensors"
    argv = [*base, "--checkpoint", str(first), "--drop-masks", "--pattern", "2:4"]
    assert main([*argv, "--out", str(second)]) == 0
    out = capsys.readouterr().out
    assert "dropped the masks of 3 parameter(s)" in out
    total = sum(SIZES.values())
    # the table counts nonzeros (about 10%); the masks saved keep half the positions
    assert f"masks keep {total // 2} of {total} weights (density 0.5000)" in out
    pruned, again = build("lenet300"), build("lenet300")
    st.load(first, pruned)
    st.load(second, again)
    st.remove_masks(pruned)
    st.prune(pruned, pattern="2:4", distribution="uniform")  # the library on the same weights
    for name in SIZES:
        assert torch.equal(st.masks(again)[name], st.masks(pruned)[name]), name
        assert get("2:4").is_valid(st.masks(again)[name])
    assert main(["prune", "--model", "lenet300", "--method", "random", "--sparsity", "0.5",
                 "--drop-masks"]) == 2  # fmt: skip
    assert "--drop-masks drops the masks of --checkpoint" in capsys.readouterr().err


def test_help_names_are_the_registries():
    from sparsetorch.cli.prune import NAMES
    from sparsetorch.criteria import CRITERIA
    from sparsetorch.distributions import DISTRIBUTIONS
    from sparsetorch.patterns import PATTERNS

    def builtin(registry):  # a user's (or a docs example's) registrations are not listed
        named = [n for n, f in registry._named.items() if f.__module__.startswith("sparsetorch.")]
        return (*sorted(named), *(example for _, example, _ in registry._parsed))

    assert {
        "criterion": builtin(CRITERIA),
        "distribution": builtin(DISTRIBUTIONS),
        "pattern": builtin(PATTERNS),
    } == NAMES
