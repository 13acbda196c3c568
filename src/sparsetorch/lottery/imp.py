"""Iterative magnitude pruning with rewinding: the lottery-ticket procedure.

Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks",
ICLR 2019; late rewinding from Frankle, Dziugaite, Roy & Carbin, "Stabilizing the Lottery
Ticket Hypothesis" / "Linear Mode Connectivity and the Lottery Ticket Hypothesis", 2019-2020.

    1. initialise the network, theta_0; train it for T steps (round 0, dense), keeping theta_K
    2. for round r = 1..R:
         prune: keep (1 - p) ** r of each layer, the largest-magnitude weights of the
                network trained in round r - 1 (pruned weights stay pruned)
         rewind: surviving weights <- theta_K (theta_0 when K = 0), pruned ones zero
         retrain from step K to T, same data order and hyperparameters
    3. controls, branching from the finished rounds: the same masks with a fresh random
       initialisation (reinit), and random masks of the same per-layer sparsity from theta_K
       (random-prune)

Every round is an ordinary training run (``sparsetorch.experiments.train``) in its own run dir,
so a killed lottery run, started again, skips finished rounds and resumes the unfinished one at
its last checkpoint, bitwise as if it had never stopped.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from sparsetorch.data import Dataset
from sparsetorch.experiments import Hparams, TrainResult, build_model, prepare_dataset, train
from sparsetorch.experiments.data_order import steps_per_epoch
from sparsetorch.experiments.progress import progress_enabled
from sparsetorch.experiments.rundir import check_out_dir
from sparsetorch.experiments.runner import check_device
from sparsetorch.lottery.config import IMPConfig
from sparsetorch.lottery.rewind import Rewind
from sparsetorch.lottery.round_masks import random_masks, ticket_masks
from sparsetorch.lottery.rounds import check_rounds, layer_rates
from sparsetorch.lottery.run_dir import TICKET, LotteryDir, lottery_name
from sparsetorch.lottery.seeds import derive_seed
from sparsetorch.masking import prunable_parameters
from sparsetorch.patterns import get as get_pattern

if TYPE_CHECKING:
    from sparsetorch.lottery.summary import LotterySummary

State = dict[str, torch.Tensor]  # a state_dict
Masks = dict[str, torch.Tensor]  # {parameter name: bool mask}


class IMP:
    """A lottery-ticket run: ``IMP(hparams, lottery, out_dir="runs").run()``.

    Args:
        hparams: the training hparams of every round (``sparsetorch.experiments.Hparams``;
            method "dense": IMP does the pruning). ``training.seed`` is replaced by each seed.
        lottery: rounds, rates, scope, pattern, rewind point, seeds, controls
            (:class:`IMPConfig`; default: 10 rounds at 20%, rewind to init, seed 0).
        out_dir: parent directory; the run lives in ``out_dir/lottery-<model>-<hash>``.
        run_dir: the exact lottery directory instead (an existing one is resumed, and refused
            when it was started with other hparams).
        dataset: the already loaded dataset (else loaded from ``hparams.dataset``).
        device: where to train ("cpu" runs are bitwise reproducible).
        progress: progress bars (default: on a terminal, outside CI).
        log: called with one line per finished round (e.g. ``print``).
    """

    def __init__(
        self,
        hparams: Hparams,
        lottery: IMPConfig | None = None,
        *,
        out_dir: str | Path | None = None,
        run_dir: str | Path | None = None,
        dataset: Dataset | None = None,
        device: str | torch.device = "cpu",
        progress: bool | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        method = getattr(getattr(hparams, "sparsity", None), "method", "dense")
        if isinstance(method, str) and method.strip().lower() != "dense":
            raise ValueError(
                f"IMP prunes by itself: the training hparams must use method 'dense', got "
                f"{method.strip().lower()!r}"
            )
        self.hparams = copy.deepcopy(hparams).validate()
        self.lottery = copy.deepcopy(lottery or IMPConfig()).validate()
        self.identity = {**self.hparams.identity(), **self.lottery.identity()}
        self.identity.pop("training.seed", None)  # each seed is a run of its own
        if (run_dir is None) == (out_dir is None):
            raise ValueError("give exactly one of out_dir (parent) and run_dir (exact)")
        if run_dir is None:
            run_dir = check_out_dir(out_dir) / lottery_name(self.hparams, self.identity)
        self.dir = LotteryDir(run_dir)
        self.device = check_device(device)
        self.progress = progress_enabled(progress)
        self.log = log or (lambda line: None)
        self._dataset = dataset
        self._data: Dataset | None = None
        self._theta: dict[int, State] = {}  # seed -> theta_K

    @property
    def path(self) -> Path:
        return self.dir.path

    # ---- the plan ---------------------------------------------------------------------------
    def data(self) -> Dataset:
        if self._data is None:
            self._data = prepare_dataset(self.hparams.dataset, self._dataset)
        return self._data

    def seed_hparams(self, seed: int) -> Hparams:
        hp = copy.deepcopy(self.hparams)
        hp.training.seed = seed
        return hp

    def plan(self) -> dict[str, Any]:
        """Check the whole run before training anything: the rewind step, the layer rates,
        that no round prunes a layer to zero. Returns the resolved numbers."""
        data = self.data()
        hp, lt = self.hparams, self.lottery
        spe = steps_per_epoch(len(data.train), hp.training.batch_size)
        total = hp.training.steps or hp.training.epochs * spe
        rewind_step = Rewind.parse(lt.rewind).step(spe, total)
        model = build_model(hp, data.input_shape, data.num_classes)
        pattern = get_pattern(lt.pattern)
        shapes = {full: m._parameters[n].shape for full, m, n in prunable_parameters(model)}
        if pattern.fixed_density is not None:  # one-shot N:M tickets take no layer rates
            rates = dict.fromkeys(shapes, pattern.fixed_density)
        else:
            rates = layer_rates(list(shapes), lt.prune_rate, lt.layer_rates)
        for full, shape in shapes.items():
            if rates[full] == 0:
                continue  # kept dense: the pattern never sees it
            try:
                pattern.check(shape)
            except ValueError as exc:
                raise ValueError(f"pattern {lt.pattern!r} on {full}: {exc}") from None
        if pattern.fixed_density is None:
            units = {n: pattern.num_units(s) for n, s in shapes.items()}
            if lt.scope == "global":
                check_rounds(
                    {"all layers": sum(units.values())}, {"all layers": lt.prune_rate}, lt.rounds
                )
            else:
                check_rounds(units, rates, lt.rounds)
        return {
            "steps_per_epoch": spe,
            "total_steps": total,
            "rewind_step": rewind_step,
            "rates": rates,
        }

    # ---- running ----------------------------------------------------------------------------
    def run(self) -> LotterySummary:
        """Train every round of every seed, then the controls; write the summary (table and
        figure). Returns the summary."""
        from sparsetorch.lottery.summary import write_summary

        plan = self.plan()
        with self.dir.lock():  # one process per lottery dir
            self.dir.open(
                self.identity,
                {
                    "hparams": self.hparams.to_dict(),
                    "lottery": self.lottery.to_dict(),
                    "plan": plan,
                },
            )
            lt = self.lottery
            total = len(lt.seeds) * (lt.rounds + 1 + lt.rounds * len(lt.controls))
            bar = tqdm(total=total, desc="lottery", unit="run", disable=not self.progress)
            try:
                for seed in lt.seeds:
                    self.tickets(seed, plan, bar)
                for control in lt.controls:
                    for seed in lt.seeds:
                        self.control(control, seed, plan, bar)
            finally:
                bar.close()
            return write_summary(self.path)

    def _train(self, seed: int, round_: int, branch: str, **kw: Any) -> TrainResult:
        result = train(
            self.seed_hparams(seed),
            run_dir=self.dir.round_dir(seed, round_, branch),
            dataset=self.data(),
            device=self.device,
            progress=self.progress,
            **kw,
        )
        es = result.early_stop
        with tqdm.external_write_mode():  # a line above the progress bars, not through them
            self.log(
                f"seed {seed} {branch} round {round_}: "
                f"{100 * (1 - result.final['sparsity']):.2f}% "
                f"weights remaining, test acc {result.final['test_acc']:.4f} (early stop at step "
                f"{es['step']}: {es['test_acc']:.4f}){' [reused]' if result.reused else ''}"
            )
        return result

    def tickets(self, seed: int, plan: dict, bar: tqdm | None = None) -> list[TrainResult]:
        """Round 0 and the IMP rounds of one seed (finished rounds are reused)."""
        k = plan["rewind_step"]
        dense = self._train(seed, 0, TICKET, save_states_at=(k,))
        theta_k = self._theta[seed] = dense.state_at(k)
        results, previous = [dense], dense
        _tick(bar)
        for r in range(1, self.lottery.rounds + 1):
            if self.dir.has_masks(seed, r):
                masks = self.dir.load_masks(seed, r)
            else:
                masks = ticket_masks(
                    previous.model, r, plan["rates"], self.lottery.pattern, self.lottery.scope
                )
                self.dir.save_masks(seed, r, masks)
            previous = self._train(seed, r, TICKET, init_state=theta_k, masks=masks, start_step=k)
            results.append(previous)
            _tick(bar)
        return results

    def control(
        self, name: str, seed: int, plan: dict, bar: tqdm | None = None
    ) -> list[TrainResult]:
        """One control branch of one seed, for every round whose ticket masks exist."""
        k = plan["rewind_step"]
        results = []
        for r in range(1, self.lottery.rounds + 1):
            if not self.dir.has_masks(seed, r):
                raise ValueError(
                    f"control {name!r} needs the ticket masks of seed {seed} round {r}"
                )
            start = {"reinit": self._reinit, "random-prune": self._random_prune}[name]
            init, masks = start(seed, r, self.dir.load_masks(seed, r), k)
            self.dir.save_masks(seed, r, masks, branch=name)
            results.append(self._train(seed, r, name, init_state=init, masks=masks, start_step=k))
            _tick(bar)
        return results

    def _reinit(self, seed: int, round_: int, masks: Masks, k: int) -> tuple[State, Masks]:
        """The reinit control: the ticket's masks, a fresh initialisation."""
        return self.fresh_init(derive_seed(seed, "reinit", round_)), masks

    def _random_prune(self, seed: int, round_: int, masks: Masks, k: int) -> tuple[State, Masks]:
        """The random-pruning control: random masks with the ticket's per-layer counts, from
        the ticket's rewind point theta_K."""
        generator = torch.Generator().manual_seed(derive_seed(seed, "random-prune", round_))
        return self.rewind_state(seed, k), random_masks(masks, self.lottery.pattern, generator)

    def fresh_init(self, init_seed: int) -> State:
        """A new initialisation of the model (same scheme, another seed)."""
        data = self.data()
        model = build_model(self.seed_hparams(init_seed), data.input_shape, data.num_classes)
        return model.state_dict()

    def rewind_state(self, seed: int, step: int) -> State:
        """theta_K of one seed: the weights after ``step`` steps of its dense round 0."""
        if seed not in self._theta:
            dense = train(
                self.seed_hparams(seed),
                run_dir=self.dir.round_dir(seed, 0),
                dataset=self.data(),
                device=self.device,
                progress=self.progress,
                save_states_at=(step,),
            )
            self._theta[seed] = dense.state_at(step)
        return self._theta[seed]


def _tick(bar: tqdm | None) -> None:
    if bar is not None:
        bar.update(1)
