"""What a notebook shows for a cell ending in a report or a run: HTML and Markdown tables whose
cells are the report's own numbers, images embedded, text escaped."""

import base64
import re
from html.parser import HTMLParser

import torch
from torch import nn

import sparsetorch as st
from sparsetorch.experiments import Hparams, train


class Cells(HTMLParser):
    """Rows of table cells, and the ``src`` of every image, of an HTML fragment."""

    def __init__(self, text):
        super().__init__()
        self.rows, self.images, self._cell = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self._cell)
            self._cell = None


def model():
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("in<put>", nn.Linear(20, 30))  # a name that is markup
    net.add_module("act", nn.ReLU())
    net.add_module("out", nn.Linear(30, 4))
    st.prune(net, 0.8)
    return net


def test_report_shows_as_tables_in_a_notebook():
    report = st.report(model(), input_shape=(1, 20))
    assert repr(report) == str(report)  # a REPL shows the table too, not a dataclass repr
    header, rows = report._cells()
    parsed = Cells(report._repr_html_())
    assert parsed.rows == [header, *rows]
    assert "in&lt;put&gt;.weight" in report._repr_html_()
    assert parsed.rows[1][0] == "in<put>.weight" and parsed.rows[-1][0] == "total"
    caption = report.caption()
    assert caption.startswith("2 prunable weight(s), density 0.2000 (144 of 720)")
    assert report._repr_markdown_() == f"{caption}\n\n{report.to_markdown()}"


def test_train_result_shows_its_evaluations_and_curves(tmp_path):
    hp = Hparams()
    hp.dataset.name = "digits"
    hp.dataset.train_size, hp.dataset.val_size, hp.dataset.test_size = 128, 50, 50
    hp.training.batch_size, hp.training.steps, hp.training.eval_every = 32, 6, 3
    result = train(hp, tmp_path)
    parsed = Cells(result._repr_html_())
    assert parsed.rows[1] == [
        "final", "6", f"{result.final['epoch']:.4f}", f"{result.final['val_loss']:.4f}",
        f"{result.final['val_acc']:.4f}", f"{result.final['test_loss']:.4f}",
        f"{result.final['test_acc']:.4f}", f"{result.final['sparsity']:.4f}",
    ]  # fmt: skip
    assert parsed.rows[2][:2] == ["early stop", str(result.early_stop_step)]
    (image,) = parsed.images
    png = (result.run_dir / "plots" / "curves.png").read_bytes()
    assert base64.b64decode(image.removeprefix("data:image/png;base64,")) == png
    markdown = result._repr_markdown_()
    assert markdown.startswith("**lenet300 on digits (dense, seed 0): 6 steps in ")
    assert f"| final | 6 | {result.final['epoch']:.4f} |" in markdown
    assert f"run dir: `{result.run_dir}`" in markdown
    assert re.fullmatch(r"TrainResult\(lenet300 on digits .* -> .*\)", repr(result))
    in_memory = train(hp)  # no run dir: no image, no path
    assert Cells(in_memory._repr_html_()).images == [] and "run dir" not in in_memory._repr_html_()
