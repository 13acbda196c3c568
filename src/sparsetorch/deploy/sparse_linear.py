"""SparseLinear: a Linear layer whose weight lives in one or more compute paths, dispatched by
measurement per input size (see dispatch.py).

Under torch.compile or inside a CUDA-graph capture nothing is measured: the layer uses the
choice made in eager mode for the input's M bucket (``tune``), and dense (or, without a dense
candidate, the first candidate) for a bucket never measured. So ``fullgraph=True`` holds.

As a module it stands in for the nn.Linear it replaced:

- ``state_dict()`` holds ``weight`` (dense (out, in), zeros where pruned: the dense path's own
  tensor, else rebuilt from a sparse path, so no dense copy is kept for it) and ``bias``, under
  nn.Linear's names: state dicts load from the dense model into the sparsified one and back;
- ``load_state_dict`` and ``.to()`` / ``.half()`` / ``.cuda()`` / ... re-prepare every path from
  the dense weight. A candidate that cannot run the new weight, device or dtype is set aside in
  ``dropped`` (with the reason) and comes back when a later move allows it again; the
  dispatcher's choices are forgotten (the layer key names dtype and density bucket);
- ``weight`` is the dense (out, in) weight (read-only), for parents that read their child's
  weight themselves (``nn.MultiheadAttention`` passes ``out_proj.weight`` to its functional
  form, so no sparse path would run there: ``sparsify_`` leaves such layers dense);
- ``copy.deepcopy`` and ``pickle`` work: the state holds the dense weight, bias, candidates
  and choices, and the copy re-prepares its paths (a CUDA graph or a torch sparse tensor
  cannot be copied itself).

It also stands in for transformers' ``Conv1D`` (GPT-2's layers: ``x @ weight + bias`` with the
weight stored ``(in, out)``). The paths hold the ``(out, in)`` rows as for a Linear, while
``weight``, ``state_dict()`` and ``load_state_dict`` keep the ``(in, out)`` layout of the
module it replaced (``transposed`` is True), so a Hugging Face checkpoint loads either way and
``unwrap_dense_`` gives back a ``Conv1D``.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from sparsetorch.deploy.compute_paths import PATHS, DensePath
from sparsetorch.deploy.dispatch import Dispatcher, density_bucket, m_bucket
from sparsetorch.deploy.graphed import in_outer_graph
from sparsetorch.formats import BSR
from sparsetorch.masking.kinds import is_hf_conv1d


def prepare_paths(
    weight: torch.Tensor, bias: torch.Tensor | None, candidates: list[str]
) -> tuple[dict, dict[str, str]]:
    """({name: path} for the candidates that can run ``weight``, {name: why not} for the rest)."""
    paths, dropped = {}, {}
    for name in candidates:
        cls = PATHS.lookup(name)
        reason = cls.unsupported(weight)
        if reason is None:
            paths[name] = cls(weight, bias)
        else:
            dropped[name] = reason
    return paths, dropped


def linear_rows(module: nn.Module) -> torch.Tensor:
    """The ``(out, in)`` weight of an ``nn.Linear`` (its own tensor) or of transformers'
    ``Conv1D`` (a transposed view), detached. TypeError for any other module."""
    if isinstance(module, nn.Linear):
        return module.weight.detach()
    if is_hf_conv1d(module):
        return module.weight.detach().t()
    raise TypeError(
        f"SparseLinear replaces an nn.Linear or a transformers Conv1D, got {type(module).__name__}"
    )


def _plain_attributes(module: nn.Module) -> dict:
    """A module's own data attributes outside nn.Module's state (a Conv1D's ``nf`` and ``nx``;
    not a ``forward`` some hook set on the instance)."""
    return {
        k: v
        for k, v in vars(module).items()
        if not k.startswith("_") and k != "training" and not callable(v)
    }


def _reasons(dropped: dict[str, str]) -> str:
    return "; ".join(f"{name}: {reason}" for name, reason in dropped.items())


class SparseLinear(nn.Module):
    # the conversion function (``.to()``) or error list (``load_state_dict``) of the last call
    # that warned: every layer of one call sees the same object, so a model warns once
    _warned_for: object = None

    def __init__(
        self,
        linear: nn.Module,
        candidates: list[str],
        dispatcher: Dispatcher,
        name: str = "",
    ) -> None:
        super().__init__()
        if not candidates:
            raise ValueError(f"candidates of layer {name!r} must name at least one compute path")
        rows = linear_rows(linear)  # (out, in)
        self.out_features, self.in_features = rows.shape
        # transformers' Conv1D: the parent, state_dict and unwrap_dense_ see (in, out); its
        # class and plain attributes rebuild it in unwrap_dense_
        conv1d = not isinstance(linear, nn.Linear)
        self.replaced = (type(linear), _plain_attributes(linear)) if conv1d else None
        self.name = name
        self.dispatcher = dispatcher
        self.candidates = list(candidates)  # as asked; every re-preparation starts from these
        self.dropped: dict[str, str] = {}  # candidate -> why it cannot run here and now
        weight = rows.contiguous()  # a Conv1D's rows are copied once, as nn.Linear keeps them
        bias = None if linear.bias is None else linear.bias.detach()
        # built as asked (the caller checked support: sparsify_ does); re-preparing checks
        self._install(weight, bias, {c: PATHS.lookup(c)(weight, bias) for c in candidates})

    def _install(self, weight: torch.Tensor, bias: torch.Tensor | None, paths: dict) -> None:
        self.device, self.dtype = weight.device, weight.dtype
        self.bias = bias
        self.paths = paths
        # what the timings depend on: shape, dtype, engines, and the sparsity: the density
        # bucket, and for block formats the bucket of their stored-block fraction - one shape
        # at 50% and at 99% must not share a decision (the dispatcher's cache is on disk,
        # across processes), while layers of one shape at similar densities share one
        # measurement (a bounded first call)
        density = int(torch.count_nonzero(weight)) / max(weight.numel(), 1)
        structure = "".join(
            f"|{name} blocks {density_bucket(fmt.nblocks * math.prod(fmt.blocksize) / weight.numel())}"
            for name, fmt in sorted((n, getattr(p, "format", None)) for n, p in paths.items())
            if isinstance(fmt, BSR)
        )
        self.layer_key = (
            f"{self.out_features}x{self.in_features}|{weight.dtype}|{'+'.join(sorted(paths))}"
            f"|density {density_bucket(density)}{structure}"
        )
        self.chosen: dict[int, str] = {}  # M -> path name, for the report
        self.choices: dict[int, str] = {}  # M bucket -> path name, read under compile

    @property
    def transposed(self) -> bool:
        """Whether it replaced a transformers ``Conv1D`` (weight shown ``(in, out)``)."""
        return self.replaced is not None

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight, zeros where pruned (see ``dense_weight``), in the layout of the
        module replaced: (out, in), or (in, out) for a Conv1D (a view). What a parent module
        that reads ``child.weight`` itself gets. Read-only."""
        rows = self.dense_weight()
        return rows.t() if self.transposed else rows

    def __getstate__(self) -> dict:
        """Copies and pickles hold the dense weight instead of the paths (CUDA graphs and
        torch's sparse tensors cannot be copied); ``__setstate__`` re-prepares them."""
        state = dict(self.__dict__)
        paths = state.pop("paths")
        path = paths.get("dense") or next(iter(paths.values()))
        state["_weight_for_paths"] = path.dense_weight()
        state["_path_names"] = list(paths)
        return state

    def __setstate__(self, state: dict) -> None:
        weight = state.pop("_weight_for_paths")
        names = state.pop("_path_names")
        self.__dict__.update(state)
        self.paths = {name: PATHS.lookup(name)(weight, self.bias) for name in names}

    def dense_weight(self) -> torch.Tensor:
        """The dense (out, in) weight: the dense path's tensor if there is one, else rebuilt
        (a new tensor) from the first path; a zero's sign may not survive a sparse format."""
        path = self.paths.get("dense") or next(iter(self.paths.values()))
        return path.dense_weight()

    def _warn_dense_only(self, call: object, what: str) -> None:
        """One warning per call (not per layer) when sparse candidates are set aside and only
        dense remains."""
        if not self.dropped or set(self.paths) != {"dense"} or SparseLinear._warned_for is call:
            return
        SparseLinear._warned_for = call
        warnings.warn(
            f"{what}: SparseLinear {self.name!r} runs only its dense path on {self.dtype} "
            f"{self.device} ({_reasons(self.dropped)}); other layers of this model may too: "
            "see each layer's .dropped",
            RuntimeWarning,
            stacklevel=2,
        )

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        # contiguous: safetensors (save_pretrained) refuses a transposed view
        destination[prefix + "weight"] = self.weight.contiguous()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ):
        names = ["weight"] if self.bias is None else ["weight", "bias"]
        ours = {prefix + n for n in names}
        rest = {k: v for k, v in state_dict.items() if k not in ours}
        # the base class runs the load pre-hooks and flags unexpected keys (strict)
        super()._load_from_state_dict(
            rest, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )
        missing_keys.extend(prefix + n for n in names if prefix + n not in state_dict)
        given = {n: state_dict[prefix + n] for n in names if prefix + n in state_dict}
        if not given:
            return
        rows = (self.out_features, self.in_features)
        shapes = {"weight": rows[::-1] if self.transposed else rows, "bias": (self.out_features,)}
        assign = local_metadata.get("assign_to_params_buffers", False)
        loaded = {}
        for name, value in given.items():
            key = prefix + name
            if not isinstance(value, torch.Tensor):
                errors.append(
                    f"While copying the parameter named {key!r}, expected torch.Tensor from "
                    f"checkpoint but received {type(value).__name__}"
                )
                return
            if value.shape != shapes[name]:
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {value.shape} from "
                    f"checkpoint, the shape in current model is {torch.Size(shapes[name])}."
                )
                return
            # like nn.Linear, which copies into its parameters: never alias the state dict
            like = self.bias if name == "bias" else self  # both have .device and .dtype
            value = value.detach()
            loaded[name] = value if assign else value.to(like.device, like.dtype, copy=True)
        if self.transposed and "weight" in loaded:
            loaded["weight"] = loaded["weight"].t().contiguous()  # (in, out) -> (out, in)
        weight = loaded["weight"] if "weight" in loaded else self.dense_weight()
        bias = loaded.get("bias", self.bias)
        paths, dropped = prepare_paths(weight, bias, self.candidates)
        if not paths:
            layer = prefix[:-1] or self.name
            errors.append(
                f"{prefix}weight: no compute path of SparseLinear {layer!r} can run the loaded "
                f"weight ({_reasons(dropped)}); the layer was left as it was"
            )
            return
        self.dropped = dropped
        self._install(weight, bias, paths)
        self._warn_dense_only(errors, "load_state_dict")

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        with torch.no_grad():
            old = self.dense_weight()
            weight = fn(old)
            bias = None if self.bias is None else fn(self.bias)
        if weight is old and bias is self.bias:  # nothing converted: paths and choices stay
            return self
        paths, self.dropped = prepare_paths(weight, bias, self.candidates)
        self._install(weight, bias, paths or {"dense": DensePath(weight, bias)})
        self._warn_dense_only(fn, f"moving to {weight.dtype} {weight.device}")
        return self

    def _known(self, m) -> str | None:
        """The path chosen before for M rows' bucket (None: not chosen yet, or M symbolic),
        recorded in ``chosen`` in eager mode (a trace writes no state). The hot path: a chosen
        bucket needs no capture check and no dispatcher (eager decode is host bound)."""
        if type(m) is not int:
            return None
        name = self.choices.get(m_bucket(m))
        if name is not None and m not in self.chosen and not torch.compiler.is_compiling():
            self.chosen[m] = name
        return name

    def path_for(self, x2: torch.Tensor) -> str:
        """The path for a (M, in) input: measured once per M bucket in eager mode."""
        if len(self.paths) == 1:
            return next(iter(self.paths))
        m = x2.shape[0]
        name = self._known(m)
        if name is not None:
            return name
        if in_outer_graph(x2):  # compiling or capturing: never time, never write state
            for bucket, name in self.choices.items():
                if bucket // 2 < m <= bucket:  # comparisons, so a symbolic M also works
                    return name
            return "dense" if "dense" in self.paths else next(iter(self.paths))
        # eager, first input of this bucket: the dispatcher (measures or reads its cache)
        name = self.choices[m_bucket(m)] = self.dispatcher.choose(self.layer_key, self.paths, x2)
        self.chosen[m] = name
        return name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # (M, in): no reshapes
            return self.paths[self.path_for(x)](x)
        lead = x.shape[:-1]
        if self._known(math.prod(lead)) == "dense":
            return self.paths["dense"](x)  # F.linear takes the leading dims: no reshapes
        x2 = x.reshape(-1, self.in_features)  # (M, in)
        return self.paths[self.path_for(x2)](x2).reshape(*lead, self.out_features)

    def set_choices(self, choices: dict[int, str]) -> None:
        """Replace the M-bucket choices (``verify_`` pins buckets to dense and restores them);
        ``chosen`` follows, so ``tune`` and ``compact_`` report and keep what runs."""
        choices = dict(choices)  # may be self.choices itself
        self.choices.clear()
        self.choices.update(choices)
        for m in self.chosen:
            self.chosen[m] = self.choices.get(m_bucket(m), self.chosen[m])

    def tune(self, ms: list[int]) -> dict[int, str]:
        """Measure ahead of time for these row counts (so no timing happens while serving)."""
        with torch.no_grad():
            for m in ms:
                self(torch.zeros(m, self.in_features, device=self.device, dtype=self.dtype))
        return dict(self.chosen)

    def compact_(self) -> None:
        """Free every path never chosen so far (keeps at least one); they also leave the
        candidates, so a later load or move does not rebuild them."""
        keep = set(self.choices.values()) or {next(iter(self.paths))}  # chosen: among them
        self.paths = {k: v for k, v in self.paths.items() if k in keep}
        self.candidates = [c for c in self.candidates if c in keep]
        self.layer_key = f"{self.layer_key}|kept {'+'.join(sorted(self.paths))}"

    def extra_repr(self) -> str:
        parts = [
            f"in_features={self.in_features}",
            f"out_features={self.out_features}",
            f"bias={self.bias is not None}",
            f"paths={list(self.paths)}",
        ]
        if self.transposed:
            parts.append(f"transposed=True (replaces {self.replaced[0].__name__})")
        if self.dropped:
            parts.append(f"dropped={self.dropped}")
        if self.choices:
            per_bucket = ", ".join(f"M<={b}: {n}" for b, n in sorted(self.choices.items()))
            parts.append(f"choices={{{per_bucket}}}")
        return ", ".join(parts)
