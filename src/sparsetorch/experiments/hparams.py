"""A run's hyperparameters: four dataclasses (model, dataset, training, sparsity) in one
:class:`Hparams`, as in OpenLTH.

The fields are the single source of truth: they generate the command-line flags
(``experiments/flags.py``), read and write the JSON/YAML config file, and name the run
directory by a short hash of the fields that differ from their defaults (:func:`run_hash`), so
that re-running a finished command finds its work. Field metadata:

* ``help``: the flag's help text;
* ``flag``: the flag name when it is not ``--field-name`` (flags are flat: ``--lr``);
* ``identity``: False for fields that do not change the result (where the data lives);
* ``baseline``: the value the identity compares against when it is not the default (a
  default resolved per run: ``distribution`` "auto" compares against "global", the default it
  replaced, so runs that resolve to "global" keep their hashes).

``sparsity.distribution`` defaults to "auto": :meth:`Hparams.validate` replaces it by the
default of the method's config (:func:`method_distribution`), so that ``--method rigl`` trains
RigL with ERK, as ``st.RigL(...)`` does. ``sparsity.options`` hold the method's options, one
command-line flag per field of its config dataclass; the identity counts those that differ
from the config's defaults.

This module does not import torch (neither do the algorithms' configs): building the CLI
parser stays cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsetorch._checks import is_int, is_real
from sparsetorch._files import atomic_write
from sparsetorch.algorithms.config import methods_help

# Bump when a field changes meaning; run dirs written by another version are refused.
HPARAMS_VERSION = 1
HASH_LENGTH = 10
# sparsity.distribution: the method's own default (resolved by Hparams.validate)
AUTO = "auto"
PRECISIONS = ("fp32", "bf16", "fp16")
LOGGERS = ("tensorboard", "wandb", "mlflow")
# training.eval_every's default evaluates at least this often in a run (and at least every epoch)
MIN_EVALUATIONS = 10


def default_eval_every(total_steps: int, steps_per_epoch: int) -> int:
    """Steps between evaluations when ``eval_every`` is not given: one epoch, or a tenth of
    the run (rounded down) when that is shorter: at least 10 evaluations a run, so that a
    1-epoch run draws 11 or more points (step 0 included) instead of 2; never less than one
    step."""
    return max(1, min(steps_per_epoch, total_steps // MIN_EVALUATIONS))


def _f(default: Any, help: str, **meta: Any) -> Any:
    meta["help"] = help
    return field(default=default, metadata=meta)


@dataclass
class ModelHparams:
    name: str = _f(
        "lenet300",
        "model: lenet300, conv2, conv4, conv6, resnet20 (or resnet<6n+2>), transformer, mlp "
        "(sized by the data), or your own nn.Module as module:callable or file.py:callable "
        "(this imports and runs that code)",
        flag="--model",
    )
    options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "model option KEY=VALUE, repeatable (e.g. d_model=64, hidden=300,100 for "
            "mlp; keyword arguments of your own callable)",
            "flag": "--model-option",
        },
    )


@dataclass
class DatasetHparams:
    name: str = _f(
        "fashion-mnist",
        "dataset: fashion-mnist, digits, text, or your own: PATH.npz (arrays x_train, y_train, "
        "x_test, y_test) or imagefolder:DIR (one subfolder per class)",
        flag="--dataset",
    )
    data_dir: str | None = _f(
        None,
        "where the dataset's files are (default: the dataset's own)",
        identity=False,
        metavar="DIR",
    )
    split_seed: int = _f(0, "seed of the fixed train/validation split")
    train_size: int | None = _f(None, "use only the first N training examples")
    val_size: int | None = _f(None, "use only the first N validation examples")
    test_size: int | None = _f(None, "use only the first N test examples")
    options: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "dataset option KEY=VALUE, repeatable (e.g. context=256 for text; "
            "val_fraction=0.1 for PATH.npz; size=32x32, mode=RGB, normalize=false for "
            "imagefolder:DIR)",
            "flag": "--data-option",
        },
    )


@dataclass
class TrainingHparams:
    optimizer: str = _f("adam", "sgd, momentum, adam or adamw")
    lr: float = _f(1.2e-3, "learning rate")
    momentum: float = _f(0.9, "momentum of the 'momentum' optimizer")
    weight_decay: float = _f(0.0, "weight decay (L2 for sgd/momentum/adam, decoupled for adamw)")
    batch_size: int = _f(60, "training batch size")
    epochs: int = _f(5, "training epochs (ignored when --steps is given)")
    steps: int | None = _f(None, "training steps (optimizer updates); replaces --epochs")
    lr_schedule: str = _f("constant", "constant, step (x gamma at each milestone) or cosine")
    milestones: tuple[int, ...] = _f((), "steps where the step schedule multiplies lr by gamma")
    gamma: float = _f(0.1, "factor of the step schedule")
    warmup_steps: int = _f(0, "linear learning-rate warmup over the first N steps")
    eval_every: int | None = _f(
        None,
        "evaluate (and checkpoint) every N steps; default: every epoch, more often in runs "
        f"shorter than {MIN_EVALUATIONS} epochs (at least {MIN_EVALUATIONS} evaluations a run)",
    )
    seed: int = _f(0, "seed of the initialisation (and of the data order unless --data-seed)")
    data_seed: int | None = _f(None, "seed of the data order (default: --seed)")
    precision: str = _f(
        "fp32",
        "fp32, bf16 (autocast to bfloat16) or fp16 (autocast to float16 with a GradScaler)",
    )
    log: str = _f(
        "auto",
        "where evaluation rows are logged besides metrics.jsonl: none, or any of tensorboard, "
        "wandb (offline unless WANDB_MODE is set), mlflow (a file store in the run dir unless "
        "MLFLOW_TRACKING_URI is set), comma-separated; auto = tensorboard when installed",
        identity=False,
        metavar="NAME,...",
    )
    sparse_kernels: bool = _f(
        False,
        "train masked Linear layers through sparsetorch's sparse CPU kernels "
        "(st.accelerate_: forward, gradients and the Adam/SGD step over kept weights only; "
        "CPU, float32/bfloat16; results equal masked dense training to float rounding)",
    )


@dataclass
class SparsityHparams:
    method: str = _f("dense", "sparsity method: " + methods_help())
    sparsity: float = _f(0.0, "target sparsity in [0, 1); required (> 0) by every method but dense")
    pattern: str = _f("unstructured", "mask pattern: unstructured, N:M (2:4), blockHxW, channel")
    distribution: str = _f(
        AUTO,
        "how sparsity is spread over layers: global, uniform, erk; auto = the method's own "
        "default: erk for rigl/set, uniform for gmp, global otherwise",
        baseline="global",
    )
    # the method's options; one flag per field of the method's config dataclass
    # (sparsetorch.algorithms.config): --delta-t, --alpha, --batches, ...
    options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "the method's options, one flag each", "method_options": True},
    )

    def config(self) -> Any:
        """The method's config dataclass built from these hparams (None for "dense");
        raises ValueError/TypeError for an unknown method or a bad option."""
        if self.method == "dense":
            return None
        from sparsetorch.algorithms.config import CONFIGS

        check_method(self.method)
        cls = CONFIGS.lookup(self.method)
        distribution = (
            cls.default("distribution") if self.distribution == AUTO else self.distribution
        )
        return cls.from_options(
            self.options, sparsity=self.sparsity, pattern=self.pattern, distribution=distribution
        )


GROUPS: dict[str, type] = {
    "model": ModelHparams,
    "dataset": DatasetHparams,
    "training": TrainingHparams,
    "sparsity": SparsityHparams,
}


@dataclass
class Hparams:
    model: ModelHparams = field(default_factory=ModelHparams)
    dataset: DatasetHparams = field(default_factory=DatasetHparams)
    training: TrainingHparams = field(default_factory=TrainingHparams)
    sparsity: SparsityHparams = field(default_factory=SparsityHparams)

    # ---- dicts and files ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"version": V, group: {field: value}}``: JSON-ready (tuples become lists)."""
        out: dict[str, Any] = {"version": HPARAMS_VERSION}
        for group in GROUPS:
            out[group] = {
                f.name: _jsonable(getattr(getattr(self, group), f.name))
                for f in dataclasses.fields(GROUPS[group])
            }
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "hparams") -> Hparams:
        """Inverse of :meth:`to_dict`; missing fields keep their defaults, unknown ones fail."""
        if not isinstance(data, dict):
            raise TypeError(f"{where} must be a mapping of groups, got {type(data).__name__}")
        version = data.get("version", HPARAMS_VERSION)
        if version != HPARAMS_VERSION:
            raise ValueError(
                f"{where} was written for hparams version {version}; this sparsetorch reads "
                f"version {HPARAMS_VERSION} (start a new run dir)"
            )
        unknown = sorted(set(data) - set(GROUPS) - {"version"})
        if unknown:
            raise ValueError(f"{where}: unknown group(s) {unknown}; known: {', '.join(GROUPS)}")
        groups = {}
        for group, group_cls in GROUPS.items():
            values = data.get(group)
            values = {} if values is None else values
            if not isinstance(values, dict):
                raise TypeError(f"{where}: {group!r} must be a mapping, got {values!r}")
            fields = {f.name: f for f in dataclasses.fields(group_cls)}
            bad = sorted(set(values) - set(fields))
            if bad:
                raise ValueError(
                    f"{where}: unknown {group} field(s) {bad}; known: {', '.join(fields)}"
                )
            hints = typing.get_type_hints(group_cls)
            groups[group] = group_cls(
                **{k: coerce(v, hints[k], f"{group}.{k}") for k, v in values.items()}
            )
        return cls(**groups)

    def save(self, path: str | Path) -> None:
        """Write the config as JSON (``.json``) or YAML (``.yaml``/``.yml``)."""
        path = Path(path)
        data = self.to_dict()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False)
        else:
            text = json.dumps(data, indent=2) + "\n"
        atomic_write(path, lambda tmp: tmp.write_text(text))

    @classmethod
    def load(cls, path: str | Path) -> Hparams:
        """Read a JSON or YAML config (a run's ``hparams.json`` is one)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config {str(path)!r} is not a file")
        text = path.read_text()
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
            raise ValueError(f"config {str(path)!r} is not valid: {exc}") from exc
        return cls.from_dict(data or {}, where=f"config {str(path)!r}")

    # ---- identity -------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """The fields that differ from their defaults (or ``baseline``), as
        ``{"group.field": value}``. Fields marked ``identity=False`` are left out; ``epochs``
        is left out when ``steps`` is set (steps replace it); distribution "auto" counts as
        the value it resolves to."""
        out: dict[str, Any] = {}
        for group, group_cls in GROUPS.items():
            values = getattr(self, group)
            for f in dataclasses.fields(group_cls):
                if not f.metadata.get("identity", True):
                    continue
                if group == "training" and f.name == "epochs" and values.steps is not None:
                    continue
                value = getattr(values, f.name)
                if group == "sparsity" and f.name == "distribution" and value == AUTO:
                    value = method_distribution(values.method.strip().lower())
                if group == "sparsity" and f.name == "options":
                    value = _method_options(values)
                value = _jsonable(value)
                if value != _jsonable(f.metadata.get("baseline", _default(f))):
                    out[f"{group}.{f.name}"] = value
        return out

    # ---- checks ---------------------------------------------------------------------------
    def validate(self) -> Hparams:
        """Check types and ranges, normalising losslessly in place (int -> float, list ->
        tuple) and resolving distribution "auto" to the method's default; names are checked
        against their registries, and the method's options by its config, by the runner
        (``experiments.runner.check_names``) before a run dir exists. Returns self."""
        for group, group_cls in GROUPS.items():
            hints = typing.get_type_hints(group_cls)
            values = getattr(self, group)
            if not isinstance(values, group_cls):
                raise TypeError(f"hparams.{group} must be a {group_cls.__name__}")
            for f in dataclasses.fields(group_cls):
                value = coerce(getattr(values, f.name), hints[f.name], f"{group}.{f.name}")
                setattr(values, f.name, value)
        t, s, d = self.training, self.sparsity, self.dataset
        for values, name in _NAME_FIELDS:  # registry names are case-insensitive
            group = getattr(self, values)
            setattr(group, name, normal_name(values, getattr(group, name)))
        t.precision = t.precision.strip().lower()
        _check(
            t.precision in PRECISIONS, "training.precision", t.precision, " or ".join(PRECISIONS)
        )
        t.log = ",".join(loggers(t.log)) or "none"
        if s.distribution == AUTO:
            s.distribution = method_distribution(s.method)
        _check(t.lr > 0 and math.isfinite(t.lr), "training.lr", t.lr, "a finite number > 0")
        _check(0 <= t.momentum < 1, "training.momentum", t.momentum, "[0, 1)")
        _check(t.weight_decay >= 0, "training.weight_decay", t.weight_decay, ">= 0")
        _check(t.batch_size >= 1, "training.batch_size", t.batch_size, ">= 1")
        _check(t.epochs >= 1, "training.epochs", t.epochs, ">= 1")
        _check(t.steps is None or t.steps >= 1, "training.steps", t.steps, ">= 1")
        _check(0 < t.gamma <= 1, "training.gamma", t.gamma, "(0, 1]")
        _check(t.warmup_steps >= 0, "training.warmup_steps", t.warmup_steps, ">= 0")
        _check(
            t.eval_every is None or t.eval_every >= 1, "training.eval_every", t.eval_every, ">= 1"
        )
        ms = t.milestones
        _check(
            all(m >= 1 for m in ms) and list(ms) == sorted(set(ms)),
            "training.milestones",
            ms,
            "strictly increasing steps >= 1",
        )
        if t.lr_schedule == "step" and not ms:
            raise ValueError("training.milestones must be given for lr_schedule 'step'")
        if ms and t.lr_schedule != "step":
            raise ValueError(
                f"training.milestones is only used by lr_schedule 'step', not {t.lr_schedule!r}"
            )
        for name in ("train_size", "val_size", "test_size"):
            n = getattr(d, name)
            _check(n is None or n >= 1, f"dataset.{name}", n, ">= 1")
        _check(0 <= s.sparsity < 1, "sparsity.sparsity", s.sparsity, "[0, 1)")
        if s.method == "dense" and s.sparsity > 0:
            raise ValueError(
                f"sparsity.sparsity is {s.sparsity} but sparsity.method is 'dense': choose a "
                "method (e.g. --method snip or --method rigl) to reach a sparsity"
            )
        if s.sparsity == 0 and _known_method(s.method) and s.method != "dense":
            raise ValueError(
                f"sparsity.method is {s.method!r} but sparsity.sparsity is 0: give the target "
                "sparsity (--sparsity 0.9, or sparsity: {sparsity: 0.9} in a config file); at "
                "0 nothing would be pruned and the model would train dense"
            )
        return self


_NAME_FIELDS = (
    ("model", "name"),
    ("dataset", "name"),
    ("training", "optimizer"),
    ("training", "lr_schedule"),
    ("sparsity", "method"),
    ("sparsity", "pattern"),
    ("sparsity", "distribution"),
)


def normal_name(group: str, name: str) -> str:
    """Registry names are case-insensitive (lowercased); a data set of your own (``PATH.npz``,
    ``imagefolder:DIR``) and a model reference (``module:callable``) keep their case."""
    name = name.strip()
    if group == "dataset" and name[:12].lower() == "imagefolder:":
        return "imagefolder:" + name[12:]
    if (group == "dataset" and name.lower().endswith(".npz")) or (group == "model" and ":" in name):
        return name
    return name.lower()


def loggers(spec: str) -> list[str]:
    """``"wandb,mlflow"`` -> ``["wandb", "mlflow"]``; "none" -> []; "auto" -> ["auto"]."""
    names = [part.strip().lower() for part in spec.split(",") if part.strip()]
    if names == [AUTO] or names == ["none"]:
        return [] if names == ["none"] else names
    bad = [n for n in names if n not in LOGGERS]
    if bad or not names:
        raise ValueError(
            f"training.log must be auto, none, or any of {', '.join(LOGGERS)} separated by "
            f"commas, got {spec!r}"
        )
    return list(dict.fromkeys(names))


def model_label(name: str) -> str:
    """The model's name in directory names: a reference ``pkg.models:Net`` gives ``Net``."""
    label = name.rpartition(":")[2] if ":" in name else name
    return re.sub(r"[^\w.-]+", "_", label) or "model"


def _known_method(method: str) -> bool:
    from sparsetorch.algorithms.config import CONFIGS

    return method == "dense" or method in CONFIGS


def check_method(method: str) -> None:
    """ValueError listing the known methods unless ``method`` is "dense" or has a config."""
    from sparsetorch.algorithms.config import CONFIGS

    if not _known_method(method):
        known = ", ".join(["dense", *CONFIGS.names()])
        raise ValueError(f"unknown method {method!r}; known: {known}")


def method_distribution(method: str) -> str:
    """The default distribution of ``method``: its config's (``RigLConfig.distribution`` is
    "erk"); "global" for "dense" or an unknown method (the runner's name check says so)."""
    if method == "dense":
        return "global"
    from sparsetorch.algorithms.config import CONFIGS

    if method not in CONFIGS:
        return "global"
    return CONFIGS.lookup(method).default("distribution")


def _method_options(sparsity: SparsityHparams) -> dict[str, Any]:
    """The options of a run's identity: those that differ from the method config's defaults
    (as given, for an unknown method or bad options, which validation refuses)."""
    if sparsity.method.strip().lower() == "dense" or not sparsity.options:
        return sparsity.options
    try:
        return sparsity.config().options()
    except (ValueError, TypeError):
        return sparsity.options


def run_hash(identity: dict[str, Any]) -> str:
    """A short, stable hash of an identity dict (canonical JSON, SHA-256)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def run_name(hparams: Hparams, identity: dict[str, Any]) -> str:
    """``<model>-<method>-<hash>``, e.g. ``lenet300-dense-3f2a9c01be``."""
    return f"{model_label(hparams.model.name)}-{hparams.sparsity.method}-{run_hash(identity)}"


# ---- helpers ------------------------------------------------------------------------------
def identity_default(key: str) -> Any:
    """The value an ``identity()`` key (``"group.field"``) has when it is left out: its
    default or baseline, as ``identity()`` compares it. KeyError for another key."""
    group, _, name = key.partition(".")
    for f in dataclasses.fields(GROUPS[group]) if group in GROUPS else ():
        if f.name == name:
            return _jsonable(f.metadata.get("baseline", _default(f)))
    raise KeyError(key)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    return value


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def coerce(value: Any, hint: Any, name: str) -> Any:
    """Check ``value`` against a field's type hint, converting losslessly (int -> float,
    list -> tuple). Raises one TypeError naming the field."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(value, inner, name)
    origin = typing.get_origin(hint) or hint
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TypeError(f"{name} must be a list of {args[0].__name__}, got {value!r}")
        return tuple(coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError(f"{name} must be a mapping with string keys, got {value!r}")
        return dict(value)
    if origin is float and is_real(value):  # ints and numpy scalars: stored as a Python float
        return float(value)
    if origin is int and is_int(value):
        return int(value)
    if origin in (int, float, str, bool) and (
        isinstance(value, origin) and not (origin is not bool and isinstance(value, bool))
    ):
        return value
    raise TypeError(f"{name} must be {getattr(origin, '__name__', origin)}, got {value!r}")
