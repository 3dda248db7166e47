"""Name → class registries (``LOSSES["margin"]``); an unknown name lists the valid ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Registry(dict):
    """A dict of named classes whose failed look-up says what the valid names are."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@LOSSES.register("margin")``."""

        def add(cls: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = cls
            return cls

        return add

    def __missing__(self, name: Any) -> Any:
        valid = ", ".join(sorted(self))
        raise ValueError(f"unknown {self.kind} {name!r}; valid names: {valid}")
