"""What the spawned ranks and the one-process references share: a float64 MLP, a Fashion-MNIST
slice, the training loop of the Python-API scenarios, the runner's hparams.

float64 keeps the comparison about logic: a DDP gradient (mean of two half-batch means) and a
one-process one differ in the last bits; in float32 such a difference can swap two nearly
equal candidates at a top-k threshold, in float64 it cannot at these sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsetorch.data import Dataset, Split

STEPS = 50
SHORT = 30  # SET and GMP: updates at 10 and 20
BATCH = 32
DELTA_T = 10
SPARSITY = 0.9


def mlp() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 64),
            nn.ReLU(),
            nn.Linear(64, 33),  # 33 rows: uneven shards (17 + 16) on two ranks
            nn.ReLU(),
            nn.Linear(33, 10),
        )
    return model.double()


def save_data(path: Path) -> Path:
    from sparsetorch.data import load

    ds = load("fashion-mnist").slice(STEPS * BATCH, 100, 100)
    torch.save(
        {
            "x": ds.train.x.double(),
            "y": ds.train.y,
            "vx": ds.val.x.double(),
            "vy": ds.val.y,
        },
        path,
    )
    return path


def dataset(path: Path) -> Dataset:
    d = torch.load(path, weights_only=True)
    val = Split(d["vx"], d["vy"])
    return Dataset("fashion-mnist", Split(d["x"], d["y"]), val, val, 10, (1, 28, 28))


def share(n: int, rank: int, world: int) -> slice:
    return slice(rank * n // world, (rank + 1) * n // world)


def full(t: torch.Tensor) -> torch.Tensor:
    """A DTensor gathered, or the tensor (a CPU copy either way)."""
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().cpu().clone()


def full_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    import sparsetorch as st

    return {name: full(mask) for name, mask in st.masks(getattr(model, "module", model)).items()}


def train_api(
    method: str,
    model: nn.Module,
    forward: nn.Module,
    data: Dataset,
    rank: int = 0,
    world: int = 1,
    verify: Any = None,
    steps: int = STEPS,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """``method`` (rigl, set, gmp) through the Python API in a plain loop; on rank ``rank``
    of ``world`` each step trains on its share of the global batch (on ``device``)."""
    import sparsetorch as st

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    if method == "gmp":
        algo = st.GMP(
            model, optimizer, sparsity=SPARSITY, distribution="global", total_steps=steps,
            delta_t=DELTA_T,
        )  # fmt: skip
    else:
        cls = {"rigl": st.RigL, "set": st.SET}[method]
        algo = cls(model, optimizer, sparsity=SPARSITY, total_steps=steps, delta_t=DELTA_T)
    masks, checked, losses = [full_masks(model)], [], []
    x, y = data.train.x.to(device), data.train.y.to(device)
    for t in range(steps):
        part = share(BATCH, rank, world)
        xb, yb = x[t * BATCH : (t + 1) * BATCH][part], y[t * BATCH : (t + 1) * BATCH][part]
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(forward(xb), yb)
        loss.backward()
        algo.step()
        losses.append(loss.item())
        if algo.history and algo.history[-1]["step"] == t:
            masks.append(full_masks(model))
            if verify is not None:
                checked.append(verify(model))
    stats = [{k: h[k] for k in ("step", "grown", "dropped", "changed")} for h in algo.history]
    return {"masks": masks, "losses": losses, "checked": checked, "history": stats}


def runner_hparams(batch: int = BATCH) -> Any:
    from sparsetorch.experiments import Hparams

    hp = Hparams()
    hp.training.optimizer = "adam"
    hp.training.lr = 1e-3
    hp.training.batch_size = batch
    hp.training.steps = STEPS
    hp.training.eval_every = 10
    hp.sparsity.method = "rigl"
    hp.sparsity.sparsity = SPARSITY
    hp.sparsity.distribution = "erk"
    hp.sparsity.options = {"delta_t": DELTA_T}
    return hp
