"""A restricted unpickler for PyTorch files that torch's `weights_only` loader refuses.

Two legitimate cases need it: SCFM training files, whose `conf` entry is a pickled config object of a class
we do not have (and must not import), and files whose harmless bookkeeping (DeepSpeed, numpy) or pickle
protocol the `weights_only` loader rejects. Real objects are built only for an allow-list (tensor and storage
rebuilding, OrderedDict, dtypes, numpy arrays and scalars). A global from a module that can run code is
refused outright; every other global becomes an inert stand-in that records its arguments and does nothing,
so no code from the file ever runs.
"""
from __future__ import annotations

import _compat_pickle
import collections
import os
import pickle
import types
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any

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


class DamagedFile(Exception):
    """A PyTorch file whose pickle and tensor data do not agree; the message says what to do (no file name:
    the checkpoint reader adds it)."""


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


def python3_name(module: str, name: str) -> tuple[str, str]:
    """The global Python 3 would import for a (possibly Python 2) name, as pickle's `fix_imports` maps it.

    Judging the name as written would let `commands.check_call` (Python 3: `subprocess.check_call`) pass as an
    unknown, stubbed class."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler: the C one sizes its memo from the file, so 7 random bytes (LONG_BINPUT with a
    huge index) can make it allocate and clear gigabytes; here the memo is a dict."""

    def find_class(self, module: str, name: str) -> Any:
        for candidate in {(module, name), python3_name(module, name)}:
            if candidate in _ALLOWED:
                return _ALLOWED[candidate]
        for judged_module, judged_name in {(module, name), python3_name(module, name)}:
            root = judged_module.split(".")[0]
            if judged_module in _REFUSED_MODULES or root in _REFUSED_MODULES:
                raise RefusedGlobal(judged_module, judged_name)
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


# ------------------------------------------------------------------------------------------- storage manifest
@dataclass
class StorageManifest:
    """What a PyTorch pickle says about its tensor data, read without loading any of it.

    storages: key -> (dtype, number of elements) as declared by the pickle's persistent ids;
    tensors: (storage key, offset, size, stride) of every tensor built on a storage."""

    storages: dict[str, tuple[torch.dtype, int]] = field(default_factory=dict)
    tensors: list[tuple[str, int, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def storage_bytes(self, key: str) -> int:
        dtype, numel = self.storages[key]
        return numel * torch._utils._element_size(dtype)


class _StorageRef:
    def __init__(self, key: str):
        self.key = key


class _ManifestUnpickler(RestrictedUnpickler):
    """The restricted unpickler with storages and tensors replaced by records of their declared extents."""

    def __init__(self, file: IO[bytes], manifest: StorageManifest):
        super().__init__(file)
        self.manifest = manifest

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("torch") and isinstance(name, str) and name.endswith("Storage"):
            return ("storage_type", name)
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor
        if (module, name) in {("torch._utils", "_rebuild_parameter"), ("torch.nn.parameter", "Parameter"),
                              ("torch._utils", "_rebuild_parameter_with_state")}:
            return lambda data, *args, **kwargs: data
        return super().find_class(module, name)

    def persistent_load(self, saved_id: Any) -> _StorageRef | None:
        if not isinstance(saved_id, tuple) or len(saved_id) not in (5, 6) or saved_id[0] not in ("storage", b"storage"):
            return None  # legacy whole-module pickles also name their classes' sources: not tensor data
        storage_type, key, numel = saved_id[1], str(saved_id[2]), saved_id[4]
        if not (isinstance(storage_type, tuple) and storage_type[0] == "storage_type"):
            raise pickle.UnpicklingError(f"storage {key} has no storage type")
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"storage {key} declares {numel!r} elements")
        dtype = torch.uint8 if storage_type[1] == "UntypedStorage" else _storage_dtype(storage_type[1])
        self.manifest.storages.setdefault(key, (dtype, numel))
        return _StorageRef(key)

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(storage, _StorageRef):
            raise pickle.UnpicklingError("a tensor is built on something that is not a storage")
        self.manifest.tensors.append((storage.key, offset, tuple(size), tuple(stride)))


def _storage_dtype(name: str) -> torch.dtype:
    try:
        return torch.serialization.StorageType(name).dtype
    except KeyError:
        raise pickle.UnpicklingError(f"unknown storage type {name}") from None


def storage_manifest(file: IO[bytes]) -> StorageManifest:
    """Read the storage and tensor declarations of the pickle at `file`'s position (zip `data.pkl`, or the main
    pickle of a legacy file). Refuses dangerous globals like `load`; builds no tensor."""
    manifest = StorageManifest()
    _ManifestUnpickler(file, manifest).load()
    return manifest


_DOWNLOAD_AGAIN = "The file is truncated or was altered: download it again."


def check_storages(path: str, is_zip: bool) -> None:
    """Before torch reads tensor data where the pickle says it is: does the file hold it? Raises DamagedFile or
    RefusedGlobal. (Through mmap, torch reads a short zip record's tensor from the next record's bytes.)"""
    manifest, available = _zip_manifest(path) if is_zip else _legacy_manifest(path)
    for key, needed in available(manifest):
        if needed is not None:
            raise DamagedFile(f"the data of tensor storage {key} needs {manifest.storage_bytes(key)} bytes as the "
                              f"file's index declares, but {needed}. {_DOWNLOAD_AGAIN}")
    for key, offset, size, stride in manifest.tensors:
        if key not in manifest.storages or len(size) != len(stride) or not all(
                isinstance(v, int) and v >= 0 for v in (offset, *size, *stride)):
            raise DamagedFile(f"a tensor is declared with offset {offset!r}, size {size!r}, stride {stride!r} on "
                              f"storage {key}. {_DOWNLOAD_AGAIN}")
        extent = 0 if 0 in size else offset + 1 + sum((n - 1) * st for n, st in zip(size, stride))
        if extent > manifest.storages[key][1]:
            raise DamagedFile(f"a tensor of shape {tuple(size)} reaches element {extent} of storage {key}, which "
                              f"holds {manifest.storages[key][1]}. {_DOWNLOAD_AGAIN}")


def _zip_manifest(path: str) -> tuple[StorageManifest, Any]:
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        pickles = [name for name in infos if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise DamagedFile("it is a zip archive but not a PyTorch checkpoint (no single <name>/data.pkl record). "
                              "Choose the model file itself, not an archive holding it.")
        if infos[pickles[0]].compress_type != zipfile.ZIP_STORED:
            raise DamagedFile("its data.pkl record is compressed, which PyTorch never writes: the file was repacked "
                              "by another tool. Download the original file again.")
        with archive.open(pickles[0]) as handle:
            manifest = storage_manifest(handle)
    prefix = pickles[0][:-len("data.pkl")]

    def short_records(manifest: StorageManifest):
        for key in manifest.storages:
            info = infos.get(f"{prefix}data/{key}")
            if info is None:
                yield key, "the file has no record of it"
            elif info.compress_type != zipfile.ZIP_STORED:
                yield key, "its record is compressed"
            elif info.file_size < manifest.storage_bytes(key):
                yield key, f"its record holds {info.file_size}"
    return manifest, short_records


def _legacy_manifest(path: str) -> tuple[StorageManifest, Any]:
    """Legacy (pre-zip) files: four pickles, then each storage's data behind an 8-byte length."""
    with open(path, "rb") as handle:
        if handle.read(1) != b"\x80":
            return StorageManifest(), lambda manifest: iter(())  # not a pickle (tar-era or garbage): torch reports it
        handle.seek(0)
        for _ in range(3):  # magic number, protocol version, system info
            RestrictedUnpickler(handle).load()
        manifest = storage_manifest(handle)
        keys = RestrictedUnpickler(handle).load()
        remaining = os.path.getsize(path) - handle.tell()
    if not isinstance(keys, list):
        raise DamagedFile(f"its list of tensor storages is missing. {_DOWNLOAD_AGAIN}")

    def beyond_end(manifest: StorageManifest):
        left = remaining
        for key in map(str, keys):
            if key not in manifest.storages:
                raise DamagedFile(f"it lists tensor storage {key}, which its pickle never declares. {_DOWNLOAD_AGAIN}")
            left -= 8 + manifest.storage_bytes(key)
            if left < 0:
                yield key, "the file ends before it"
    return manifest, beyond_end
