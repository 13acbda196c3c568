"""Module swap (``SparseLinear``) against a weight tensor subclass (torchao's design), on CPU.

    python benchmarks/weight_subclass.py            # print the tables
    python benchmarks/weight_subclass.py --write    # and replace the "Weight representation
                                                    # (CPU)" section of docs/benchmarks.md

torchao sparsifies a Linear by replacing ``linear.weight`` with a tensor subclass that carries
the compressed format (``__tensor_flatten__`` / ``__tensor_unflatten__`` name its inner
tensors) and runs ``F.linear`` in ``__torch_function__``. sparsetorch replaces the module with a
``SparseLinear`` that holds one compute path per candidate engine. To compare the mechanisms
on equal work, this script builds the subclass as a prototype (``NMWeight``: the arrays of
``formats.NM`` 2:4, ``F.linear`` by the same reference twin ``nm_linear_reference`` the
``nm_reference`` path calls; ``DenseWeight``: the dense tensor, ``F.linear`` on it) and measures:

* eager time per call (one thread, median of batches of back-to-back calls, variants
  interleaved batch by batch), against ``nn.Linear`` in the same run;
* ``torch.compile(fullgraph=True)`` with the ``aot_eager`` backend: compiles or not, frames,
  and the result against eager;
* what ``state_dict``, loading it into a plain ``nn.Linear`` (strict), loading a plain
  Linear's state dict into the sparsified layer (strict), ``copy.deepcopy``, ``torch.save`` +
  ``torch.load`` (weights_only, torch's default) and ``sparsetorch.save`` + ``load`` do.
"""

from __future__ import annotations

import argparse
import copy
import io
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend
from torch.utils._python_dispatch import return_and_correct_aliasing

from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import sparsetorch as st
from sparsetorch.deploy import Dispatcher, SparseLinear
from sparsetorch.formats import NM
from sparsetorch.kernels import nm_linear_reference

aten = torch.ops.aten
SECTION = "Weight representation (CPU)"


# ---- the prototype subclass (torchao's design, written for this comparison) ---------------


class _WeightSubclass(torch.Tensor):
    """A wrapper tensor subclass standing in for an (out, in) weight; subclasses name their
    inner tensors (``INNER``) and compute ``F.linear`` (``_linear``)."""

    INNER: tuple[str, ...] = ()

    @staticmethod
    def __new__(cls, inner: dict[str, torch.Tensor], shape: torch.Size):
        first = inner[cls.INNER[0]]
        return torch.Tensor._make_wrapper_subclass(
            cls, shape, dtype=first.dtype, device=first.device, requires_grad=False
        )

    def __init__(self, inner: dict[str, torch.Tensor], shape: torch.Size) -> None:
        for name in self.INNER:
            setattr(self, name, inner[name])

    def __tensor_flatten__(self):
        return list(self.INNER), None

    @classmethod
    def __tensor_unflatten__(cls, inner, ctx, outer_size, outer_stride):
        return cls(inner, outer_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.shape)}, dtype={self.dtype})"

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        return type(self)({n: fn(getattr(self, n)) for n in self.INNER}, self.shape)

    def _linear(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, w = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            y = w._linear(x.reshape(-1, x.shape[-1]), bias)  # (M, out)
            return y.reshape(*x.shape[:-1], w.shape[0])
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (aten.detach.default, aten.alias.default):
            return return_and_correct_aliasing(func, args, kwargs, args[0]._map(func))
        if func is aten.clone.default:
            return args[0]._map(lambda t: t.clone())
        if func is aten._to_copy.default:
            return args[0]._map(lambda t: func(t, *args[1:], **kwargs))
        raise NotImplementedError(f"{cls.__name__} does not implement {func}")


class DenseWeight(_WeightSubclass):
    """The dense weight inside: the subclass mechanism alone, F.linear's own work."""

    INNER = ("dense",)

    def _linear(self, x, bias):
        return F.linear(x, self.dense, bias)


class NMWeight(_WeightSubclass):
    """``formats.NM`` 2:4 arrays inside; F.linear by the 2:4 reference twin."""

    INNER = ("packed", "meta")

    @classmethod
    def from_dense(cls, w: torch.Tensor) -> NMWeight:
        nm = NM.from_dense(w.detach(), 2, 4)
        return cls({"packed": nm.values, "meta": nm.meta}, w.shape)

    def _linear(self, x, bias):
        return nm_linear_reference(x, self.packed, self.meta, bias)


# ---- the layers compared ---------------------------------------------------------------


def two_four_linear(n_in: int, n_out: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(n_in, n_out)
    st.prune(lin, pattern="2:4")
    st.remove_masks(lin)
    return lin


def _prefer(name: str):
    def timer(fn):  # the dispatcher picks ``name`` without timing anything
        return 0.5 if fn.__defaults__[0].name == name else 1.0

    return timer


def variants(lin: nn.Linear) -> dict[str, nn.Module]:
    def swapped(paths, prefer=None):
        timer = _prefer(prefer or paths[0])
        return SparseLinear(copy.deepcopy(lin), paths, Dispatcher(timer=timer, cache_file=None))

    def subclassed(weight_cls):
        out = copy.deepcopy(lin)
        w = out.weight.detach()
        inner = (
            NMWeight.from_dense(w) if weight_cls is NMWeight else DenseWeight({"dense": w}, w.shape)
        )
        out.weight = nn.Parameter(inner, requires_grad=False)
        return out

    return {
        "nn.Linear (dense)": copy.deepcopy(lin),
        "SparseLinear [dense]": swapped(["dense"]),
        "Linear + DenseWeight subclass": subclassed(DenseWeight),
        "SparseLinear [nm_reference]": swapped(["nm_reference"]),
        "SparseLinear [dense, nm_reference], chose nm_reference": swapped(
            ["dense", "nm_reference"], "nm_reference"
        ),
        "Linear + NMWeight subclass": subclassed(NMWeight),
    }


# ---- eager time per call -------------------------------------------------------------------


def eager_table(shapes, ms, calls: int, batches: int) -> list[str]:
    rows = [
        "| Linear (in -> out) | M | layer | us per call | vs nn.Linear |",
        "|---|---:|---|---:|---:|",
    ]
    for n_in, n_out in shapes:
        lin = two_four_linear(n_in, n_out)
        layers = variants(lin)
        for m in ms:
            x = torch.randn(m, n_in)
            with torch.no_grad():
                ref = layers["nn.Linear (dense)"](x)
                for layer in layers.values():  # warm-up; the dispatcher chooses here
                    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)
                samples: dict[str, list[float]] = {name: [] for name in layers}
                for _ in range(batches):
                    for name, layer in layers.items():
                        t0 = time.perf_counter()
                        for _ in range(calls):
                            layer(x)
                        samples[name].append((time.perf_counter() - t0) / calls)
            base = statistics.median(samples["nn.Linear (dense)"])
            for name in layers:
                t = statistics.median(samples[name])
                rows.append(
                    f"| {n_in} -> {n_out} | {m} | {name} | {t * 1e6:.1f} | {t / base:.2f}x |"
                )
    return rows


# ---- torch.compile ---------------------------------------------------------------------------


def compile_table() -> list[str]:
    rows = ["| layer | fullgraph aot_eager | frames | equals eager |", "|---|---|---:|---|"]
    lin = two_four_linear(64, 128)
    x = torch.randn(2, 3, 64)
    for name, layer in variants(lin).items():
        torch._dynamo.reset()
        counter = CompileCounterWithBackend("aot_eager")
        with torch.no_grad():
            eager = layer(x)
            try:
                got = torch.compile(layer, backend=counter, fullgraph=True)(x)
            except Exception as exc:  # report what breaks, do not stop the table
                rows.append(f"| {name} | fails: {type(exc).__name__} | - | - |")
                continue
        same = torch.allclose(got, eager, rtol=1e-6, atol=1e-6)
        rows.append(f"| {name} | compiles | {counter.frame_count} | {same} |")
    torch._dynamo.reset()
    return rows


# ---- state_dict, deepcopy, saving -----------------------------------------------------------


def _check(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except Exception as exc:
        return f"fails: {_reason(exc)}"


def _reason(exc: Exception) -> str:
    """The line of a long torch error that says what is missing."""
    text = str(exc)
    for needle, say in (
        ("does not implement", None),
        ("Unsupported global", "weights_only load refuses the class (add_safe_globals)"),
        ("invalid python storage", "a wrapper subclass has no storage to write"),
    ):
        if needle in text:
            if say is None:  # "NMWeight does not implement aten.copy_.default"
                start = text.index(needle)
                head = text[:start].rsplit("'", 1)[-1]
                return head + text[start:].split("'")[0]
            return say
    return f"{type(exc).__name__}: {text.splitlines()[0][:70]}"


def behaviour_table() -> list[str]:
    lin = two_four_linear(64, 128)
    layers = variants(lin)
    chosen = {k: layers[k] for k in ("SparseLinear [nm_reference]", "Linear + NMWeight subclass")}
    x = torch.randn(5, 64)

    def dense_like(layer):
        return nn.Linear(64, 128)

    def same_output(a, b) -> bool:
        with torch.no_grad():
            return torch.allclose(a(x), b(x), rtol=1e-5, atol=1e-5)

    checks: dict[str, Callable[[nn.Module], str]] = {
        "state_dict()['weight'] is": lambda layer: type(layer.state_dict()["weight"]).__name__,
        "its state dict into nn.Linear (strict)": lambda layer: _check(
            lambda: str(same_output(layer, _loaded(dense_like(layer), layer.state_dict()))).replace(
                "True", "loads, same output"
            )
        ),
        "nn.Linear's state dict into it (strict)": lambda layer: _check(
            lambda: str(same_output(_loaded(layer, lin.state_dict()), lin)).replace(
                "True", "loads, same output"
            )
        ),
        "copy.deepcopy": lambda layer: _check(
            lambda: str(same_output(copy.deepcopy(layer), layer)).replace("True", "same output")
        ),
        "torch.save + torch.load (weights_only)": lambda layer: _check(
            lambda: _torch_round_trip(layer, lin)
        ),
        "sparsetorch.save + load into nn.Linear": lambda layer: _check(
            lambda: _st_round_trip(layer, dense_like(layer))
        ),
    }
    rows = ["| | " + " | ".join(chosen) + " |", "|---|" + "---|" * len(chosen)]
    for what, fn in checks.items():
        rows.append(
            f"| {what} | "
            + " | ".join(fn(copy.deepcopy(layer)) for layer in chosen.values())
            + " |"
        )
    return rows


def _loaded(target: nn.Module, state: dict) -> nn.Module:
    target.load_state_dict(state, strict=True)
    return target


def _torch_round_trip(layer: nn.Module, lin: nn.Linear) -> str:
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf)  # weights_only=True is torch's default
    target = nn.Linear(64, 128)
    target.load_state_dict(state)
    return "round trips" if torch.equal(target.weight, lin.weight) else "differs"


def _st_round_trip(layer: nn.Module, target: nn.Linear) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = st.save(layer, Path(tmp) / "w.safetensors")
        st.load(path, model=target)
    x = torch.randn(5, 64)
    with torch.no_grad():
        ok = torch.allclose(target(x), layer(x), rtol=1e-5, atol=1e-5)
    return "round trips" if ok else "differs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--batches", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    eager = eager_table([(64, 128), (1024, 1024)], [1, 64], args.calls, args.batches)
    compiled = compile_table()
    behaviour = behaviour_table()
    command = "python benchmarks/weight_subclass.py" + (" --write" if args.write else "")
    text = "\n".join(
        [
            f"## {SECTION}",
            "",
            f"`{command}` (torch {torch.__version__}, {platform.machine()}, 1 thread, "
            f"{time.strftime('%Y-%m-%d')}; a 2-core machine shared with other jobs: read the "
            "ratios, taken in one run with the variants interleaved). The subclass is a "
            "prototype of torchao's design written for this comparison (`NMWeight`, "
            "`DenseWeight` in the script); both 2:4 variants compute with the same reference "
            "twin on `formats.NM`'s arrays.",
            "",
            "Eager time per call (median of batches of back-to-back calls):",
            "",
            *eager,
            "",
            "`torch.compile(fullgraph=True)`, aot_eager backend, input (2, 3, 64):",
            "",
            *compiled,
            "",
            "State dict, copies and saving (2:4 Linear 64 -> 128):",
            "",
            *behaviour,
        ]
    )
    print(text)
    if args.write:
        write_section(SECTION, text, ROOT / "docs" / "benchmarks.md")


if __name__ == "__main__":
    main()
