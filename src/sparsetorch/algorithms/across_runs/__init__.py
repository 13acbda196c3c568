"""Lottery tickets (``st.lottery``): iterative magnitude pruning with rewinding, its controls,
and the summary of a run.

    import sparsetorch as st
    from sparsetorch.experiments import Hparams

    hp = Hparams()                                   # LeNet-300-100, Fashion-MNIST, Adam 1.2e-3
    lt = st.lottery.LotteryHparams(rounds=5, prune_rate=0.2, layer_rates={"output": 0.1},
                                   rewind="init", seeds=(0, 1), controls=("reinit",))
    summary = st.lottery.IMP(hp, lt, out_dir="runs").run()
    print(summary["table"])                          # also runs/lottery-.../lottery.md, .png

docs/lottery.md explains the procedure, the run directory, N:M and block tickets.
"""

from sparsetorch.algorithms.across_runs.config import CONTROLS, SCOPES, LotteryHparams
from sparsetorch.algorithms.across_runs.imp import IMP
from sparsetorch.algorithms.across_runs.layout import LotteryDir, is_lottery_dir
from sparsetorch.algorithms.across_runs.rewind import Rewind
from sparsetorch.algorithms.across_runs.round_masks import random_masks, ticket_masks
from sparsetorch.algorithms.across_runs.rounds import (
    density_after,
    layer_rates,
    rounds_to,
    units_after,
)
from sparsetorch.algorithms.across_runs.summary import report, write_summary

__all__ = [
    "CONTROLS",
    "IMP",
    "SCOPES",
    "LotteryDir",
    "LotteryHparams",
    "Rewind",
    "density_after",
    "is_lottery_dir",
    "layer_rates",
    "random_masks",
    "report",
    "rounds_to",
    "ticket_masks",
    "units_after",
    "write_summary",
]
