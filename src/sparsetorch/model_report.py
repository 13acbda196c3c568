"""``report(model)``: one row per prunable weight — shape, density, nnz, dense bytes, bytes in
the smallest format (``sparsetorch.formats.best_format``) and, given an input, dense and sparse
FLOPs — plus a totals row. Prints as an aligned table (also its ``repr``); ``to_dict()`` and
``to_markdown()``; in a notebook, a cell ending in ``st.report(model)`` shows an HTML table
(``_repr_html_``, ``_repr_markdown_``).

The rows are the prunable weights of the registry of prunable kinds
(``masking.prunable_parameters``), the weights ``st.prune`` prunes and ``st.sparsity`` counts by
default; the totals row sums them. Under the table, the report lists any layer that keeps no
weight, and any weight of 2+ dims that no kind covers (``masking.uncovered_weights``: left
dense by ``st.prune``, not counted by ``st.sparsity``).

FLOPs come from one dummy forward (eval mode, no grad, MultiheadAttention's fused fast path
off; training flags restored) with forward hooks: a layer costs 2 x the multiply-accumulates
its kind counts (``PrunableKind.macs``: Linear, Conv, transformers' Conv1D, MultiheadAttention's
input projections; an Embedding lookup none); biases, activations, attention products and
norms are not counted. Sparse FLOPs are dense FLOPs x the layer's density (what an ideal sparse
kernel would skip).
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from sparsetorch._checks import check_not_meta
from sparsetorch.batches import call_model, first_tensor
from sparsetorch.formats import best_format
from sparsetorch.masking import kind_of, prunable_parameters, uncovered_weights


@dataclass(frozen=True)
class LayerRow:
    name: str  # full parameter name, e.g. "fc1.weight"
    shape: tuple[int, ...]
    nnz: int
    numel: int
    dense_bytes: int
    sparse_bytes: int  # in `format`, the smallest encoding ("dense" when nothing beats it)
    format: str
    flops: int | None  # dense FLOPs for the report's input; None without one
    sparse_flops: int | None

    @property
    def density(self) -> float:
        return self.nnz / self.numel if self.numel else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape), "density": self.density}


@dataclass(frozen=True, repr=False)
class Report:
    layers: list[LayerRow]
    input_shape: tuple[int, ...] | None
    # weights of 2+ dims no prunable kind covers: (name, shape); left dense by st.prune
    uncovered: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @property
    def empty(self) -> list[str]:
        """Layers that keep no weight."""
        return [row.name for row in self.layers if row.nnz == 0]

    def notes(self) -> list[str]:
        """The lines printed under the table: empty layers, uncovered weights."""
        out = []
        if self.empty:
            out.append(f"empty (no weight kept): {', '.join(self.empty)}")
        if self.uncovered:
            shown = ", ".join(f"{n} ({'x'.join(map(str, s))})" for n, s in self.uncovered)
            out.append(
                f"not prunable (no registered kind; not in the totals, left dense by st.prune): "
                f"{shown}"
            )
        return out

    @property
    def total(self) -> LayerRow:
        def total_of(field: str) -> int | None:
            values = [getattr(row, field) for row in self.layers]
            return None if None in values else sum(values)

        return LayerRow(
            "total",
            (),
            total_of("nnz"),
            total_of("numel"),
            total_of("dense_bytes"),
            total_of("sparse_bytes"),
            "",
            total_of("flops"),
            total_of("sparse_flops"),
        )

    def to_dict(self) -> dict:
        return {
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "layers": [row.to_dict() for row in self.layers],
            "total": self.total.to_dict(),
            "empty": self.empty,
            "uncovered": [{"name": n, "shape": list(s)} for n, s in self.uncovered],
        }

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        header = ["layer", "shape", "density", "nnz", "dense", "best", "format"]
        with_flops = self.input_shape is not None
        if with_flops:
            header += ["FLOPs", "sparse FLOPs"]
        rows = []
        for row in [*self.layers, self.total]:
            cells = [
                row.name,
                "x".join(map(str, row.shape)),
                f"{row.density:.4f}",
                f"{row.nnz:,}",
                format_bytes(row.dense_bytes),
                format_bytes(row.sparse_bytes),
                row.format,
            ]
            if with_flops:
                cells += [format_count(row.flops), format_count(row.sparse_flops)]
            rows.append(cells)
        return header, rows

    def __str__(self) -> str:
        header, rows = self._cells()
        return "\n".join([format_table(header, rows, left=_LEFT, total=True), *self.notes()])

    def __repr__(self) -> str:
        return str(self)

    def caption(self) -> str:
        """One line: weights, their density, bytes dense and in the best formats."""
        t = self.total
        text = (
            f"{len(self.layers)} prunable weight(s), density {t.density:.4f} ({t.nnz:,} of "
            f"{t.numel:,}); {format_bytes(t.dense_bytes)} dense, "
            f"{format_bytes(t.sparse_bytes)} in the best formats"
        )
        if self.input_shape is not None and t.flops:
            text += (
                f"; {format_count(t.sparse_flops)} of {format_count(t.flops)} FLOPs for input "
                f"{tuple(self.input_shape)}"
            )
        return text

    def to_markdown(self) -> str:
        header, rows = self._cells()
        align = [":--" if i in _LEFT else "--:" for i in range(len(header))]
        rows[-1][0] = f"**{rows[-1][0]}**"
        table = "\n".join("| " + " | ".join(r) + " |" for r in [header, align, *rows])
        return "\n\n".join([table, *self.notes()])

    def _repr_markdown_(self) -> str:
        return f"{self.caption()}\n\n{self.to_markdown()}"

    def _repr_html_(self) -> str:
        header, rows = self._cells()
        return html_table(header, rows, left=_LEFT, caption=self.caption(), total=True)


_LEFT = {0, 1, 6}  # text columns: layer, shape, format


def format_table(
    header: list[str], rows: list[list[str]], left: set[int] = frozenset({0}), total: bool = False
) -> str:
    """An aligned plain-text table: ``left`` columns left-aligned, the rest right-aligned; with
    ``total`` the last row is set apart by a rule."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(r) for r in rows]
    if total and body:
        body.insert(len(body) - 1, rule)
    return "\n".join([line(header), rule, *body])


def html_table(
    header: list[str],
    rows: list[list[str]],
    left: set[int] = frozenset({0}),
    caption: str = "",
    total: bool = False,
) -> str:
    """An HTML table (cells escaped): ``left`` columns left-aligned, the rest right-aligned;
    with ``total`` the last row is bold and set apart by a rule."""

    def cell(tag: str, i: int, text: str, style: str = "") -> str:
        align = "left" if i in left else "right"
        return f'<{tag} style="text-align:{align};{style}">{html.escape(text)}</{tag}>'

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = []
    for n, row in enumerate(rows):
        last = total and n == len(rows) - 1
        style = "font-weight:bold;border-top:1px solid;" if last else ""
        body.append("<tr>" + "".join(cell("td", i, c, style) for i, c in enumerate(row)) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def format_count(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def report(
    model: nn.Module,
    input_shape: tuple[int, ...] | None = None,
    *,
    example_input: Any = None,
) -> Report:
    """Per-layer report of ``model``'s prunable weights.

    ``input_shape`` (batch dim included, e.g. ``(1, 1, 28, 28)``) runs one forward on zeros of
    the model's dtype to count FLOPs; ``example_input`` runs it on given inputs instead: a
    tensor (token ids), a tuple of positional inputs or a dict of keyword inputs (``{"input_ids":
    ids, "attention_mask": mask}``; ``sparsetorch.batches.call_model``). Without either, the
    FLOPs columns are left out.
    """
    if input_shape is not None and example_input is not None:
        raise ValueError("pass input_shape or example_input, not both")
    check_not_meta(model, "model")
    weights = prunable_parameters(model)
    if not weights:
        raise ValueError("the model has no prunable weights (Linear/Conv/Embedding) to report")
    flops = None
    example = example_input
    if example_input is not None:
        flops = count_flops(model, example_input)
    elif input_shape is not None:
        example = _zeros(model, input_shape)
        try:
            flops = count_flops(model, example)
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(
                f"report: the model does not run on zeros of shape {tuple(input_shape)} in its "
                f"dtype ({type(exc).__name__}: {reason}); give example_input= (token ids, a "
                "dict of keyword inputs) for a model that takes other inputs"
            ) from exc
    layers = []
    for full, module, name in weights:
        w = module._parameters[name].detach()
        nnz = int(torch.count_nonzero(w))
        fmt, nbytes = best_format(w)
        dense_flops = None if flops is None else flops.get(full, 0)
        layers.append(
            LayerRow(
                name=full,
                shape=tuple(w.shape),
                nnz=nnz,
                numel=w.numel(),
                dense_bytes=w.numel() * w.element_size(),
                sparse_bytes=nbytes,
                format=fmt,
                flops=dense_flops,
                sparse_flops=None if dense_flops is None else dense_flops * nnz // w.numel(),
            )
        )
    shape = None
    if flops is not None:
        first = first_tensor(example)
        shape = tuple(first.shape) if first is not None else None
    uncovered = tuple((n, tuple(s)) for n, s in uncovered_weights(model))
    return Report(layers, shape, uncovered)


def _zeros(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    shape = tuple(input_shape)
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"input_shape must be positive ints, batch dim included, got {shape}")
    reference = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = reference.dtype if reference is not None else torch.get_default_dtype()
    device = reference.device if reference is not None else None
    return torch.zeros(shape, dtype=dtype, device=device)


def _counting_hook(flops: dict[str, int], counted: list[tuple[str, str, Callable]]) -> Callable:
    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        for key, name, macs in counted:
            flops[key] += 2 * macs(module, name, args, kwargs, output)

    return hook


@contextlib.contextmanager
def _no_mha_fast_path() -> Iterator[None]:
    # the fused TransformerEncoderLayer / MultiheadAttention path calls no submodule (no hook
    # fires) under no_grad in eval mode: count on the plain path, the same arithmetic
    mha = torch.backends.mha
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def _get_parameter(module: nn.Module, name: str) -> torch.Tensor | None:
    try:
        return module.get_parameter(name)
    except AttributeError:
        return None


@torch.no_grad()
def count_flops(model: nn.Module, example: Any) -> dict[str, int]:
    """{prunable weight name: dense FLOPs of one forward on ``example``} (2 x MACs; a layer
    called twice counts twice; a weight shared by several layers sums their calls).
    ``example``: a tensor, a tuple of positional inputs or a dict of keyword inputs."""
    names = {
        id(module._parameters[name]): full for full, module, name in prunable_parameters(model)
    }
    flops = dict.fromkeys(names.values(), 0)
    handles = []
    for module in model.modules():
        kind = kind_of(module)
        if kind is None or kind.macs is None:
            continue
        own = [(n, module._parameters.get(n)) for n in kind.params]
        read = [(n, _get_parameter(module, n)) for n in kind.reads]
        counted = [
            (names[id(p)], n, kind.macs) for n, p in own + read if p is not None and id(p) in names
        ]
        if counted:
            hook = _counting_hook(flops, counted)
            handles.append(module.register_forward_hook(hook, with_kwargs=True))
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        with _no_mha_fast_path():
            call_model(model, example)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
    return flops
