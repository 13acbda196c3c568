"""What each spawned rank does (tests/distributed/test_ranks.py checks the results): one
2-rank gloo session runs every scenario in turn, so the process start-up is paid once.

Every scenario returns plain data (tensors, numbers, strings); an expected error is returned
as ``("error", type name, message)`` by :func:`caught`."""

from __future__ import annotations

import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

import sparsetorch as st
from sparsetorch import masking
from sparsetorch.distributed import (
    check_same_config,
    ddp,
    fsdp,
    load_checkpoint,
    save_checkpoint,
    shard_masks,
    verify_masks,
)
from sparsetorch.experiments import TrainHook, train
from tests.distributed.common import (
    SHORT,
    STEPS,
    dataset,
    full,
    full_masks,
    mlp,
    runner_hparams,
    train_api,
)


def caught(fn, *args, **kwargs) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))


def mesh():
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh("cpu", (dist.get_world_size(),))


# ------------------------------------------------------------------ Python API
def api_ddp(rank: int, world: int, data) -> dict:
    model = mlp()
    return train_api("rigl", model, ddp(model), data, rank, world, verify=verify_masks)


def api_fsdp(rank: int, world: int, data, method: str, ckpt: Path | None = None) -> dict:
    model = fsdp(mlp(), mesh=mesh())
    steps = STEPS if method == "rigl" else SHORT
    out = train_api(method, model, model, data, rank, world, verify=verify_masks, steps=steps)
    weights, masks = [], []
    for full_name, module, name in masking.named_masked(model):
        param, mask = module._parameters[name], module._buffers[name + masking.SUFFIX]
        weights.append((full_name, tuple(param.placements), tuple(param.to_local().shape)))
        masks.append((full_name, tuple(mask.placements), tuple(mask.to_local().shape)))
    out["layouts"] = (weights, masks)
    if ckpt is not None:  # the final state, sharded, for the one-process loading test
        optimizer = torch.optim.Adam(model.parameters(), lr=0.0)  # moments, weights unmoved
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
        save_checkpoint(ckpt, model, optimizer, extra={"step": STEPS})
        out["weights"] = {k: full(v) for k, v in model.state_dict().items()}
        out["exp_avg"] = {
            n: full(optimizer.state[p]["exp_avg"]) for n, p in model.named_parameters()
        }
        # the same checkpoint back into a freshly sharded model on these 2 ranks
        again = fsdp(mlp(), mesh=mesh())
        load_checkpoint(ckpt, again, torch.optim.Adam(again.parameters(), lr=1e-3))
        out["reloaded"] = full_masks(again)
        out["reloaded_verified"] = verify_masks(again)
    return out


def api_prune(rank: int, world: int, distribution: str) -> dict:
    # global: every Linear its own FSDP unit (the default); erk: one unit, the root
    model = fsdp(mlp(), mesh=mesh(), units=None if distribution == "global" else [])
    st.prune(model, sparsity=0.9, distribution=distribution)
    second = caught(st.prune, model, sparsity=0.95, pattern="2:4")
    x, y = torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.int64)
    # scores from running a sharded model would be wrong: refused alike on every rank
    on_data = [
        caught(st.prune, model, sparsity=0.95, criterion="snip", batch=(x, y)),
        caught(st.prune, model, sparsity=0.95, criterion="gradient", batch=(x, y)),
        caught(st.synflow, model, None, 0.95, inputs=x),
    ]
    return {"masks": full_masks(model), "verified": verify_masks(model), "nm": second,
            "on_data": on_data}  # fmt: skip


# ------------------------------------------------------------------ bad input
def bad_config(rank: int, world: int) -> dict:
    config = {"training": {"lr": 1e-3 * (1 + rank)}, "model": "mlp"}
    differs = caught(check_same_config, config)
    model = nn.Linear(3, 2 + rank)
    shapes = caught(check_same_config, {"same": True}, model)
    return {"config": differs, "model": shapes, "same": caught(check_same_config, {"a": 1})}


def diverged(rank: int, world: int) -> dict:
    model = mlp()
    st.prune(model, sparsity=0.9)
    if rank == 1:
        mask = model[3].weight_sparsity_mask
        mask.view(-1)[7] = ~mask.view(-1)[7]
    return {"diverged": caught(verify_masks, model, where="step 7")}


def unbound(rank: int, world: int) -> dict:
    from torch.distributed.fsdp import fully_shard

    model = mlp()
    st.prune(model, sparsity=0.9)
    fully_shard(model, mesh=mesh())  # parameters replaced: masks no longer bound
    before = caught(verify_masks, model)
    shard_masks(model)
    return {"before": before, "after": caught(verify_masks, model)}


def layouts(rank: int, world: int, data) -> dict:
    """HSDP (a 2-D mesh: replicate x shard) and placements sparsetorch refuses."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from sparsetorch.sharding.dtensor import selector_for

    hsdp = init_device_mesh("cpu", (world, 1), mesh_dim_names=("replicate", "shard"))
    model = fsdp(mlp(), mesh=hsdp)
    out = train_api("rigl", model, model, data, rank, world, verify=verify_masks, steps=SHORT)
    out["placements"] = str(tuple(model[1].weight_sparsity_mask.placements))
    if rank == 1:  # one replica's copy of a mask changes
        shard = model[3].weight_sparsity_mask.to_local()
        shard.view(-1)[5] = ~shard.view(-1)[5]
    out["diverged"] = caught(verify_masks, model)
    columns = distribute_tensor(torch.zeros(4, 6), mesh(), [Shard(1)])
    out["columns"] = caught(selector_for, columns)
    out["dtensor_on_plain"] = caught(masking.attach_mask, nn.Linear(6, 4), "weight", columns > 0)
    return out


def timeout(rank: int, world: int) -> dict:
    # both ranks arrive together: a group's 1 s timeout also bounds its creation, and rank 0
    # comes from writing the runner's run dir (plots, report) while rank 1 has nothing to write
    dist.barrier()
    group = dist.new_group(timeout=timedelta(seconds=1))
    model = mlp()
    if rank == 1:  # rank 0 never joins
        return {"late": caught(verify_masks, model, group)}
    time.sleep(3)  # still there, not joining: rank 1 waits for its 1 s timeout
    return {"late": None}


# ------------------------------------------------------------------ the runner
class Interrupt(TrainHook):
    """Raises KeyboardInterrupt after step ``at`` (a killed job) when ``at`` is set."""

    at: int | None = None

    def after_step(self, ctx, step):
        if step == self.at:
            raise KeyboardInterrupt


def runner(rank: int, world: int, data, out: Path, mode: str, batch: int, resume: bool) -> dict:
    hp = runner_hparams(batch)
    result = train(hp, out / "full", model=mlp(), dataset=data, distributed=mode)
    rows = [
        {k: r[k] for k in ("step", "train_loss", "val_loss", "sparsity")} for r in result.metrics
    ]
    got: dict[str, Any] = {"rows": rows, "run_dir": str(result.run_dir)}
    checkpoints = sorted(p.name for p in (result.run_dir / "checkpoints").iterdir())
    got["checkpoints"] = checkpoints  # no resume files left in a finished run
    if rank == 0:
        got["final"] = {k: v.clone() for k, v in result.model.state_dict().items()}
    if not resume:
        return got
    # a run killed after step 25 and started again resumes from its step-20 DCP checkpoint
    hook = Interrupt()
    hook.at = 25
    try:
        train(hp, out / "cut", model=mlp(), dataset=data, hooks=[hook], distributed=mode)
        got["cut"] = "not interrupted"
    except KeyboardInterrupt:
        got["cut"] = "interrupted"
    hook.at = None
    resumed = train(hp, out / "cut", model=mlp(), dataset=data, hooks=[hook], distributed=mode)
    got["resumed_rows"] = [
        {k: r[k] for k in ("step", "train_loss", "val_loss")} for r in resumed.metrics
    ]
    if rank == 0:
        got["resumed_final"] = {k: v.clone() for k, v in resumed.model.state_dict().items()}
    return got


# ------------------------------------------------------------------ the session
def session(rank: int, world: int, data_file: str, out: str) -> dict:
    warnings.simplefilter("ignore")  # torch's FSDP/DCP chatter
    data, out = dataset(Path(data_file)), Path(out)
    results, took = {}, {}
    for name, fn, args in [
        ("api_ddp", api_ddp, (data,)),
        ("api_fsdp", api_fsdp, (data, "rigl", out / "dcp")),
        ("api_fsdp_set", api_fsdp, (data, "set")),
        ("api_fsdp_gmp", api_fsdp, (data, "gmp")),
        ("prune_global", api_prune, ("global",)),
        ("prune_erk", api_prune, ("erk",)),
        ("bad_config", bad_config, ()),
        ("diverged", diverged, ()),
        ("unbound", unbound, ()),
        ("layouts", layouts, (data,)),
        # 33 = 17 + 16 examples, and the last batch of the epoch is 16: uneven shares
        ("runner_ddp", runner, (data, out / "ddp", "ddp", 33, False)),
        ("runner_fsdp", runner, (data, out / "fsdp", "fsdp", 32, True)),
    ]:
        start = time.perf_counter()
        results[name] = fn(rank, world, *args)
        took[name] = round(time.perf_counter() - start, 2)
    results["took"] = took
    results["timeout"] = timeout(rank, world)  # last: leaves a broken group behind
    return results


# ------------------------------------------------------------------ GPUs (NCCL)
def device_session(rank: int, world: int, data_file: str, device_type: str) -> dict:
    """RigL through DDP and FSDP2 and a global one-shot prune, on ``cuda:rank`` (NCCL) or
    the CPU; the masks gathered after every update."""
    from torch.distributed.device_mesh import init_device_mesh

    warnings.simplefilter("ignore")
    data = dataset(Path(data_file))
    device = torch.device(device_type, rank) if device_type == "cuda" else torch.device("cpu")
    kwargs = {"device_ids": [device]} if device_type == "cuda" else {}
    model = mlp().to(device)
    out = {"ddp": train_api("rigl", model, ddp(model, **kwargs), data, rank, world,
                            verify=verify_masks, device=device)}  # fmt: skip
    cuda_mesh = init_device_mesh(device_type, (world,))
    model = fsdp(mlp().to(device), mesh=cuda_mesh)
    out["fsdp"] = train_api(
        "rigl", model, model, data, rank, world, verify=verify_masks, device=device
    )
    model = fsdp(mlp().to(device), mesh=cuda_mesh)
    st.prune(model, sparsity=0.9, distribution="global")
    out["prune"] = full_masks(model)
    return out
