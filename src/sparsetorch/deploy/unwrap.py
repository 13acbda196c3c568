"""``unwrap_dense_``: give back plain ``nn.Linear`` layers where the choices are all dense.

Once the choices are final (after ``sparsify_`` and ``verify_``), a ``SparseLinear`` that runs
its dense path for every input size it was measured or verified for is then exactly the dense
model's layer, behind a dispatch. Unwrapping it removes the dispatch and the extra state.
"""

from __future__ import annotations

from torch import nn

from sparsetorch.deploy.sparse_linear import SparseLinear


def _all_dense(layer: SparseLinear) -> bool:
    """Every choice so far is dense (and there is one), or dense is the only path."""
    if "dense" not in layer.paths:
        return False
    if len(layer.paths) == 1:
        return True  # it can never run anything else
    return bool(layer.choices) and all(name == "dense" for name in layer.choices.values())


def _as_conv1d(layer: SparseLinear) -> nn.Module:
    """The transformers ``Conv1D`` a transposed layer replaced: its class and attributes, the
    weight an (in, out) copy of the dense path's rows, the bias the dense path's own."""
    cls, attributes = layer.replaced
    dense = layer.paths["dense"]
    module = cls.__new__(cls)  # no __init__: no storage, no draw from the global RNG
    nn.Module.__init__(module)
    module.__dict__.update(attributes)
    module.weight = nn.Parameter(dense.weight.t().contiguous(), requires_grad=False)
    module.bias = None if dense.bias is None else nn.Parameter(dense.bias, requires_grad=False)
    module.train(layer.training)
    return module


def _as_linear(layer: SparseLinear) -> nn.Module:
    """An nn.Linear whose parameters wrap the dense path's own tensors (no copy); for a layer
    that replaced a transformers ``Conv1D``, that ``Conv1D`` again."""
    if layer.transposed:
        return _as_conv1d(layer)
    dense = layer.paths["dense"]
    # on the meta device: no storage is allocated and the global RNG is not drawn from
    linear = nn.Linear(
        layer.in_features, layer.out_features, bias=dense.bias is not None, device="meta"
    )
    linear.weight = nn.Parameter(dense.weight, requires_grad=False)
    if dense.bias is not None:
        linear.bias = nn.Parameter(dense.bias, requires_grad=False)
    linear.train(layer.training)
    return linear


def unwrap_dense_(model: nn.Module) -> list[str]:
    """Replace, in place, every ``SparseLinear`` of ``model`` whose choices are all dense by a
    plain ``nn.Linear``; returns the qualified names (as in ``named_modules``) of the layers
    replaced, in model order.

    Why: a layer that runs dense for every input size it was verified for is then exactly the
    dense model's layer: the same kernel (``F.linear`` on the same tensors, so bitwise equal
    outputs), with no dispatch per call, no extra state (other paths, choices, dispatcher),
    and ``state_dict`` keys unchanged (``weight``, ``bias``). The new layer's parameters wrap
    the dense path's tensors without copying (``requires_grad=False``, same device and dtype).
    A layer that replaced a transformers ``Conv1D`` becomes that ``Conv1D`` again, its weight
    an ``(in, out)`` copy of the rows (its state dict is the Hugging Face layout).

    A layer qualifies if it has a ``"dense"`` path and every value of its ``choices`` is
    ``"dense"`` (with at least one choice), or if ``"dense"`` is its only path. A layer never
    measured (no choices, several paths) is left alone: nothing says its sparse paths lose.
    A layer registered under several parents is replaced by one ``nn.Linear`` everywhere and
    each position is listed. Hooks registered on a replaced ``SparseLinear`` do not carry over.

    Trade-off: an unwrapped layer can no longer choose a sparse path for an input size that
    was never verified; run the real workload (or ``SparseLinear.tune``) first.

    Raises ValueError if ``model`` is itself a ``SparseLinear``: a function cannot replace the
    caller's reference to it, so unwrap its parent instead.
    """
    if isinstance(model, SparseLinear):
        raise ValueError(
            f"unwrap_dense_ was given a SparseLinear ({model.name or 'unnamed'!r}) itself: it "
            "cannot replace the caller's reference to it; call unwrap_dense_ on its parent"
        )
    found = [
        (parent, prefix, attr, child)
        for prefix, parent in model.named_modules(remove_duplicate=False)
        for attr, child in parent._modules.items()
        if isinstance(child, SparseLinear) and _all_dense(child)
    ]
    replacements: dict[int, nn.Module] = {}  # one Linear per layer, so sharing is kept
    names = []
    for parent, prefix, attr, child in found:
        if id(child) not in replacements:
            replacements[id(child)] = _as_linear(child)
        setattr(parent, attr, replacements[id(child)])
        names.append(f"{prefix}.{attr}" if prefix else attr)
    return names


__all__ = ["unwrap_dense_"]
