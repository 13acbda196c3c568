"""IMP end to end on a Fashion-MNIST slice: rewinding, controls, resume, summary, bad input."""

import json

import pytest
import torch

import sparsetorch as st
from sparsetorch.experiments import Hparams
from sparsetorch.experiments.loop import Loop
from sparsetorch.experiments.rundir import RunDir
from sparsetorch.experiments.runner import load_run
from sparsetorch.lottery import IMP, IMPConfig
from sparsetorch.lottery.rounds import units_after
from sparsetorch.lottery.seeds import derive_seed
from sparsetorch.masking import SUFFIX

REWIND = 10
WEIGHTS = ("fc1.weight", "fc2.weight", "fc3.weight")


@pytest.fixture(scope="module")
def data():
    return st.data.load("fashion-mnist").slice(240, 60, 60)


def tiny_hparams() -> Hparams:
    hp = Hparams()
    hp.training.steps = 30
    hp.training.eval_every = 10
    hp.training.batch_size = 24
    return hp


def tiny_lottery(**kw) -> IMPConfig:
    settings = dict(rounds=2, prune_rate=0.5, layer_rates={"output": 0.2}, rewind=str(REWIND))
    settings.update(kw)
    return IMPConfig(**settings)


def metrics(run_dir):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in RunDir(run_dir).read_metrics()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    """One seed, two rounds, both controls."""
    imp = IMP(
        tiny_hparams(),
        tiny_lottery(controls=("reinit", "random-prune")),
        out_dir=tmp_path_factory.mktemp("lottery"),
        dataset=data,
        progress=False,
    )
    return imp, imp.run()


def state(imp, round_, branch="ticket", step=None):
    result = load_run(imp.dir.round_dir(0, round_, branch))
    return result.state_at(REWIND if step is None else step), result


def test_round_fractions_follow_closed_form(finished):
    imp, summary = finished
    for r in (1, 2):
        masks = imp.dir.load_masks(0, r)
        assert sorted(masks) == list(WEIGHTS)
        for name, mask in masks.items():
            rate = 0.2 if name == "fc3.weight" else 0.5
            assert int(mask.sum()) == units_after(rate, r, mask.numel())
    ticket = {row["round"]: row for row in summary["rows"] if row["branch"] == "ticket"}
    sizes = {"fc1.weight": 784 * 300, "fc2.weight": 300 * 100, "fc3.weight": 100 * 10}
    kept = sum(units_after(0.2 if n == "fc3.weight" else 0.5, 2, s) for n, s in sizes.items())
    assert ticket[2]["remaining"] == kept / sum(sizes.values())
    assert ticket[0]["remaining"] == 1.0


def test_rewinding_restores_theta_k_exactly_on_surviving_weights(finished):
    imp, _ = finished
    theta_k, dense = state(imp, 0)
    assert dense.saved_steps == [0, REWIND, 30]
    for r in (1, 2):
        start, result = state(imp, r)
        masks = imp.dir.load_masks(0, r)
        assert result.metrics[0]["step"] == REWIND  # retraining starts at the rewind step
        for name, value in theta_k.items():
            if name in masks:
                assert torch.equal(start[name], value * masks[name])
                assert torch.equal(start[name + SUFFIX], masks[name])
            else:  # biases are rewound too
                assert torch.equal(start[name], value)
        # and the trained weights moved away from theta_k but stayed inside the mask
        final = result.state_at(30)
        for name, mask in masks.items():
            assert not torch.equal(final[name], start[name])
            assert not bool(final[name][~mask].any())


def test_rewind_to_init_starts_from_theta_0(tmp_path, data):
    imp = IMP(
        tiny_hparams(),
        tiny_lottery(rounds=1, rewind="init"),
        out_dir=tmp_path,
        dataset=data,
        progress=False,
    )
    imp.run()
    theta_0 = load_run(imp.dir.round_dir(0, 0)).state_at(0)
    result = load_run(imp.dir.round_dir(0, 1))
    start, masks = result.state_at(0), imp.dir.load_masks(0, 1)
    for name, value in theta_0.items():
        expected = value * masks[name] if name in masks else value
        assert torch.equal(start[name], expected)
    # the model's own init under the run's seed is theta_0
    fresh = st.experiments.build_model(imp.seed_hparams(0), data.input_shape, data.num_classes)
    assert all(torch.equal(v, theta_0[k]) for k, v in fresh.state_dict().items())


def test_reinit_control_keeps_masks_with_a_fresh_init(finished):
    imp, _ = finished
    theta_k, _ = state(imp, 0)
    for r in (1, 2):
        ticket = imp.dir.load_masks(0, r)
        assert all(torch.equal(m, ticket[k]) for k, m in imp.dir.load_masks(0, r, "reinit").items())
        start, _ = state(imp, r, "reinit")
        fresh = imp.fresh_init(derive_seed(0, "reinit", r))
        for name, value in fresh.items():
            expected = value * ticket[name] if name in ticket else value
            assert torch.equal(start[name], expected)
        assert not torch.equal(start["fc1.weight"], theta_k["fc1.weight"] * ticket["fc1.weight"])


def test_random_prune_control_same_layer_sparsity_random_masks_theta_k(finished):
    imp, _ = finished
    theta_k, _ = state(imp, 0)
    for r in (1, 2):
        ticket = imp.dir.load_masks(0, r)
        random = imp.dir.load_masks(0, r, "random-prune")
        for name, mask in random.items():
            assert int(mask.sum()) == int(ticket[name].sum())
            assert not torch.equal(mask, ticket[name])
        start, _ = state(imp, r, "random-prune")
        for name, value in theta_k.items():
            expected = value * random[name] if name in random else value
            assert torch.equal(start[name], expected)


def test_summary_files(finished):
    imp, summary = finished
    assert {(r["branch"], r["round"]) for r in summary["rows"]} == {
        ("ticket", 0),
        ("ticket", 1),
        ("ticket", 2),
        ("reinit", 1),
        ("reinit", 2),
        ("random-prune", 1),
        ("random-prune", 2),
    }
    png = (imp.path / "lottery.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    table = (imp.path / "lottery.md").read_text()
    assert table.count("\n| ") == 4  # header + 3 rounds
    saved = json.loads((imp.path / "summary.json").read_text())["rows"]
    assert len(saved) == len(summary["rows"])
    # the table's accuracy is the early-stop evaluation of the round's metrics
    rows = RunDir(imp.dir.round_dir(0, 1)).read_metrics()
    best = min(rows, key=lambda r: (r["val_loss"], r["step"]))
    ticket1 = next(r for r in summary["rows"] if r["branch"] == "ticket" and r["round"] == 1)
    assert ticket1["es_acc"] == best["test_acc"] and ticket1["es_step"] == best["step"]


def test_killed_run_resumes_bitwise(tmp_path, data, finished, monkeypatch):
    reference, _ = finished
    lottery = tiny_lottery()  # controls resume the same way: each is an ordinary run
    imp = IMP(tiny_hparams(), lottery, run_dir=tmp_path / "run", dataset=data, progress=False)
    original = Loop.batch
    seen: dict[str, set[int]] = {}

    def batch(self, step):  # records the steps each round trains; dies in round 1 at step 25
        seen.setdefault(self.run.path.name, set()).add(step)
        if self.run.path.name == "round01" and step == 25 and dying:
            raise KeyboardInterrupt("killed")
        return original(self, step)

    monkeypatch.setattr(Loop, "batch", batch)
    dying = True
    with pytest.raises(KeyboardInterrupt):
        imp.run()
    assert not RunDir(imp.dir.round_dir(0, 1)).is_complete()
    assert (imp.dir.round_dir(0, 1) / "checkpoints" / "resume.pt").is_file()  # saved at step 20
    dying, seen = False, {}
    IMP(tiny_hparams(), lottery, run_dir=tmp_path / "run", dataset=data, progress=False).run()
    # round 0 reused (not trained); round 1 resumed at its step-20 checkpoint; round 2 whole
    assert "round00" not in seen
    assert set(range(20, 30)) <= seen["round01"] and not seen["round01"] & set(range(10, 20))
    assert set(range(10, 30)) <= seen["round02"]
    for r in (0, 1, 2):
        a, b = reference.dir.round_dir(0, r), imp.dir.round_dir(0, r)
        assert metrics(a) == metrics(b)
        final_a, final_b = load_run(a).state_at(30), load_run(b).state_at(30)
        assert all(torch.equal(v, final_b[k]) for k, v in final_a.items())


def test_resume_with_changed_hparams_is_refused(finished, data):
    imp, _ = finished
    hp = tiny_hparams()
    hp.training.lr = 0.01
    with pytest.raises(
        ValueError, match=r"other hparams.*training\.lr: 0\.0012 \(default\) -> 0\.01"
    ):
        IMP(hp, tiny_lottery(prune_rate=0.4), run_dir=imp.path, dataset=data).run()
    # more rounds, seeds or controls extend the run instead
    extended = IMP(tiny_hparams(), tiny_lottery(rounds=1), run_dir=imp.path, dataset=data)
    assert extended.run()["rows"]


def test_bad_input(tmp_path, data):
    with pytest.raises(ValueError, match=r"prune_rate must be in \(0, 1\)"):
        tiny_lottery(prune_rate=1.0).validate()
    with pytest.raises(ValueError, match=r"rewind 30 is step 30, beyond the training length"):
        IMP(tiny_hparams(), tiny_lottery(rewind="30"), out_dir=tmp_path, dataset=data).run()
    with pytest.raises(ValueError, match=r"rewind 2ep is step 20, beyond.*below 20 steps"):
        hp = tiny_hparams()  # 240 / 24 = 10 steps per epoch
        hp.training.steps = None
        hp.training.epochs = 2
        IMP(hp, tiny_lottery(rewind="2ep"), out_dir=tmp_path, dataset=data).plan()
    with pytest.raises(ValueError, match=r"round 4 would prune fc3\.weight"):
        lt = tiny_lottery(rounds=5, layer_rates={"output": 0.9})
        IMP(tiny_hparams(), lt, out_dir=tmp_path, dataset=data).run()
    with pytest.raises(ValueError, match=r"exactly one pruning round"):
        IMPConfig(rounds=3, pattern="2:4").validate()
    with pytest.raises(ValueError, match=r"fixed density.*prune_rate"):
        IMPConfig(rounds=1, pattern="2:4", prune_rate=0.2).validate()
    with pytest.raises(ValueError, match=r"method 'dense'"):
        hp = tiny_hparams()
        hp.sparsity.method = "gmp"
        IMP(hp, tiny_lottery(), out_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was written by the refused runs


def test_nm_ticket_is_one_shot_to_the_full_nm_mask(tmp_path, data):
    lottery = IMPConfig(rounds=1, pattern="2:4", rewind="init", controls=("random-prune",))
    imp = IMP(tiny_hparams(), lottery, out_dir=tmp_path, dataset=data, progress=False)
    summary = imp.run()
    dense = load_run(imp.dir.round_dir(0, 0)).state_at(30)
    for branch in ("ticket", "random-prune"):
        masks = imp.dir.load_masks(0, 1, branch)
        for name in WEIGHTS:
            groups = masks[name].reshape(masks[name].shape[0], -1, 4)  # (out, in/4, 4)
            assert torch.equal(groups.sum(-1), torch.full(groups.shape[:2], 2))
    ticket = imp.dir.load_masks(0, 1)
    w = dense["fc2.weight"].abs().reshape(100, -1, 4)
    kept = ticket["fc2.weight"].reshape(100, -1, 4)
    assert bool(
        (
            torch.where(kept, w, torch.inf).amin(-1) >= torch.where(kept, -torch.inf, w).amax(-1)
        ).all()
    )
    assert {r["remaining"] for r in summary["rows"] if r["round"] == 1} == {0.5}


def test_a_layer_kept_dense_is_not_checked_against_the_pattern(tmp_path, data):
    """LeNet-300-100's output layer (10 x 100) has no 4x4 blocks: a block ticket is refused
    unless that layer's rate is 0 (kept dense)."""
    with pytest.raises(ValueError, match=r"pattern 'block4x4' on fc3\.weight"):
        lt = tiny_lottery(rounds=1, pattern="block4x4", layer_rates={})
        IMP(tiny_hparams(), lt, out_dir=tmp_path, dataset=data).plan()
    lt = tiny_lottery(rounds=1, pattern="block4x4", layer_rates={"output": 0})
    rates = IMP(tiny_hparams(), lt, out_dir=tmp_path, dataset=data).plan()["rates"]
    assert rates == {"fc1.weight": 0.5, "fc2.weight": 0.5, "fc3.weight": 0.0}
