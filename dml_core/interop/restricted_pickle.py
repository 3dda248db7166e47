"""Reading ``torch.save`` files that hold more than tensors, without running their code.

The paper's official code saves ``{'state_dict', 'opt', 'progress', 'aux'}``: an
``argparse.Namespace`` and the code's own logger classes beside the weights, which
``torch.load(weights_only=True)`` refuses. ``load_restricted`` reads such a file through
``torch.load`` with ``RestrictedUnpickler`` as the pickle module:

- globals on ``ALLOWED_GLOBALS`` (tensor and storage rebuilding, ``OrderedDict``,
  ``argparse.Namespace``, ``torch.device``/``torch.Size``, numpy scalar and array
  reconstruction, ``_codecs.encode`` for protocol-2 bytes, ``set``, ``frozenset``,
  ``complex``) are the real objects;
- every other global becomes an ``InertClass``: nothing is imported. Instantiating it the way
  pickle rebuilds plain objects (``NEWOBJ`` + ``BUILD``) gives an ``InertRecord`` holding the
  saved state; *calling* it (``REDUCE``: how ``__reduce__`` payloads such as ``os.system`` or
  ``builtins.exec`` run code) raises ``UnsafePickleError`` before anything executes.

TorchScript archives (which ``torch.load`` would hand to ``torch.jit.load``) are refused.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("argparse", "Namespace"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "device"),
    ("torch", "Size"),
    ("_codecs", "encode"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
}
"""(module, name) pairs that are resolved to the real object; everything else stays inert."""


class UnsafePickleError(ValueError):
    """The pickle tried to call something outside the allowlist; nothing was executed."""


class InertRecord:
    """An object of a class that was not imported: its module, class name and saved state."""

    __slots__ = ("args", "state")
    module: str = ""
    name: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> InertRecord:
        record = object.__new__(cls)
        record.args = args
        record.state = None
        return record

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.module}.{self.name}>"


class InertClass(type):
    """Metaclass of the stand-ins for unknown globals: building instances is allowed (``NEWOBJ``
    calls ``__new__`` directly), calling the stand-in is refused."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        shown = ", ".join(repr(a)[:60] for a in args)
        raise UnsafePickleError(
            f"refused: the pickle calls {cls.module}.{cls.name}({shown}), which is not on the "
            "allowlist; nothing was executed"
        )


def inert_class(module: str, name: str) -> type:
    """A stand-in type for ``module.name``; the real object is never imported."""
    return InertClass(name, (InertRecord,), {"__slots__": (), "module": module, "name": name})


def _resolve(module: str, name: str) -> Any:
    # Protocol-2 pickles name Python 2 modules (``__builtin__.set``); map them as pickle does.
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    if (module, name) not in ALLOWED_GLOBALS:
        return inert_class(module, name)
    if module.startswith("numpy.") and module.endswith(".multiarray"):
        import numpy as np

        major = int(np.__version__.split(".")[0])
        module = "numpy._core.multiarray" if major >= 2 else "numpy.core.multiarray"
    return getattr(importlib.import_module(module), name)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only ``ALLOWED_GLOBALS``."""

    def find_class(self, module: str, name: str) -> Any:
        return _resolve(module, name)


class _RestrictedPickleModule:
    """What ``torch.load(pickle_module=…)`` needs: ``Unpickler`` and ``load``."""

    __name__ = "dml_core_restricted_pickle"
    Unpickler = RestrictedUnpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return RestrictedUnpickler(file, **kwargs).load()


def refuse_torchscript(path: Path) -> None:
    """TorchScript archives hold code (``torch.load`` would run ``torch.jit.load``): refused."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("constants.pkl") for name in archive.namelist()):
                raise UnsafePickleError(
                    f"{path} is a TorchScript archive; it holds code and is not imported"
                )


def load_restricted(path: str | Path) -> Any:
    """``torch.load`` of ``path`` on the CPU through ``RestrictedUnpickler``."""
    import torch

    path = Path(path)
    refuse_torchscript(path)
    try:
        return torch.load(
            path, map_location="cpu", pickle_module=_RestrictedPickleModule, weights_only=False
        )
    except UnsafePickleError:
        raise
    except RuntimeError as error:
        if "TORCH_FORCE_WEIGHTS_ONLY_LOAD" in str(error) or "pickle_module" in str(error):
            raise ValueError(
                f"{path}: TORCH_FORCE_WEIGHTS_ONLY_LOAD is set, which rules out the restricted "
                "reader; unset it to import this checkpoint"
            ) from None
        raise ValueError(f"{path} is not a readable torch.save file ({error})") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as error:
        raise ValueError(f"{path} is not a readable torch.save file ({error})") from None
