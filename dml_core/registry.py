"""Name → class registries (``LOSSES["margin"]``) that build by name with one option check.

Every buildable family (losses, miners, samplers, datasets, architectures) has one ``Registry``.
Registering a class sets its ``name``; ``build`` checks the options against what the class accepts
(the named parameters of every ``__init__`` it forwards ``*args``/``**kwargs`` to, up the class
hierarchy), so an unknown name or option is one line that lists the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
BY_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def forwarding_chain(factory: Callable[..., Any]) -> list[list[inspect.Parameter]] | None:
    """The parameter lists a call of ``factory`` can reach, outermost first; None when open.

    A class's ``__init__`` that takes ``*args`` or ``**kwargs`` passes them on to the next
    ``__init__`` of its MRO, whose parameters are added in turn; the chain ends at an ``__init__``
    without ``**kwargs``. It is open (None: any keyword may be meant) when ``**kwargs`` reach
    ``object`` or a plain function takes ``**kwargs``; such a factory checks its options itself.
    """
    if not isinstance(factory, type):
        parameters = list(inspect.signature(factory).parameters.values())
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return None
        return [parameters]
    chain: list[list[inspect.Parameter]] = []
    for klass in factory.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            return None
        parameters = list(inspect.signature(init).parameters.values())[1:]  # without self
        chain.append(parameters)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return chain
    return None


def accepted_options(
    factory: Callable[..., Any], num_positional: int = 0, fixed: frozenset[str] = frozenset()
) -> list[str] | None:
    """Sorted keyword options of ``factory`` (see ``forwarding_chain``); None when open.

    The first ``num_positional`` positional parameters and the ``fixed`` names are set by the
    caller of ``Registry.build`` and are not options.
    """
    chain = forwarding_chain(factory)
    if chain is None:
        return None
    filled: set[str] = set()
    remaining = num_positional
    for parameters in chain:
        for parameter in parameters:
            if remaining and parameter.kind in POSITIONAL:
                filled.add(parameter.name)
                remaining -= 1
        if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
            break
    names = {p.name for parameters in chain for p in parameters if p.kind in BY_KEYWORD}
    return sorted(names - filled - fixed)


class Registry(dict):
    """A dict of named classes (or factory functions) of one ``kind``; see the module docstring."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator ``@LOSSES.register("margin")``: add under ``name``; a class gets ``name``."""

        def add(factory: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if isinstance(factory, type):
                factory.name = name
            self[name] = factory
            return factory

        return add

    def __missing__(self, name: Any) -> Any:
        valid = ", ".join(sorted(self))
        raise ValueError(f"unknown {self.kind} {name!r}; valid names: {valid}")

    def check_options(
        self, name: str, options: Mapping[str, Any], num_positional: int = 0, fixed: Any = ()
    ) -> None:
        """ValueError naming the valid options when ``options`` holds one ``name`` does not take."""
        valid = accepted_options(self[name], num_positional, frozenset(fixed))
        if valid is None:
            return
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(
                f"{self.kind} {name!r} has no option {', '.join(unknown)}; "
                f"valid options: {', '.join(valid) or '(none)'}"
            )

    def build(self, name: str, *args: Any, options: Mapping[str, Any] | None = None, **fixed: Any):
        """``self[name](*args, **fixed, **options)`` after checking the user's ``options``.

        ``args`` and ``fixed`` are what the calling code always passes (sizes, labels, a seed);
        ``options`` are what a user chose (a config's ``loss_options``) and are checked.
        """
        options = dict(options or {})
        self.check_options(name, options, len(args), fixed)
        return self[name](*args, **fixed, **options)
