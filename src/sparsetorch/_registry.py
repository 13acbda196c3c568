"""One registry helper for every axis: names (and parsed names like "2:4") -> factories."""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps config strings to factories.

    Plain names are registered with :meth:`register`; parameterised names ("2:4",
    "block4x4") with :meth:`register_pattern`, a regex whose groups are passed to the
    factory as ints. Unknown names raise one ``ValueError`` listing the known names.
    """

    _all: ClassVar[weakref.WeakSet[Registry]] = weakref.WeakSet()

    def __init__(self, kind: str) -> None:
        Registry._all.add(self)
        self.kind = kind
        self._named: dict[str, Callable[..., T]] = {}
        self._parsed: list[tuple[re.Pattern[str], str, Callable[..., T]]] = []

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._named:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._named[name] = factory
            return factory

        return deco

    def register_pattern(
        self, regex: str, example: str
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            self._parsed.append((re.compile(regex), example, factory))
            return factory

        return deco

    @classmethod
    def instances(cls) -> list[Registry]:
        """Every registry made so far (the axes, the methods, the formats, ...)."""
        return list(cls._all)

    def names(self) -> list[str]:
        return sorted(self._named) + [example for _, example, _ in self._parsed]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._named or any(rx.fullmatch(name) for rx, _, _ in self._parsed)

    def lookup(self, name: str) -> Callable[..., T]:
        """The factory registered under a plain ``name`` (not called)."""
        key = name.strip().lower()
        if key not in self._named:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._named[key]

    def build(self, spec: Any, **kwargs: Any) -> T:
        """Resolve ``spec`` (a name, or an already-built object) to an object."""
        if not isinstance(spec, str):
            return spec
        key = spec.strip().lower()
        if key in self._named:
            return self._named[key](**kwargs)
        for rx, _, factory in self._parsed:
            m = rx.fullmatch(key)
            if m:
                return factory(*(int(g) for g in m.groups()), **kwargs)
        raise ValueError(f"unknown {self.kind} {spec!r}; known: {', '.join(self.names())}")
