"""Redraw the lottery figures of docs/results.md from the per-round tables recorded there.

The runs behind them (``benchmarks/lottery_repro.py``: LeNet-300-100 1.7 h, Conv-2 1.4 h on one
CPU thread) write their own figures; with their run dirs at hand ``sparsetorch report RUN`` and
``sparsetorch report --compare RUN_A RUN_B`` draw these. Without them, this script draws the
same figures, with the library's plotting code, from the numbers of the tables:

    python benchmarks/lottery_figures.py --results docs/results.md --figures docs/figures

* ``lottery_lenet300.png``: ``sparsetorch.lottery.summary.figure`` of the LeNet-300-100 table
  (tickets and both controls, mean ± std over 3 seeds; the early-stop panel shows the tickets,
  the table records no early-stop step for the controls);
* ``lottery_conv2_rewind40.png``: ``sparsetorch.lottery.compare.plot_lotteries`` of the Conv-2
  table: tickets rewound to iteration 40 and to init, and the reinit control, one seed.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

LENET_HEADING = "### LeNet-300-100: 15 rounds, 3 seeds, both controls"
CONV2_HEADING = "### Conv-2 with late rewinding (reduced)"
LENET_STEPS, LENET_EVAL = 2751, 250  # 3 epochs of 917 steps, evaluated every 250
CONV2_STEPS = 400


def table(text: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table after ``heading``."""
    rest = text[text.index(heading) :]
    lines = [line for line in rest.splitlines() if line.startswith("|")]
    start = rest.splitlines().index(lines[0])
    block = []
    for line in rest.splitlines()[start:]:
        if not line.startswith("|"):
            break
        block.append([cell.strip() for cell in line.strip("|").split("|")])
    return block[2:]  # without header and rule


def value(cell: str) -> tuple[float, float]:
    """``88.97 ± 0.14`` -> (88.97, 0.14); ``87.30`` -> (87.30, 0); ``-`` -> (nan, nan)."""
    if cell.strip() == "-":
        return math.nan, math.nan
    m = re.fullmatch(r"\**([\d.]+)(?: ± ([\d.]+))?\**", cell.strip())
    return float(m[1]), float(m[2] or 0.0)


def lenet_rows(cells: list[list[str]]) -> list[dict]:
    """summary rows (``sparsetorch.lottery.summary.aggregate``'s keys) from the LeNet table:
    round, remaining %, ticket acc, early-stop step, ticket final acc, reinit, random-prune."""
    rows = []
    eval_steps = [*range(0, LENET_STEPS, LENET_EVAL), LENET_STEPS]
    for line in cells:
        round_ = int(line[0])
        remaining = float(line[1]) / 100
        base = {"round": round_, "seeds": [0, 1, 2], "remaining": remaining,
                "remaining_std": 0.0, "total_steps": LENET_STEPS, "total_steps_std": 0.0,
                "eval_steps": eval_steps, "final_acc": math.nan, "final_acc_std": 0.0}  # fmt: skip
        for branch, acc, step in (("ticket", line[2], line[3]), ("reinit", line[5], "-"),
                                  ("random-prune", line[6], "-")):  # fmt: skip
            (a, a_std), (s, s_std) = value(acc), value(step)
            if math.isnan(a):
                continue
            rows.append({**base, "branch": branch, "es_acc": a / 100, "es_acc_std": a_std / 100,
                         "es_step": s, "es_step_std": s_std})  # fmt: skip
    return rows


def conv2_rowsets(cells: list[list[str]]) -> tuple[list[str], list[list[dict]]]:
    """Two lottery runs from the Conv-2 table: rewind 40 (with reinit), rewind init."""
    late, init = [], []
    for line in cells:
        base = {"round": int(line[0]), "seeds": [0], "remaining": float(line[1]) / 100}
        for rows, branch, cell in ((late, "ticket", line[2]), (init, "ticket", line[3]),
                                   (late, "reinit", line[4])):  # fmt: skip
            acc, _ = value(cell)
            if not math.isnan(acc):
                rows.append({**base, "branch": branch, "es_acc": acc / 100, "es_acc_std": 0.0})
    return ["rewind to iteration 40", "rewind to init"], [late, init]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="docs/results.md", help="the recorded tables")
    parser.add_argument("--figures", default="docs/figures", help="where the PNGs go")
    args = parser.parse_args()
    from sparsetorch.experiments.plots import _save
    from sparsetorch.lottery.compare import plot_lotteries
    from sparsetorch.lottery.summary import figure

    text = Path(args.results).read_text()
    out = Path(args.figures)
    title = "lenet300 on fashion-mnist, rewind init, unstructured, 3 epochs a round"
    path = _save(
        figure(lenet_rows(table(text, LENET_HEADING)), title), out / "lottery_lenet300.png"
    )
    print(path)
    names, rowsets = conv2_rowsets(table(text, CONV2_HEADING))
    configs = [{"hparams": {"model": {"name": "conv2"}, "dataset": {"name": "fashion-mnist"}}}] * 2
    title = "lottery tickets: conv2 on fashion-mnist, 6000 images, 400 iterations a round"
    print(plot_lotteries(names, configs, rowsets, out / "lottery_conv2_rewind40.png", title))


if __name__ == "__main__":
    main()
