"""``accelerate_(model)``: train masked Linear layers through the CPU sparse kernels.

Every ``nn.Linear`` (exactly that class) passing ``filter_fn(module, fqn)`` becomes an
:class:`AcceleratedLinear` in place: the same module object, the same Parameters (an optimizer
built before keeps stepping them), mask buffers, hooks and state_dict keys. A layer runs the
sparse kernels while it carries a weight mask of density <= ``max_density`` (a mask attached
later, e.g. by GMP, switches it on; RigL/SET/GMP mask updates are followed); otherwise it is
exactly ``nn.Linear``. ``restore_(model)`` turns them back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from sparsetorch._checks import is_real
from sparsetorch.accelerate.linear import AcceleratedLinear
from sparsetorch.accelerate.optim import install
from sparsetorch.masking import masked_names, named_masked

FilterFn = Callable[[nn.Module, str], bool]


@dataclass
class AccelerateReport:
    swapped: dict[str, str] = field(default_factory=dict)  # fqn -> "density 0.1000" / "no mask"
    skipped: dict[str, str] = field(default_factory=dict)  # fqn -> reason
    backend: str = ""

    def __str__(self) -> str:
        lines = [f"accelerated {len(self.swapped)} Linear layer(s) (kernels: {self.backend})"]
        lines += [f"  {name}: {what}" for name, what in self.swapped.items()]
        lines += [f"  {name}: not accelerated ({why})" for name, why in self.skipped.items()]
        return "\n".join(lines)


def _check_fraction(name: str, value: object) -> float:
    if not is_real(value) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def accelerate_(
    model: nn.Module,
    filter_fn: FilterFn | None = None,
    *,
    max_density: float = 0.5,
    backend: str | None = None,
) -> AccelerateReport:
    """Make ``model``'s Linear layers train (and infer) through the sparse CPU kernels while
    masked; in place, returns a report.

    Args:
        filter_fn: ``filter_fn(module, fqn) -> bool``; True = accelerate (default: every
            ``nn.Linear``).
        max_density: a layer whose mask keeps more than this fraction runs dense.
        backend: "cpp" (the compiled kernels), "torch" (their pure-torch twin) or None (the
            compiled kernels when they build, else the twin, after one warning).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    max_density = _check_fraction("max_density", max_density)
    if backend not in (None, "cpp", "torch"):
        raise ValueError(f"backend must be None, 'cpp' or 'torch', got {backend!r}")
    from sparsetorch.accelerate.linear import kernel_ops

    report = AccelerateReport(backend=kernel_ops(backend).name)
    install()
    # id of each masked Parameter -> its name where the mask lives (a tied weight's owner)
    owners = {id(m._parameters.get(name)): full for full, m, name in named_masked(model)}
    for fqn, module in model.named_modules():
        masked = bool(masked_names(module))
        if not (isinstance(module, nn.Linear) or masked):
            continue
        if filter_fn is not None and not filter_fn(module, fqn):
            continue
        if not isinstance(module, nn.Linear):
            if masked:  # no kernel of ours takes it
                report.skipped[fqn] = (
                    f"a masked {type(module).__name__}: the kernels take nn.Linear layers "
                    "only; it trains dense, its masks kept enforced"
                )
            continue
        if type(module) not in (nn.Linear, AcceleratedLinear):
            report.skipped[fqn] = f"{type(module).__name__} is not exactly nn.Linear"
            continue
        owner = owners.get(id(module._parameters.get("weight")))
        if not masked and owner is not None:  # a tied weight (an LM head tied to embeddings)
            report.skipped[fqn] = (
                f"its weight is {owner}, whose mask lives there: it trains dense, and the "
                "mask keeps the pruned entries zero"
            )
            continue
        module.__class__ = AcceleratedLinear
        module.max_density = max_density
        module.backend = backend
        mask = module.sparse_mask()
        if mask is None:
            report.swapped[fqn] = "no mask yet: dense until one is attached"
        else:
            density = float(mask.sum()) / mask.numel()
            runs = "sparse" if density <= max_density else f"dense (> max_density {max_density})"
            report.swapped[fqn] = f"density {density:.4f}: {runs}"
    return report


def restore_(model: nn.Module) -> nn.Module:
    """Turn every :class:`AcceleratedLinear` of ``model`` back into a plain ``nn.Linear``."""
    for module in model.modules():
        if type(module) is AcceleratedLinear:
            module.__class__ = nn.Linear
            for key in ("_accel_state", "max_density", "backend", "last_path", "last_grad_dense"):
                module.__dict__.pop(key, None)
    return model
