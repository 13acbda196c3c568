"""DDP and FSDP2 on two spawned CPU ranks (gloo) against one-process references.

One session (tests/distributed/scenarios.py) runs every scenario on both ranks; the tests
here compare its results with the same training done in this process on the global batch:
RigL at 90% for 50 steps on a Fashion-MNIST slice (masks after every update equal on both
ranks and equal to the one-process masks; losses within float64 rounding), SET and GMP and
one-shot global/ERK pruning on FSDP2 shards, a DCP checkpoint of 2 ranks loaded by one
process, the runner's --distributed ddp|fsdp (with a resume from an interruption), and the
errors: a rank with another config, diverged masks, masks not re-bound after fully_shard, a
rank that never joins a collective."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import sparsetorch as st
from sparsetorch.experiments import run_state, train
from tests.distributed import scenarios
from tests.distributed.common import (
    SHORT,
    SPARSITY,
    STEPS,
    dataset,
    full_masks,
    mlp,
    runner_hparams,
    save_data,
    train_api,
)
from tests.distributed.spawn import run_ranks

WORLD = 2


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return save_data(tmp_path_factory.mktemp("data") / "fmnist.pt")


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="module")
def ranks(data_file, session_dir):
    out = session_dir
    results = run_ranks(scenarios.session, WORLD, out / "results", str(data_file), str(out))
    for rank, result in enumerate(results):
        if isinstance(result, tuple) and result[0] == "error":
            pytest.fail(f"rank {rank} failed: {result[1]}: {result[2]}")
    return results


@pytest.fixture(scope="module")
def one_process(data_file):
    data = dataset(data_file)
    out = {}
    for name, method, steps in (
        ("rigl", "rigl", STEPS),
        ("set", "set", SHORT),
        ("gmp", "gmp", SHORT),
        ("rigl_short", "rigl", SHORT),  # RigL for SHORT steps (the HSDP run)
    ):
        model = mlp()
        out[name] = train_api(method, model, model, data, steps=steps)
    return out


def assert_same_masks(got, want):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.keys() == w.keys()
        for name in g:
            assert torch.equal(g[name], w[name]), f"update {i}, {name}"


@pytest.mark.parametrize("mode", ["api_ddp", "api_fsdp"])
def test_rigl_masks_equal_on_ranks_and_to_one_process(ranks, one_process, mode):
    want = one_process["rigl"]
    assert [h["step"] for h in want["history"]] == [10, 20, 30]  # delta_t 10, T_end 37
    assert len(want["masks"]) == 1 + 3  # the random start, then each update
    for rank in range(WORLD):
        assert_same_masks(ranks[rank][mode]["masks"], want["masks"])
        assert ranks[rank][mode]["history"] == want["history"]  # counts summed over shards
        assert ranks[rank][mode]["checked"] == [3] * 3  # verify_masks after every update
    # mean of the ranks' half-batch losses = the global batch's loss
    mean = torch.tensor([r[mode]["losses"] for r in ranks], dtype=torch.float64).mean(0)
    torch.testing.assert_close(
        mean, torch.tensor(want["losses"], dtype=torch.float64), rtol=1e-12, atol=1e-12
    )
    final = want["masks"][-1]
    density = sum(int(m.sum()) for m in final.values()) / sum(m.numel() for m in final.values())
    assert abs(density - (1 - SPARSITY)) < 1e-3


@pytest.mark.parametrize("method", ["set", "gmp"])
def test_set_and_gmp_on_fsdp_shards_equal_one_process(ranks, one_process, method):
    want = one_process[method]
    assert len(want["history"]) >= 2
    for rank in range(WORLD):
        assert_same_masks(ranks[rank][f"api_fsdp_{method}"]["masks"], want["masks"])
        assert ranks[rank][f"api_fsdp_{method}"]["history"] == want["history"]


def test_fsdp_masks_are_sharded_like_their_weights(ranks):
    for rank in range(WORLD):
        weights, masks = ranks[rank]["api_fsdp"]["layouts"]
        assert weights == masks
    # the 33-row layer is cut 17 + 16: uneven shards
    shapes = [dict((n, s) for n, _, s in ranks[r]["api_fsdp"]["layouts"][1]) for r in (0, 1)]
    assert shapes[0]["3.weight"] == (17, 64) and shapes[1]["3.weight"] == (16, 64)


@pytest.mark.parametrize("distribution", ["global", "erk"])
def test_one_shot_prune_of_shards_equals_one_process(ranks, distribution):
    model = mlp()
    st.prune(model, sparsity=0.9, distribution=distribution)
    for rank in range(WORLD):
        got = ranks[rank][f"prune_{distribution}"]
        assert got["verified"] == 3
        for name, mask in full_masks(model).items():
            assert torch.equal(got["masks"][name], mask), name
        assert got["nm"][0] == "error" and "'2:4' is not supported on FSDP" in got["nm"][2]
        for result in got["on_data"]:
            assert result[0] == "error" and "runs the model on data" in result[2], result


def test_dcp_checkpoint_of_two_ranks_loads_in_one_process(ranks, session_dir):
    saved = ranks[0]["api_fsdp"]
    dcp_dir = session_dir / "dcp"
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match=r"written by 2 rank.*loaded by 1.*reshard=True"):
        st.distributed.load_checkpoint(dcp_dir, model, optimizer, reshard=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extra = st.distributed.load_checkpoint(dcp_dir, model, optimizer)
    assert any(issubclass(w.category, st.distributed.ReshardWarning) for w in caught)
    assert extra == {"step": 50}
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved["weights"][name]), name
    assert_same_masks([full_masks(model)], [saved["masks"][-1]])
    for name, param in model.named_parameters():
        assert torch.equal(optimizer.state[param]["exp_avg"], saved["exp_avg"][name]), name
    assert_same_masks([saved["reloaded"]], [saved["masks"][-1]])  # and on 2 ranks again
    assert saved["reloaded_verified"] == 3


def test_rank_with_another_config_fails_on_every_rank(ranks):
    for rank in range(WORLD):
        got = ranks[rank]["bad_config"]
        assert got["config"][:2] == ("error", "ConfigMismatch")
        assert "rank 1 differs from rank 0 in ['config.training.lr']" in got["config"][2]
        assert got["model"][:2] == ("error", "ConfigMismatch")
        assert "model.weight" in got["model"][2] and "model.bias" in got["model"][2]
        assert got["same"] is None


def test_diverged_masks_are_reported_by_layer_on_every_rank(ranks):
    for rank in range(WORLD):
        _, name, message = ranks[rank]["diverged"]["diverged"]
        assert name == "MasksDiverged"
        assert "at step 7 in ['3.weight']" in message
        assert "['1.weight', '5.weight']" not in message
        kept = message.split("kept ")[1].split(" by rank")[0]
        first, second = eval(kept)
        assert abs(first - second) == 1


def test_masks_not_rebound_after_fully_shard_are_reported(ranks):
    for rank in range(WORLD):
        got = ranks[rank]["unbound"]
        assert got["before"][:2] == ("error", "MasksDiverged")
        assert "not enforced" in got["before"][2] and "shard_masks" in got["before"][2]
        assert got["after"] == 3


def test_hsdp_replicas_train_like_one_process_and_are_compared(ranks, one_process):
    want = one_process["rigl_short"]
    for rank in range(WORLD):
        got = ranks[rank]["layouts"]
        assert got["placements"] == "(Replicate(), Shard(dim=0))"
        assert_same_masks(got["masks"], want["masks"])
        assert got["checked"] == [3, 3]
        _, name, message = got["diverged"]
        assert name == "MasksDiverged" and "in ['3.weight']" in message


def test_unsupported_placements_are_refused(ranks):
    got = ranks[0]["layouts"]
    assert got["columns"][:2] == ("error", "ValueError")
    assert "sharded on dim 0 over one mesh dim" in got["columns"][2]
    assert got["dtensor_on_plain"][:2] == ("error", "TypeError")


def test_a_rank_that_never_joins_gives_a_timeout_error(ranks):
    _, name, message = ranks[1]["timeout"]["late"]
    assert name == "TimeoutError"
    assert message.startswith("verify_masks: the other ranks did not join")
    assert ranks[0]["timeout"]["late"] is None


@pytest.fixture(scope="module")
def runner_reference(data_file):
    out = {}
    for mode, batch in (("ddp", 33), ("fsdp", 32)):
        result = train(runner_hparams(batch), model=mlp(), dataset=dataset(data_file))
        keys = ("step", "train_loss", "val_loss", "sparsity")
        rows = [{k: r[k] for k in keys} for r in result.metrics]
        out[mode] = rows, result.model.state_dict()
    return out


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])  # ddp: uneven shares of a 33 batch
def test_runner_distributed_equals_one_process(ranks, runner_reference, mode):
    rows, final = runner_reference[mode]
    for rank in range(WORLD):
        got = ranks[rank][f"runner_{mode}"]
        assert [r["step"] for r in got["rows"]] == [0, 10, 20, 30, 40, 50]
        for g, w in zip(got["rows"], rows):
            assert g["sparsity"] == w["sparsity"]
            for key in ("train_loss", "val_loss"):
                if w[key] is not None:
                    assert g[key] == pytest.approx(w[key], rel=1e-12, abs=1e-12)
    mine = ranks[0][f"runner_{mode}"]["final"]
    for name, value in final.items():
        if name.endswith("_mask"):
            assert torch.equal(mine[name], value), name
        else:
            torch.testing.assert_close(mine[name], value, rtol=1e-9, atol=1e-12)
    # a finished run keeps whole model states only, readable as a one-process run's
    run_dir = Path(ranks[0][f"runner_{mode}"]["run_dir"])
    assert all(name.startswith("model_step") for name in ranks[0][f"runner_{mode}"]["checkpoints"])
    step, state = run_state.latest_model_state(run_dir)
    assert step == 50 and all(torch.equal(state[k], v) for k, v in mine.items())


@pytest.mark.parametrize("mode", ["fsdp"])  # DDP resumes through the same DCP code
def test_runner_resumes_an_interrupted_distributed_run(ranks, mode):
    for rank in range(WORLD):
        got = ranks[rank][f"runner_{mode}"]
        assert got["cut"] == "interrupted"  # KeyboardInterrupt after step 25
        assert [r["step"] for r in got["resumed_rows"]][-1] == 50
    full, resumed = ranks[0][f"runner_{mode}"]["final"], ranks[0][f"runner_{mode}"]["resumed_final"]
    for name, value in full.items():
        assert torch.equal(resumed[name], value), name
    for rank in range(WORLD):
        got = ranks[rank][f"runner_{mode}"]
        want = {r["step"]: r for r in got["rows"]}
        for row in got["resumed_rows"]:
            assert row["val_loss"] == want[row["step"]]["val_loss"], row["step"]
