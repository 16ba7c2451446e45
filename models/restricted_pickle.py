"""A restricted unpickler for PyTorch files that torch's `weights_only` loader refuses.

Two legitimate cases need it: SCFM training files, whose `conf` entry is a pickled config object of a class
we do not have (and must not import), and files whose harmless bookkeeping (DeepSpeed, numpy) or pickle
protocol the `weights_only` loader rejects. Real objects are built only for an allow-list (tensor and storage
rebuilding, OrderedDict, dtypes, numpy arrays and scalars). A global from a module that can run code is
refused outright; every other global becomes an inert stand-in that records its arguments and does nothing,
so no code from the file ever runs.
"""
from __future__ import annotations

import collections
import pickle
import types
from typing import Any

import numpy as np
import torch

# Modules whose functions could act on the machine: a pickle naming them is refused, not stubbed.
_REFUSED_MODULES = {
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pty", "webbrowser",
    "code", "codeop", "ctypes", "multiprocessing", "pickle", "_pickle", "marshal", "io", "_io", "pathlib",
    "tempfile", "signal", "threading", "asyncio", "urllib", "http", "ftplib", "smtplib", "builtins", "__builtin__",
    "functools", "operator", "types", "inspect", "gc", "platform", "torch.hub", "torch.utils.cpp_extension",
}
_SAFE_BUILTINS = {"set": set, "frozenset": frozenset, "slice": slice, "complex": complex, "bytearray": bytearray,
                  "dict": dict, "list": list, "tuple": tuple, "int": int, "float": float, "bool": bool, "str": str,
                  "bytes": bytes, "range": range}


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2 moved the core; files written by numpy 1 still name numpy.core
        from numpy._core import multiarray
    except ImportError:
        from numpy.core import multiarray
    found: dict[tuple[str, str], Any] = {("numpy", "dtype"): np.dtype, ("numpy", "ndarray"): np.ndarray}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "scalar")] = multiarray.scalar
        found[(module, "_reconstruct")] = multiarray._reconstruct
    for name in dir(np.dtypes):
        value = getattr(np.dtypes, name)
        if isinstance(value, type) and issubclass(value, np.dtype):
            found[("numpy.dtypes", name)] = value
    return found


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch", "Size"): torch.Size,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._utils", "_rebuild_device_tensor_from_numpy"): torch._utils._rebuild_device_tensor_from_numpy,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("_codecs", "encode"): __import__("codecs").encode,
    **{("builtins", name): value for name, value in _SAFE_BUILTINS.items()},
    **{("__builtin__", name): value for name, value in _SAFE_BUILTINS.items()},
    **{("torch", name): getattr(torch, name) for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)},
    **_numpy_globals(),
}

# Extras torch's own `weights_only` loader may accept: numpy scalars as training frameworks store them.
SAFE_EXTRAS = [value for (module, name), value in _ALLOWED.items() if module.startswith("numpy") and name != "_reconstruct"]


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        self.qualname = f"{module}.{name}"
        super().__init__(f"refused global {self.qualname}")


class InertObject:
    """Stand-in for an object of a class we do not load: keeps what the pickle gave it, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, {}

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.items[len(self.items)] = value

    def extend(self, values: Any) -> None:
        for value in values:
            self.append(value)


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        root = module.split(".")[0]
        if module in _REFUSED_MODULES or root in _REFUSED_MODULES:
            raise RefusedGlobal(module, name)
        return type(name, (InertObject,), {"__module__": module, "__qualname__": name})


def _load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


# torch.load drives the unpickler through a module-like object (it needs `Unpickler` and `load`).
_pickle_module = types.ModuleType("posetransfer_restricted_pickle")
_pickle_module.Unpickler = RestrictedUnpickler
_pickle_module.load = _load
_pickle_module.__dict__["UnpicklingError"] = pickle.UnpicklingError


def load(path: str, mmap: bool = False) -> Any:
    """Load a PyTorch file through the restricted unpickler (tensors on CPU).

    With `mmap` (zip files only) tensor data stays on disk until used, so the optimizer state of a training
    file costs no memory.
    """
    # weights_only=False is required to pass our own pickle_module; our Unpickler is the safety boundary.
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_module, mmap=mmap)
