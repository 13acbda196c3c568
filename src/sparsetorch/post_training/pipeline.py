"""``oneshot(model, method, calibration, sparsity=... | pattern=...)``: post-training pruning,
layer-wise and one block at a time, as in the Wanda and SparseGPT papers.

1. How every block is called is recorded on the calibration batches, in one forward pass of
   the model (``capture``).
2. For each block in order: forward hooks on its layers collect the statistics the method
   needs while the block runs on its inputs; every layer is pruned (masks attached with
   ``sparsetorch.masking``, pruned weights exact zeros); then the block runs again, pruned, and
   its outputs are the next block's inputs (``sequential=True``, as both papers do; with
   ``sequential=False`` the dense block's outputs are used, so every layer sees the dense
   model's activations).
3. A model with several stacks of blocks (an encoder and a decoder, two towers) is pruned one
   stack after the other. With ``sequential=True`` each stack's calls are recorded once the
   stacks before it are pruned (a decoder attends to the pruned encoder's outputs); with
   ``sequential=False`` all are recorded at once on the dense model.
4. Data-free methods (magnitude) prune every layer directly, without forward passes.

The model is in eval mode and under ``torch.no_grad`` throughout (training flags and every
Hugging Face ``config.use_cache`` in the model, a decoder stack's own copy included, are
restored afterwards). The same model, data and arguments give the same masks and weights,
bitwise. An error while blocks are processed leaves the blocks already done pruned.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from sparsetorch._checks import is_real
from sparsetorch.patterns import NM, Pattern, Unstructured
from sparsetorch.patterns import get as get_pattern
from sparsetorch.post_training.blocks import Block, resolve_blocks, stack_of, stacks
from sparsetorch.post_training.calibration import as_calls
from sparsetorch.post_training.capture import BlockCall, first_tensor, record_calls
from sparsetorch.post_training.layers import FilterFn, Layer, block_layers
from sparsetorch.post_training.method import OneShotMethod, Target
from sparsetorch.post_training.offload import NoPlacement, Placement
from sparsetorch.post_training.statistics import InputStatistics, Recorder, stats_dtype


def make_target(sparsity: float | None, pattern: str | Pattern | None) -> Target:
    """The per-layer mask from ``sparsity`` and ``pattern`` (unstructured or N:M)."""
    if sparsity is not None:
        if not is_real(sparsity):
            raise TypeError(f"sparsity must be a float in [0, 1), got {sparsity!r}")
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        sparsity = float(sparsity)
    found = get_pattern("unstructured" if pattern is None else pattern)
    if isinstance(found, NM):
        nm_sparsity = 1 - found.n / found.m
        if sparsity is not None and abs(sparsity - nm_sparsity) > 1e-9:
            raise ValueError(
                f"pattern {found.name!r} prunes {found.m - found.n} of every {found.m} weights "
                f"(sparsity {nm_sparsity:g}); leave sparsity out, got {sparsity}"
            )
        return Target(found, None)
    if not isinstance(found, Unstructured):
        raise ValueError(
            f"oneshot supports the patterns unstructured and N:M (e.g. '2:4', '4:8'), got "
            f"{found.name!r}"
        )
    if sparsity is None:
        raise ValueError("pass sparsity= in [0, 1) (or an N:M pattern, e.g. pattern='2:4')")
    return Target(found, 1.0 - sparsity)


def _method(method: str | OneShotMethod) -> OneShotMethod:
    from sparsetorch.post_training import METHODS

    found = METHODS.build(method)
    if not isinstance(found, OneShotMethod):
        raise TypeError(
            f"method must be a name ({', '.join(METHODS.names())}) or a OneShotMethod, got "
            f"{type(method).__name__}"
        )
    return found


def _device(device: str | torch.device) -> torch.device:
    """``device`` with its index: "cuda" is the current CUDA device, as tensors report it."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _caching_configs(model: nn.Module) -> list[Any]:
    """Every distinct config object in the model with ``use_cache`` on: the model's, and the
    copies a Hugging Face model's parts keep (T5's decoder stack has its own)."""
    found = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "use_cache", None) is True:
            found[id(config)] = config
    return list(found.values())


@contextlib.contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """Eval mode, no grad, no key/value cache; the model's flags restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    caching = _caching_configs(model)
    try:
        model.eval()
        for config in caching:
            config.use_cache = False
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
        for config in caching:
            config.use_cache = True


def _prune_layers(
    layers: Sequence[Layer],
    method: OneShotMethod,
    target: Target,
    stats: dict[str, InputStatistics] | None,
) -> None:
    if stats is not None:
        unseen = [layer.fqn for layer in layers if stats[layer.fqn].tokens == 0]
        if unseen:
            raise ValueError(
                f"layers {unseen} received no input on the calibration data, so {method.name} "
                "cannot score them: leave them out with filter_fn"
            )
    for layer in layers:
        weight = layer.rows().to(stats_dtype(layer.weight))  # (out, in)
        try:
            new, keep = method.prune(weight, None if stats is None else stats[layer.fqn], target)
        except ValueError as exc:
            raise ValueError(f"layer {layer.fqn!r}: {exc}") from exc
        layer.write(new, keep)


def _run_block(
    block: nn.Module, calls: Sequence[BlockCall], recorder: Recorder | None = None
) -> list[torch.Tensor]:
    outputs = []
    for call in calls:
        if recorder is not None:
            recorder.tokens = call.tokens
        outputs.append(first_tensor(call.run(block)))
    return outputs


def oneshot(
    model: nn.Module,
    method: str | OneShotMethod = "wanda",
    calibration: Iterable[Any] | None = None,
    *,
    sparsity: float | None = None,
    pattern: str | Pattern | None = None,
    filter_fn: FilterFn | None = None,
    blocks: str | Sequence[str | nn.Module] | None = None,
    sequential: bool = True,
    device: str | torch.device | None = None,
    offload: bool | None = None,
) -> nn.Module:
    """Prune ``model`` in place after training, layer by layer, from calibration data.

    Args:
        model: any ``nn.Module``; its Linear layers inside the blocks are pruned (and the
            ``Conv1D`` of Hugging Face GPT-2).
        method: ``"magnitude"`` (data-free), ``"wanda"``, ``"sparsegpt"``, or a method
            instance, e.g. ``SparseGPT(blocksize=128, dampening=0.01)``.
        calibration: an iterable of batches (a list, a DataLoader); a batch is a tensor, a
            tuple of positional inputs or a dict of keyword inputs. Not needed by magnitude.
        sparsity: the fraction of each layer's weights to prune, in [0, 1) (unstructured).
        pattern: ``"unstructured"`` (default) or ``"N:M"`` such as ``"2:4"``/``"4:8"``: N kept
            in every M consecutive inputs (then ``sparsity`` may be left out).
        filter_fn: ``filter_fn(module, fqn) -> bool``; True keeps a layer in.
        blocks: the blocks to go through one at a time: a container's name (its children) or
            a list of module names or modules; default: found (``oneshot.blocks``).
        sequential: feed each block the outputs of the already pruned blocks (True, the
            papers'), or of the dense ones (False).
        device: where to compute (default: the model's device); batches are moved there.
        offload: keep only the block being processed on ``device`` (default: True when the
            model is elsewhere, e.g. on the CPU with ``device="cuda"``); False moves the whole
            model to ``device`` and leaves it there.

    Returns the model, pruned in place, with masks attached (``st.masks(model)``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    method = _method(method)
    target = make_target(sparsity, pattern)
    method.check(target)
    if not isinstance(sequential, bool):
        raise TypeError(f"sequential must be True or False, got {sequential!r}")
    if offload is not None and not isinstance(offload, bool):
        raise TypeError(f"offload must be True, False or None, got {offload!r}")
    found_blocks = resolve_blocks(model, blocks)
    layers = [block_layers(name, block, filter_fn) for name, block in found_blocks]
    if not any(layers):
        raise ValueError(
            "no layer to prune: the blocks hold no Linear layer"
            + (" that filter_fn accepts" if filter_fn is not None else "")
        )
    calls = as_calls(calibration)
    if method.statistics is None:
        with _inference(model):
            for block_layers_ in layers:
                _prune_layers(block_layers_, method, target, None)
        return model
    if not calls:
        raise ValueError(f"method {method.name!r} needs calibration batches (calibration=...)")
    compute = _device(device) if device is not None else _model_device(model)
    placement = _placement(model, found_blocks, compute, offload)
    with _inference(model):
        _sequential(
            model, found_blocks, layers, calls, method, target, sequential, compute, placement
        )
    return model


def _placement(
    model: nn.Module, blocks: Sequence[Block], device: torch.device, offload: bool | None
) -> Placement | NoPlacement:
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device == device for t in tensors):
        return NoPlacement()
    if offload is False:
        model.to(device)
        return NoPlacement()
    return Placement(model, [block for _, block in blocks], device)


def _sequential(
    model: nn.Module,
    blocks: Sequence[Block],
    layers: Sequence[Sequence[Layer]],
    calls: Sequence[Any],
    method: OneShotMethod,
    target: Target,
    sequential: bool,
    device: torch.device,
    placement: Placement | NoPlacement,
) -> None:
    """Every stack with a layer to prune, its blocks up to its last such block, one block at
    a time (the module docstring's steps 1-3)."""
    todo = {name: found for (name, _), found in zip(blocks, layers, strict=True)}
    work = []  # stacks cut after their last block with layers
    for stack in stacks(blocks):
        with_layers = [i for i, (name, _) in enumerate(stack) if todo[name]]
        if with_layers:
            work.append(stack[: with_layers[-1] + 1])
    # sequential: each stack recorded once the stacks before it are pruned; else all at once
    runs = work if sequential else [[block for stack in work for block in stack]]
    for k, run in enumerate(runs):
        others = [b for b in blocks if b not in run]  # run too (an encoder before a decoder)
        with placement.outside_blocks():
            recorded = record_calls(model, run, calls, device, placement.block, others)
        if sequential and k == 0 and len(blocks) > 1:
            first = recorded[0][0]
            first.with_hidden(first.hidden())  # fails now if blocks cannot be chained
        _warn_unchained(run, recorded, sequential)
        _prune_run(run, recorded, todo, method, target, sequential, placement)


def _warn_unchained(run: Sequence[Block], recorded: list[list[BlockCall]], sequential: bool):
    """Blocks after the first of a stack whose input is not the block before's output: they
    get the dense model's input, recorded, even with ``sequential``."""
    parents = [stack_of(name) for name, _ in run]
    loose = [
        name
        for i, (name, _) in enumerate(run)
        if sequential and i and parents[i] == parents[i - 1] and not recorded[i][0].chained
    ]
    if loose:
        warnings.warn(
            f"oneshot: the model changes the hidden states between blocks before {loose}: "
            "those blocks are calibrated on the dense model's inputs, not the pruned blocks' "
            "outputs",
            stacklevel=4,
        )


def _prune_run(
    run: Sequence[Block],
    recorded: list[list[BlockCall]],
    todo: dict[str, Sequence[Layer]],
    method: OneShotMethod,
    target: Target,
    sequential: bool,
    placement: Placement | NoPlacement,
) -> None:
    """The blocks in order, each on its recorded calls, a chained call fed the block before's
    outputs (pruned with ``sequential``, else dense)."""
    outputs: list[torch.Tensor] = []
    for i, (name, block) in enumerate(run):
        inputs = [c.with_hidden(outputs[b]) if c.chained else c for b, c in enumerate(recorded[i])]
        recorded[i] = []  # the calls are done with: their tensors can go
        feeds_next = i + 1 < len(run) and any(c.chained for c in recorded[i + 1])
        with placement.block(block):
            if todo[name]:
                with Recorder(todo[name], method.statistics) as recorder:
                    outputs = _run_block(block, inputs, recorder)
                _prune_layers(todo[name], method, target, recorder.stats)
                if sequential and feeds_next:
                    outputs = _run_block(block, inputs)
            elif feeds_next:
                outputs = _run_block(block, inputs)
