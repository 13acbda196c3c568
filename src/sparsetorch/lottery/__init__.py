"""Lottery tickets (``st.lottery``): iterative magnitude pruning with rewinding, its controls,
and the summary of a run.

    import sparsetorch as st
    from sparsetorch.experiments import Hparams

    hp = Hparams()                                   # LeNet-300-100, Fashion-MNIST, Adam 1.2e-3
    lt = st.lottery.IMPConfig(rounds=5, prune_rate=0.2, layer_rates={"output": 0.1},
                                   rewind="init", seeds=(0, 1), controls=("reinit",))
    summary = st.lottery.IMP(hp, lt, out_dir="runs").run()
    print(summary["table"])                          # also runs/lottery-.../lottery.md, .png

docs/lottery.md explains the procedure, the run directory, N:M and block tickets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsetorch._lazy import lazy_names

if TYPE_CHECKING:
    from sparsetorch.lottery.config import CONTROLS as CONTROLS
    from sparsetorch.lottery.config import SCOPES as SCOPES
    from sparsetorch.lottery.config import IMPConfig as IMPConfig
    from sparsetorch.lottery.imp import IMP as IMP
    from sparsetorch.lottery.rewind import Rewind as Rewind
    from sparsetorch.lottery.round_masks import random_masks as random_masks
    from sparsetorch.lottery.round_masks import ticket_masks as ticket_masks
    from sparsetorch.lottery.rounds import density_after as density_after
    from sparsetorch.lottery.rounds import layer_rates as layer_rates
    from sparsetorch.lottery.rounds import rounds_to as rounds_to
    from sparsetorch.lottery.rounds import units_after as units_after
    from sparsetorch.lottery.run_dir import LotteryDir as LotteryDir
    from sparsetorch.lottery.run_dir import is_lottery_dir as is_lottery_dir
    from sparsetorch.lottery.summary import report as report
    from sparsetorch.lottery.summary import write_summary as write_summary

# resolved on first use: the CLI reads IMPConfig (flags) without importing torch
_LAZY: dict[str, str] = {
    "CONTROLS": "sparsetorch.lottery.config:CONTROLS",
    "SCOPES": "sparsetorch.lottery.config:SCOPES",
    "IMPConfig": "sparsetorch.lottery.config:IMPConfig",
    "IMP": "sparsetorch.lottery.imp:IMP",
    "Rewind": "sparsetorch.lottery.rewind:Rewind",
    "random_masks": "sparsetorch.lottery.round_masks:random_masks",
    "ticket_masks": "sparsetorch.lottery.round_masks:ticket_masks",
    "density_after": "sparsetorch.lottery.rounds:density_after",
    "layer_rates": "sparsetorch.lottery.rounds:layer_rates",
    "rounds_to": "sparsetorch.lottery.rounds:rounds_to",
    "units_after": "sparsetorch.lottery.rounds:units_after",
    "LotteryDir": "sparsetorch.lottery.run_dir:LotteryDir",
    "is_lottery_dir": "sparsetorch.lottery.run_dir:is_lottery_dir",
    "report": "sparsetorch.lottery.summary:report",
    "write_summary": "sparsetorch.lottery.summary:write_summary",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_names(globals(), _LAZY)
