"""``train(hparams, out_dir)``: one training run, reusable and resumable.

The steps, in the order that keeps a failed call from leaving anything half-written:

1. validate the hparams and the device, and resolve every name (model, dataset, optimizer,
   schedule, method) against its registry;
2. compute the run's identity (non-default hparams + digests of a given model, initial state
   or masks + the classes of extra hooks) and its directory ``out_dir/<model>-<method>-<hash>``;
   a finished directory is loaded and returned without training;
3. load the data, build the model (seeded), attach the method's hooks;
4. lock the run dir (a second process on it is refused), then train, resuming from
   ``checkpoints/resume.pt`` when present; a fresh run's files are written once every hook has
   started (a run refused by its method's checks leaves nothing, not even the directory);
5. write the final model, ``result.json`` (the completion mark), ``report.md`` and plots.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsetorch._checks import check_not_meta
from sparsetorch.data import Dataset, Split
from sparsetorch.experiments import run_state
from sparsetorch.experiments.data_order import steps_per_epoch
from sparsetorch.experiments.hooks import TrainHook
from sparsetorch.experiments.hparams import (
    AUTO,
    DatasetHparams,
    Hparams,
    default_eval_every,
    run_name,
)
from sparsetorch.experiments.layers import layer_densities
from sparsetorch.experiments.loop import Loop, fit
from sparsetorch.experiments.optim import LR_SCHEDULES, OPTIMIZERS, build_optimizer
from sparsetorch.experiments.precision import Precision
from sparsetorch.experiments.progress import progress_enabled
from sparsetorch.experiments.result import TrainResult, early_stop_row
from sparsetorch.experiments.rundir import RunDir, check_out_dir
from sparsetorch.experiments.trackers import check_trackers, open_trackers

# the name of your own data given to train(dataset=...) when hparams.dataset.name is the default
CUSTOM_DATASET = "custom"

StateDict = Mapping[str, torch.Tensor]


def train(
    hparams: Hparams,
    out_dir: str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    model: nn.Module | None = None,
    init_state: StateDict | None = None,
    masks: StateDict | None = None,
    hooks: Sequence[TrainHook] = (),
    save_states_at: Iterable[int] = (),
    dataset: Any = None,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    start_step: int = 0,
    distributed: str | None = None,
) -> TrainResult:
    """Train one run and return its :class:`TrainResult`.

    Args:
        hparams: the run's hyperparameters (copied; not modified).
        out_dir: parent directory; the run lives in ``out_dir/<model>-<method>-<hash>``.
        run_dir: exact run directory instead (e.g. one per IMP level). With neither, the run
            is in memory only: nothing written, no reuse, no resume.
        model: train this module instead of building ``hparams.model`` (its current weights
            are the initialisation).
        init_state: a state_dict loaded before training (``<param>_sparsity_mask`` entries
            attach masks).
        masks: ``{param name: bool mask}`` attached before training (pruned weights zeroed).
        hooks: extra :class:`TrainHook`s, called after the method's hooks.
        save_states_at: steps whose weights to keep (step 0, the initialisation, and the last
            step are always kept); read them with ``result.state_at(k)``.
        dataset: the data: a sparsetorch ``Dataset`` named by ``hparams.dataset`` (saves
            reloading it), or your own (``sparsetorch.data.as_dataset``): an ``(x, y)`` pair of
            tensors, a torch ``Dataset`` or ``DataLoader``, or a mapping ``{"train": ...,
            "test": ..., "val": ...}`` of them; a missing split is carved from the training
            examples (seed ``hparams.dataset.split_seed``). Your own data are read into memory
            once; the run's identity holds their digest, and ``hparams.dataset.name`` names
            them ("custom" when left at its default). The subset sizes of the hparams apply.
        device: where to train. CPU runs are bitwise reproducible.
        progress: show a progress bar (default: only on a terminal and outside CI).
        start_step: begin at this update instead of 0, with the data order and learning rates
            of that step (IMP's late rewinding retrains theta_k from step k); the weights it
            starts from are saved as step ``start_step``.
        distributed: ``"ddp"`` or ``"fsdp"`` to train data-parallel over the initialised
            default process group (every rank calls ``train`` with the same arguments; the
            global batch is ``batch_size``, split over the ranks). Rank 0 writes the run dir;
            on the other ranks the result holds no saved states. docs/distributed.md.

    A finished run dir is reused: nothing is trained and the saved result is returned. An
    unfinished one resumes from its last checkpoint, bitwise as if never interrupted.
    """
    hp = copy.deepcopy(hparams).validate()
    own_data = dataset is not None and not isinstance(dataset, Dataset)
    if own_data:  # read once, named, and identified by its digest
        if hp.dataset.name == DatasetHparams().name:
            hp.dataset.name = CUSTOM_DATASET
        dataset = adapt_dataset(hp.dataset, dataset)
    check_names(hp, own_data=own_data)
    _check_materialised(model, init_state, masks)
    device = check_device(device)
    given_model = model
    if hp.training.precision == "fp16" and distributed is not None:
        raise ValueError(
            "training.precision fp16 (a GradScaler) is not supported with distributed "
            "training: use bf16"
        )
    accelerate = kernel_hooks(hp, device, distributed)  # checked before any work
    parallel = None
    if distributed is not None:  # DDP / FSDP2: sparsetorch.experiments.distributed
        from sparsetorch.experiments.distributed import Parallel

        parallel = Parallel(distributed, torch.device(device))
    identity = hp.identity()
    identity.update(_input_digests(model, init_state, masks, hooks))
    identity.update(_data_digest(hp, dataset if own_data else None))
    if start_step:
        identity["inputs.start_step"] = start_step
    if run_dir is not None:
        path: Path | None = Path(run_dir)
    elif out_dir is not None:
        path = check_out_dir(out_dir) / run_name(hp, identity)
    else:
        path = None
    run = RunDir(path) if path is not None else None
    wanted = sorted({int(k) for k in save_states_at})
    if run is not None:
        run.check_compatible(identity)
        run_state.check_run_dir(run.path)  # before any checkpoint is loaded
        if run.is_complete():
            return _reuse(run, model, wanted, device)

    data = prepare_dataset(hp.dataset, dataset)
    model = prepare_model(hp, data, model, init_state, masks).to(device)
    check_takes_inputs(model, data, device)  # before the run dir is written
    all_hooks = [*method_hooks(hp), *accelerate, *hooks]
    spe = steps_per_epoch(len(data.train), hp.training.batch_size)
    total = hp.training.steps or hp.training.epochs * spe
    if not (isinstance(start_step, int) and not isinstance(start_step, bool)) or not (
        0 <= start_step < total
    ):
        raise ValueError(f"start_step must be an int in [0, {total}), got {start_step!r}")
    bad = [k for k in wanted if not 0 <= k <= total]
    if bad:
        raise ValueError(f"save_states_at must be steps in [0, {total}], got {bad}")
    if parallel is not None:  # same config everywhere, then DDP-wrap or shard the model
        parallel.check(hp, model, len(data.train))
        parallel.wrap(model)
        all_hooks.append(parallel.hook())
    optimizer = build_optimizer(model.parameters(), hp.training)

    writes = run if parallel is None or parallel.is_writer else None  # rank 0 writes
    with writes.lock() if writes is not None else contextlib.nullcontext():
        if writes is not None and parallel is None and run.is_complete():
            return _reuse(run, given_model, wanted, device)  # finished while we prepared
        resume = None
        if run is not None:
            if parallel is not None:
                parallel.run_path = run.path
            if run_state.resume_path(run.path).is_file():
                load = run_state.load_resume if parallel is None else parallel.load_resume
                resume = load(run_state.resume_path(run.path))
                _warn_if_threads_changed(run)
        loop = Loop(
            model=model,
            optimizer=optimizer,
            data=data,
            hparams=hp,
            hooks=all_hooks,
            total_steps=total,
            steps_per_epoch=spe,
            eval_every=hp.training.eval_every or default_eval_every(total, spe),
            device=device,
            run=writes,
            save_states_at=frozenset(wanted),
            start_step=start_step,
            progress=progress_enabled(progress) and (parallel is None or parallel.is_writer),
            parallel=parallel,
            precision=Precision(hp.training.precision, device),
        )
        info = _run_info(identity, data, total, spe, all_hooks)
        opened = []  # the trackers (TensorBoard, W&B, MLflow), once the run dir is begun

        def begin() -> None:
            writes.create(hp, info)
            trackers = open_trackers(run.path, hp)
            loop.log_fn = trackers or None
            opened.append(trackers)

        loop.begin_run = begin if writes is not None else None
        try:
            with torch.random.fork_rng(devices=_cuda_devices(loop.device)):
                torch.manual_seed(hp.training.seed)
                out = fit(loop, resume)
        finally:
            for trackers in opened:
                if trackers is not None:
                    trackers.close()
        if parallel is not None:
            model = parallel.result_model(model, out.states.get(total))
        result = TrainResult(
            hparams=hp,
            model=model,
            metrics=out.metrics,
            total_steps=total,
            steps_per_epoch=spe,
            wall_s=out.wall_s,
            run_dir=path,
            states=out.states,
        )
        if writes is not None:
            _finish(writes, result)
    return result


def load_run(
    run_dir: str | Path, model: nn.Module | None = None, device: str | torch.device = "cpu"
) -> TrainResult:
    """The result of a finished run dir, with its final model loaded (into ``model`` if
    given, else into a freshly built one)."""
    run = RunDir(run_dir)
    result = run.read_result()
    run_state.check_run_dir(run.path)
    hp = run.hparams()
    info = run.run_info()
    if model is None:
        shape = info["dataset"]
        model = build_model(hp, tuple(shape["input_shape"]), shape["num_classes"])
    states = {int(k): run.path / v for k, v in result["states"].items()}
    run_state.load_into(model, run_state.load_model_state(states[result["total_steps"]]))
    return TrainResult(
        hparams=hp,
        model=model.to(device),
        metrics=run.read_metrics(),
        total_steps=result["total_steps"],
        steps_per_epoch=result["steps_per_epoch"],
        wall_s=result["wall_s"],
        run_dir=run.path,
        reused=True,
        states=states,
    )


# ---- building blocks (public: the lottery runner and the CLI use them) ---------------------
def adapt_dataset(hp: DatasetHparams, data: Any) -> Dataset:
    """Your own data (``sparsetorch.data.as_dataset``) as a Dataset named ``hp.name``, its
    missing splits carved with ``hp.split_seed``; ``hp.options`` may hold ``val_fraction``,
    ``test_fraction`` and ``num_classes``."""
    from sparsetorch.data import as_dataset, is_source

    if not is_source(data):
        raise TypeError(
            "dataset must be a sparsetorch Dataset, an (x, y) pair of tensors, a torch Dataset "
            f"or DataLoader, or a mapping of them with the key 'train'; got {type(data).__name__}"
        )
    try:
        return as_dataset(data, hp.name, seed=hp.split_seed, **hp.options)
    except TypeError as exc:
        if not hp.options:
            raise
        raise ValueError(f"your data set rejects option(s) {hp.options}: {exc}") from exc


def prepare_dataset(hp: DatasetHparams, dataset: Dataset | None = None) -> Dataset:
    """Load the dataset named by ``hp`` (or check the given one), then apply the subset sizes.
    Your own data go through :func:`adapt_dataset` first (``train(dataset=...)`` does)."""
    if dataset is not None and not isinstance(dataset, Dataset):
        raise TypeError(
            f"dataset must be a sparsetorch Dataset here, got {type(dataset).__name__}: "
            "train(hparams, dataset=...) takes tensors, torch Datasets and DataLoaders "
            "(sparsetorch.data.as_dataset adapts them)"
        )
    loaded = dataset is None
    if dataset is None:
        from sparsetorch.data import load

        try:
            dataset = load(hp.name, data_dir=hp.data_dir, seed=hp.split_seed, **hp.options)
        except TypeError as exc:
            if not hp.options:
                raise
            raise ValueError(f"dataset {hp.name!r} rejects option(s) {hp.options}: {exc}") from exc
    if dataset.name != hp.name:
        raise ValueError(
            f"dataset {hp.name!r} was asked for but {dataset.name!r} was loaded (is "
            f"{hp.name} installed? pass --data-dir, or choose --dataset {dataset.name})"
        )
    sizes = {"train": hp.train_size, "val": hp.val_size, "test": hp.test_size}
    for split, n in sizes.items():  # by name: say when a size asked for is more than it holds
        held = len(getattr(dataset, split))
        if loaded and n is not None and n > held:
            warnings.warn(
                f"{dataset.name} {split}: {n} examples asked for, it holds {held}: all are used",
                stacklevel=2,
            )
    return Dataset(
        dataset.name,
        _head(dataset.train, hp.train_size),
        _head(dataset.val, hp.val_size),
        _head(dataset.test, hp.test_size),
        dataset.num_classes,
        dataset.input_shape,
        dataset.classes,
    )


def build_model(hp: Hparams, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """``hparams.model`` for this input shape, initialised from ``hparams.training.seed``
    (the global RNG is forked: the caller's RNG state is untouched)."""
    from sparsetorch.models import build

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(hp.training.seed)
        try:
            return build(
                hp.model.name,
                input_shape=input_shape,
                num_classes=num_classes,
                **hp.model.options,
            )
        except TypeError as exc:
            if not hp.model.options:
                raise
            raise ValueError(
                f"model {hp.model.name!r} rejects option(s) {hp.model.options}: {exc}"
            ) from exc


def prepare_model(
    hp: Hparams,
    data: Dataset,
    model: nn.Module | None = None,
    init_state: StateDict | None = None,
    masks: StateDict | None = None,
) -> nn.Module:
    """The model to train: given or built, then ``init_state`` loaded, then ``masks``."""
    if model is None:
        model = build_model(hp, data.input_shape, data.num_classes)
    if init_state is not None:
        run_state.load_into(model, init_state)
    if masks is not None:
        from sparsetorch.masking import apply_masks

        apply_masks(model, dict(masks))
    return model


def method_hooks(hp: Hparams) -> list[TrainHook]:
    """The hook of ``hparams.sparsity.method`` (none for "dense"): the method's runner
    adapter (``sparsetorch.experiments.methods``) built with the method's config."""
    config = hp.sparsity.config()
    if config is None:
        return []
    from sparsetorch.experiments.methods import method

    return [method(hp.sparsity.method)(config)]


def kernel_hooks(hp: Hparams, device: torch.device, distributed: str | None) -> list[TrainHook]:
    """``--sparse-kernels``: the hook that accelerates the model's masked Linear layers (after
    the method's hooks, which make the masks)."""
    if not hp.training.sparse_kernels:
        return []
    from sparsetorch.experiments.sparse_kernels import SparseKernelsHook, check_sparse_kernels

    check_sparse_kernels(device, distributed)
    return [SparseKernelsHook()]


# ---- helpers ------------------------------------------------------------------------------
def _head(split: Split, n: int | None) -> Split:
    return split if n is None else split.head(n)


def check_names(hp: Hparams, own_data: bool = False) -> None:
    """Every name of ``hp`` is registered (model, dataset, optimizer, schedule, method, pattern,
    distribution) and the method's options pass its config's checks; raises ValueError or
    TypeError before anything is built or written. A model reference (``module:callable``) is
    imported; a data set of your own must exist (any name is accepted with ``own_data``, data
    given to ``train(dataset=...)``)."""
    from sparsetorch import data, models

    check_trackers(hp)
    models.check_name(hp.model.name)
    if not own_data:
        data.check_name(hp.dataset.name)
    for registry, name in (
        (OPTIMIZERS, hp.training.optimizer),
        (LR_SCHEDULES, hp.training.lr_schedule),
    ):
        if name not in registry:
            raise ValueError(
                f"unknown {registry.kind} {name!r}; known: {', '.join(registry.names())}"
            )
    hp.sparsity.config()  # the method's name and options
    from sparsetorch.distributions import DISTRIBUTIONS
    from sparsetorch.patterns import get as get_pattern

    if hp.sparsity.pattern != AUTO:
        get_pattern(hp.sparsity.pattern)  # a known name, and a valid one ("3:2" is not)
    name = hp.sparsity.distribution
    if name != AUTO and name not in DISTRIBUTIONS:
        raise ValueError(
            f"unknown {DISTRIBUTIONS.kind} {name!r}; known: {', '.join(DISTRIBUTIONS.names())}"
        )


def check_takes_inputs(model: nn.Module, data: Dataset, device: torch.device) -> None:
    """One forward pass of two training inputs (eval mode, no grad, the RNG untouched), so
    that a model that does not take the data's inputs is one clear ValueError before anything
    is written, not a traceback from inside the first training step."""
    x = data.train.x[:2].to(device)
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.eval()
            model(x)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"the model does not take {data.name}'s inputs (shape {tuple(x.shape[1:])}, "
            f"{x.dtype}): {type(exc).__name__}: {reason}"
        ) from exc
    finally:
        for module, training in modes:
            module.training = training


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device this process can use; one clear ValueError otherwise."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"device {device!r} is not a torch device ({reason})") from None
    if parsed.type == "meta":
        raise ValueError(f"device {device!r} holds no data: train on cpu or cuda")
    try:
        torch.empty(0, device=parsed)
    except Exception as exc:  # no CUDA build, no such GPU, ...: torch says why
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"device {device!r} is not available here ({reason})") from None
    return parsed


def _check_materialised(
    model: nn.Module | None, init_state: StateDict | None, masks: StateDict | None
) -> None:
    check_not_meta(model, "model")
    for what, state in (("init_state", init_state), ("masks", masks)):
        for key, value in (state or {}).items():
            check_not_meta(value, f"{what}[{key!r}]")


def state_digest(state: StateDict) -> str:
    """SHA-256 (16 hex digits) of names, dtypes, shapes and bytes of a dict of tensors."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _input_digests(
    model: nn.Module | None,
    init_state: StateDict | None,
    masks: StateDict | None,
    hooks: Sequence[TrainHook],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if model is not None:
        out["inputs.model"] = state_digest(model.state_dict())
    if init_state is not None:
        out["inputs.init_state"] = state_digest(init_state)
    if masks is not None:
        out["inputs.masks"] = state_digest(masks)
    if hooks:
        out["inputs.hooks"] = [f"{type(h).__module__}.{type(h).__qualname__}" for h in hooks]
    return out


def named_identity(hp: Hparams) -> dict[str, Any]:
    """The identity of a run that ``hp`` names completely (no model, state or data object
    given to ``train``): its hparams, and the digest of a data file or folder of your own,
    read without loading the data. What ``train`` names such a run's directory by."""
    return {**hp.identity(), **_data_digest(hp, None)}


def _data_digest(hp: Hparams, own: Dataset | None) -> dict[str, Any]:
    """``{"inputs.dataset": digest}`` for a data set of your own (a file, a folder, or data
    given to ``train``), so that changed data never reuse an old run dir; {} otherwise."""
    if own is not None:
        splits = {
            f"{name}.{part}": getattr(getattr(own, name), part)
            for name in ("train", "val", "test")
            for part in ("x", "y")
        }
        return {"inputs.dataset": state_digest(splits)}
    from sparsetorch.data import digest

    found = digest(hp.dataset.name)
    return {} if found is None else {"inputs.dataset": found}


def _run_info(identity: dict, data: Dataset, total: int, spe: int, hooks: list) -> dict:
    import sparsetorch

    shape: dict[str, Any] = {
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
    }
    if data.classes:
        shape["classes"] = list(data.classes)
    return {
        "identity": identity,
        "sparsetorch": sparsetorch.__version__,
        "torch": torch.__version__,
        "dataset": shape,
        "total_steps": total,
        "steps_per_epoch": spe,
        "hooks": [f"{type(h).__module__}.{type(h).__qualname__}" for h in hooks],
        "threads": torch.get_num_threads(),
    }


def _warn_if_threads_changed(run: RunDir) -> None:
    """CPU results are bitwise reproducible for one intra-op thread count: matmul reductions
    are split differently with another (last-bit differences that grow over training)."""
    started = run.run_info().get("threads")
    if started is not None and started != torch.get_num_threads():
        warnings.warn(
            f"resuming {str(run.path)!r} with {torch.get_num_threads()} torch thread(s); it "
            f"started with {started}: the result may differ in the last bits from an "
            "uninterrupted run (use --threads to match)",
            stacklevel=3,
        )


def _cuda_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _reuse(
    run: RunDir, model: nn.Module | None, wanted: list[int], device: str | torch.device
) -> TrainResult:
    result = load_run(run.path, model, device)
    missing = [k for k in wanted if k not in result.states]
    if missing:
        raise ValueError(
            f"run dir {str(run.path)!r} is finished but kept no weights at step(s) {missing} "
            f"(kept: {result.saved_steps}); use another run dir to train again"
        )
    return result


def _finish(run: RunDir, result: TrainResult) -> None:
    """Write the summary files; ``result.json`` last, as the mark of a finished run."""
    from sparsetorch.experiments.reporting import write_run_report

    write_run_report(run, result)
    run.write_result(
        {
            "complete": True,
            "total_steps": result.total_steps,
            "steps_per_epoch": result.steps_per_epoch,
            "wall_s": result.wall_s,
            "final": result.final,
            "early_stop": early_stop_row(result.metrics),
            "layers": layer_densities(result.model),
            "states": {
                str(k): str(Path(v).relative_to(run.path)) for k, v in sorted(result.states.items())
            },
        }
    )
