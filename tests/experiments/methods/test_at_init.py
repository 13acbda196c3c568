"""The at-init methods as runner hooks (--method snip|grasp|synflow|random) and on the CLI."""

import json

import pytest
import torch

from sparsetorch.algorithms.at_init.base import mask_seed
from sparsetorch.algorithms.config import SynFlowConfig
from sparsetorch.data import load
from sparsetorch.experiments import Hparams, TrainContext, train
from sparsetorch.experiments.methods import method, method_names
from sparsetorch.masking import get_masks


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def _hp(method, sparsity=0.9, distribution="global", seed=0, **options):
    hp = Hparams()
    hp.dataset.name = "digits"
    hp.dataset.train_size, hp.dataset.val_size, hp.dataset.test_size = 120, 40, 40
    hp.training.steps, hp.training.batch_size, hp.training.seed = 4, 30, seed
    hp.sparsity.method, hp.sparsity.sparsity = method, sparsity
    hp.sparsity.distribution = distribution
    hp.sparsity.options = options
    return hp


def test_registered_in_methods():
    assert {"snip", "grasp", "synflow", "random"} <= set(method_names())


@pytest.mark.parametrize(
    ("method", "distribution", "options"),
    [
        ("snip", "global", {}),
        ("snip", "erk", {"batches": 2}),
        ("grasp", "global", {"temperature": 50.0}),
        ("synflow", "global", {"iterations": 5}),
        ("random", "uniform", {}),
        ("random", "erk", {}),
    ],
)
def test_static_mask_with_exact_sparsity(digits, method, distribution, options):
    model_result = train(_hp(method, 0.9, distribution, **options), dataset=digits)
    model = model_result.model
    masks = get_masks(model)
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * total)
    # static: every evaluation (step 0 after pruning, the final one) sees the same sparsity
    sparsities = {row["sparsity"] for row in model_result.metrics}
    assert len(sparsities) == 1 and abs(sparsities.pop() - 0.9) < 1e-5
    for name, mask in masks.items():
        weight = model.get_parameter(name)
        assert torch.equal(weight[~mask], torch.zeros(int((~mask).sum())))


@pytest.mark.parametrize("method", ["synflow", "random"])
def test_same_seed_same_run_bitwise(digits, method):
    options = {"iterations": 3} if method == "synflow" else {}
    a, b = (train(_hp(method, 0.95, "erk", **options), dataset=digits) for _ in range(2))
    for name, mask in get_masks(a.model).items():
        assert torch.equal(mask, get_masks(b.model)[name])
        assert torch.equal(a.model.get_parameter(name), b.model.get_parameter(name))

    def strip(rows):
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]

    assert strip(a.metrics) == strip(b.metrics)


def test_masks_of_step_zero_equal_library_call(digits):
    from sparsetorch.algorithms.at_init import snip
    from sparsetorch.experiments import build_model, prepare_dataset

    hp = _hp("snip", 0.8)
    result = train(hp, dataset=digits)
    data = prepare_dataset(hp.dataset, digits)
    model = build_model(hp, data.input_shape, data.num_classes)
    # the runner's sample batch is the first training batch of the seeded data order
    from sparsetorch.experiments.data_order import batch_indices, epoch_order

    idx = batch_indices(epoch_order(len(data.train), hp.training.seed, 0), 0, 30)
    snip(model, (data.train.x[idx], data.train.y[idx]), 0.8)
    expected = get_masks(model)
    assert all(torch.equal(m, expected[n]) for n, m in get_masks(result.model).items())


def test_random_mask_depends_on_seed_not_on_init(digits):
    a = get_masks(train(_hp("random", 0.9, "uniform", seed=0), dataset=digits).model)
    b = get_masks(train(_hp("random", 0.9, "uniform", seed=1), dataset=digits).model)
    assert any(not torch.equal(a[n], b[n]) for n in a)
    assert mask_seed(0) != 0 and mask_seed(0) == mask_seed(0) and mask_seed(0) != mask_seed(1)


def test_resume_does_not_reprune(digits):
    hook = method("snip")(_hp("snip").sparsity.config())
    assert hook.state_dict() == {"done": False}
    hook.load_state_dict({"done": True})
    ctx = TrainContext(
        model=torch.nn.Linear(3, 2), optimizer=None, data=None, total_steps=1,
        steps_per_epoch=1, seed=0, sample_batch=None,
    )  # fmt: skip
    hook.on_train_start(ctx)  # would fail (no sample batch) if it pruned again
    assert get_masks(ctx.model) == {}
    with pytest.raises(ValueError, match="state must be"):
        hook.load_state_dict({"step": 3})


def test_run_dir_resume_keeps_masks(digits, tmp_path):
    hp = _hp("synflow", 0.9, iterations=3)
    hp.training.eval_every = 2
    first = train(hp, out_dir=tmp_path, dataset=digits)
    resume = first.run_dir / "result.json"
    resume.unlink()  # pretend the run was interrupted after its last checkpoint
    again = train(hp, out_dir=tmp_path, dataset=digits)
    for name, mask in get_masks(first.model).items():
        assert torch.equal(mask, get_masks(again.model)[name])


def test_bad_options_and_inputs(digits):
    with pytest.raises(
        ValueError, match=r"method 'snip' has no option\(s\) \['iterations'\]; known: batches"
    ):
        train(_hp("snip", iterations=3), dataset=digits)
    with pytest.raises(ValueError, match="batches must be an int >= 1"):
        train(_hp("grasp", batches=0), dataset=digits)
    with pytest.raises(TypeError, match="iterations must be an int >= 1"):
        train(_hp("synflow", iterations=2.5), dataset=digits)
    with pytest.raises(ValueError, match="need 3000 training examples, the split has 120"):
        train(_hp("snip", batches=100), dataset=digits)
    with pytest.raises(ValueError, match="would empty layer"):
        train(_hp("snip", 0.9999), dataset=digits)
    hook = method("synflow")(SynFlowConfig())
    ctx = TrainContext(
        model=torch.nn.Embedding(10, 4), optimizer=None, data=None, total_steps=1,
        steps_per_epoch=1, seed=0, sample_batch=(torch.zeros(2, 5, dtype=torch.long),) * 2,
    )  # fmt: skip
    with pytest.raises(ValueError, match="token ids"):
        hook.on_train_start(ctx)


def test_cli_train_method_snip_erk(tmp_path):
    from sparsetorch.cli import main

    argv = [
        "train", "--method", "snip", "--sparsity", "0.9", "--distribution", "erk",
        "--dataset", "digits", "--train-size", "60", "--val-size", "20", "--test-size", "20",
        "--steps", "2", "--batch-size", "30", "--out", str(tmp_path), "--threads", "1",
    ]  # fmt: skip
    assert main(argv) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    result = json.loads((run / "result.json").read_text())
    layers = result["layers"]
    kept = sum(info["nnz"] for info in layers.values())
    total = sum(info["numel"] for info in layers.values())
    assert kept == round(0.1 * total)
    from sparsetorch.distributions import get

    shapes = {n: info["shape"] for n, info in layers.items()}
    erk = get("erk").densities(shapes, 0.1)
    for name, info in layers.items():
        assert abs(info["nnz"] - erk[name] * info["numel"]) <= 1, name


def _fresh_lenet(seed):
    from sparsetorch.models import build

    torch.manual_seed(seed)
    return build("lenet300", input_shape=(1, 28, 28), num_classes=10)


def test_cli_prune_method_snip_and_random_save_the_masks(tmp_path, capsys):
    from sparsetorch.algorithms.at_init import random_prune, snip
    from sparsetorch.cli import main
    from sparsetorch.masking import masks_from_state_dict

    base = ["prune", "--model", "lenet300", "--sparsity", "0.95", "--seed", "3"]
    snip_out, random_out = tmp_path / "snip.pt", tmp_path / "random.pt"
    data = ["--data", "digits", "--batch-size", "32"]
    assert main([*base, "--method", "snip", *data, "--out", str(snip_out)]) == 0
    assert (
        main([*base, "--method", "random", "--distribution", "erk", "--out", str(random_out)]) == 0
    )
    assert "fc1" in capsys.readouterr().out  # the report was printed
    digits = load("digits")
    idx = torch.randperm(len(digits.train), generator=torch.Generator().manual_seed(3))[:32]
    expected = {
        snip_out: get_masks(snip(_fresh_lenet(3), (digits.train.x[idx], digits.train.y[idx]), 0.95)),
        random_out: get_masks(random_prune(_fresh_lenet(3), 0.95, generator=mask_seed(3), distribution="erk")),
    }  # fmt: skip
    for path, masks in expected.items():
        saved = masks_from_state_dict(torch.load(path, weights_only=True))
        assert saved.keys() == masks.keys()
        assert all(torch.equal(saved[n], masks[n]) for n in masks)


def test_prune_at_init_by_name(digits):
    from sparsetorch.algorithms.at_init import AT_INIT, prune_at_init, synflow

    assert AT_INIT.names() == ["grasp", "random", "snip", "synflow"]
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Linear(8, 3))
    by_name = get_masks(prune_at_init("synflow", net, 0.8, input_shape=(1, 4, 4)))
    net2 = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Linear(8, 3))
    net2.load_state_dict(
        {k: v for k, v in net.state_dict().items() if not k.endswith("_mask")}, strict=False
    )
    direct = get_masks(synflow(net2, (1, 4, 4), 0.8))
    assert all(torch.equal(by_name[n], direct[n]) for n in direct)
    with pytest.raises(ValueError, match="unknown at-init method 'snipp'; known: grasp, random"):
        prune_at_init("snipp", net, 0.5)
    with pytest.raises(ValueError, match="scores on data"):
        prune_at_init("grasp", net, 0.5)
    with pytest.raises(ValueError, match="needs input_shape"):
        prune_at_init("synflow", net, 0.5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--checkpoint is required"),
        (["--method", "snip", "--criterion", "taylor"], "not both"),
        (
            ["--method", "random", "--distribution", "uniform", "--sparsity", "0.9999"],
            "would empty",
        ),
    ],
)
def test_cli_prune_method_errors(extra, message, capsys):
    from sparsetorch.cli import main

    args = ["prune", "--model", "lenet300", "--sparsity", "0.9", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
