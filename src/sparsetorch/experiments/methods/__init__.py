"""The runner's sparsity methods (``sparsetorch train --method NAME``): each is an algorithm's
config class and the training hook that runs the algorithm with that config.

``METHODS.lookup("rigl")`` is a :class:`Method`; ``METHODS.build("rigl", config=cfg)`` the hook.
The config classes generate the method flags of the command line (``--delta-t``, ``--batches``,
...) and decide a run's identity (the options that differ from their defaults) and its default
distribution (the config's own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsetorch._registry import Registry
from sparsetorch.algorithms.config import CONFIGS, AlgorithmConfig
from sparsetorch.experiments.hooks import TrainHook


@dataclass(frozen=True)
class Method:
    """A method of the runner: ``config`` (its settings) and ``hook(config) -> TrainHook``."""

    name: str
    config: type[AlgorithmConfig]
    hook: Callable[[Any], TrainHook]

    def __call__(self, config: AlgorithmConfig) -> TrainHook:
        if not isinstance(config, self.config):
            raise TypeError(f"method {self.name!r} takes a {self.config.__name__}")
        return self.hook(config)


METHODS: Registry[TrainHook] = Registry("method")


def register(name: str, hook: Callable[[Any], TrainHook]) -> None:
    """Register the runner's hook for the algorithm whose config is ``CONFIGS[name]``."""
    METHODS.register(name)(Method(name, CONFIGS.lookup(name), hook))


def method(name: str) -> Method:
    """The registered method ``name`` (ValueError listing the known ones otherwise)."""
    _load()
    return METHODS.lookup(name)


def method_names() -> list[str]:
    _load()
    return METHODS.names()


def _load() -> None:
    from sparsetorch.experiments.methods import at_init, during  # noqa: F401  (register)


__all__ = ["METHODS", "Method", "method", "method_names", "register"]
