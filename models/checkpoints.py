"""The one checkpoint reader: safe loading, container unwrapping, kind detection, strict loading.

Every model file of the pack goes through `read_checkpoint`:
- safetensors directly;
- PyTorch pickles (.pt/.pth/.bin/.ckpt, zip or legacy) first through `torch.load(weights_only=True)` with a
  scoped allow-list, and otherwise through a restricted unpickler that turns unknown classes into inert
  stand-ins (SCFM training files pickle their config object; torch's safe unpickler also refuses some
  files written with pickle protocol 4). Globals that could run code are refused, never called.
The kind of model is read from key names and shapes, never from the file name (tencent-ailab/PCDMs#24: the
released `s2_256.pt` is a stage-1 prior).
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import torch

from ..errors import PoseTransferError
from . import restricted_pickle
from .checkpoint_kinds import KIND_DESCRIPTIONS, Kind, describe_unknown, detect_kind  # noqa: F401 - re-exported


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


# Checked in this order: SCFM training files hold both "model" and "ema"; inference uses "ema".
CONTAINER_KEYS = ("ema", "module", "state_dict", "model")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")


SIDE_CONFIG_MAX_BYTES = 1 << 20  # a side config is a few hundred bytes; anything larger is not one


class CheckpointError(PoseTransferError):
    """A model file that cannot be used as asked; the message names the file and what to do."""


class SideConfigError(CheckpointError):
    """The weights contradict a number they cannot show (head or group count): raised by config inference, which
    does not know the file, and re-raised by `build_model` naming the file and the side config to add or fix."""

    def __init__(self, problem: str, setting: str, from_side_config: bool):
        self.problem, self.setting, self.from_side_config = problem, setting, from_side_config
        super().__init__(f"{problem}; the model's side config must set {setting}")

    def for_file(self, path: str, config_source: str | None) -> CheckpointError:
        if self.from_side_config:
            return CheckpointError(f"{path}: {self.problem}. Fix {self.setting} in {config_source or 'its side config'} "
                                   "to the value of the model's original config.")
        return CheckpointError(
            f"{path}: {self.problem}. That number is not stored in the weights, so this file needs a side config: "
            f"create {side_config_path(path)} holding {{{self.setting}}} with the value of the model's original "
            "config (a safetensors file may carry it as 'config' metadata instead).")


def check_split(count: int, widths: Iterable[int], *, setting: str, default_unit: int | None = None) -> None:
    """Heads or GroupNorm groups must split every width they divide exactly.

    `count` came from a side config when `default_unit` is None; otherwise it is the full-size default, which
    holds only when every width is a multiple of `default_unit` (64-channel heads, 32 groups)."""
    widths = [int(w) for w in widths]
    if default_unit is not None:
        bad = sorted({w for w in widths if w % default_unit})
        if bad:
            raise SideConfigError(f"its layers are {bad} channels wide, not multiples of {default_unit}, so the "
                                  f"full-size default for {setting} cannot hold", f'"{setting}": <the model\'s value>',
                                  from_side_config=False)
        return
    bad = sorted({w for w in widths if count <= 0 or w % count})
    if bad:
        raise SideConfigError(f"its side config sets {setting} = {count}, which does not divide the layer widths {bad}",
                              setting, from_side_config=True)


@dataclass
class Checkpoint:
    path: str
    state_dict: dict[str, torch.Tensor]
    container: str
    kind: Kind
    metadata: dict[str, str] = field(default_factory=dict)
    config: dict | None = None
    config_source: str | None = None  # where `config` was read: the side file, or the safetensors metadata

    @property
    def description(self) -> str:
        return KIND_DESCRIPTIONS[self.kind]


# ------------------------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike, expect: Kind | Iterable[Kind] | None = None) -> Checkpoint:
    """Read a model file safely, unwrap its container and detect what it is.

    With `expect`, a file of another kind raises `CheckpointError` saying what the file really is.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, not a model file: choose the weights file inside it.")
    if not os.path.isfile(path):
        raise CheckpointError(f"Model file not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): its download or copy never finished. Download it again.")
    metadata: dict[str, str] = {}
    try:
        if _is_safetensors(path):
            state_dict, metadata = _read_safetensors(path)
            container = "safetensors"
        else:
            state_dict, container = _unwrap(_read_pickle(path), path)
    except OSError as error:  # unreadable (permissions, a disk error): not the file's content
        raise CheckpointError(f"{path} could not be read ({type(error).__name__}: {_first_line(error)}). "
                              "Check that the file is readable and the disk is healthy.") from error
    kind = detect_kind(state_dict)
    config, config_source = _side_config(path, metadata)
    checkpoint = Checkpoint(path, state_dict, container, kind, metadata, config, config_source)
    if expect is not None:
        require_kind(checkpoint, expect)
    return checkpoint


# A diffusers model folder's weights, best first (`save_pretrained` writes the first; hub repos also hold the others).
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def diffusers_weights_file(folder: str | os.PathLike, subfolder: str) -> str:
    """The weights file of a diffusers model folder (config.json + diffusion_pytorch_model.*), given that folder or
    the pipeline folder holding it as `subfolder` (e.g. a stable-diffusion-2-1-base download and "unet").
    `read_checkpoint` then reads it, and its config.json as the side config."""
    root = os.fspath(folder)
    for candidate in (os.path.join(root, subfolder), root):
        for name in DIFFUSERS_WEIGHTS:
            if os.path.isfile(os.path.join(candidate, name)):
                return os.path.join(candidate, name)
    if not os.path.isdir(root):
        raise CheckpointError(f"Model folder not found: {root}")
    raise CheckpointError(f"{root} is not a diffusers model folder: neither it nor its {subfolder}/ holds "
                          f"{' or '.join(DIFFUSERS_WEIGHTS)} (with config.json). Give the folder that does, e.g. the "
                          f"{subfolder}/ folder of the downloaded pipeline.")


def require_kind(checkpoint: Checkpoint, expect: Kind | Iterable[Kind]) -> None:
    expected = {expect} if isinstance(expect, Kind) else set(expect)
    if checkpoint.kind in expected:
        return
    wanted = " or ".join(sorted(KIND_DESCRIPTIONS[k] for k in expected))
    message = (f"{os.path.basename(checkpoint.path)} is {checkpoint.description}, but {wanted} was expected "
               f"(detected from its weights, not its name; file: {checkpoint.path}).")
    if checkpoint.kind is Kind.PCDM_PRIOR:
        message += (" The released PCDMs file stage2_checkpoints/256/s2_256.pt is known to hold the stage-1 prior"
                    " (tencent-ailab/PCDMs#24); load it with the PCDM Prior node instead.")
    elif checkpoint.kind is Kind.UNKNOWN:
        message += " " + describe_unknown(checkpoint.state_dict)
    raise CheckpointError(message)


def build_model(path: str | os.PathLike, expect: Kind | Iterable[Kind], build: Callable[[Checkpoint], ModuleT]) -> ModuleT:
    """Read `path` (which must hold `expect`) and `build(checkpoint)` its module.

    The one way files become modules: weights that do not fit the model they resemble (a missing key that config
    inference needs, a head or group count the shapes contradict) raise `CheckpointError` naming the file, never a
    bare KeyError or torch error from deep inside a constructor."""
    checkpoint = read_checkpoint(path, expect)
    with naming_file(checkpoint):
        return build(checkpoint)


@contextmanager
def naming_file(checkpoint: Checkpoint) -> Iterator[None]:
    """Turn errors raised while building `checkpoint`'s module into `CheckpointError`s that name its file."""
    path = checkpoint.path
    try:
        yield
    except SideConfigError as error:
        raise error.for_file(path, checkpoint.config_source) from error
    except PoseTransferError as error:
        if path in str(error):
            raise
        raise CheckpointError(f"{path}: {error}") from error
    except (KeyError, IndexError, ValueError, RuntimeError, TypeError, AttributeError, ZeroDivisionError,
            StopIteration, OverflowError) as error:
        reason = f"missing {error.args[0]!r}" if isinstance(error, KeyError) and error.args else \
            f"{type(error).__name__}: {_first_line(error)}"
        raise CheckpointError(
            f"{path} looks like {checkpoint.description}, but its weights do not describe a complete model of that "
            f"kind ({reason}). If it is a release file, download it again; a modified or scaled-down model needs "
            f"a side config {side_config_path(path)} with its original hyper-parameters.") from error


def _is_safetensors(path: str) -> bool:
    if path.lower().endswith(SAFETENSORS_SUFFIXES):
        return True
    with open(path, "rb") as handle:
        head = handle.read(9)
    # 8-byte little-endian header length, then the JSON header.
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            return {key: handle.get_tensor(key) for key in handle.keys()}, metadata
    except Exception as error:  # safetensors raises its own SafetensorError and OSError subclasses
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({error}). It may be truncated or corrupt: download it again."
        ) from error


def _read_pickle(path: str) -> object:
    is_zip = _is_zip(path)
    try:
        # torch reads tensor data where the pickle says it is, without comparing with the file: check first.
        restricted_pickle.check_storages(path, is_zip)
        with torch.serialization.safe_globals(restricted_pickle.SAFE_EXTRAS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except restricted_pickle.RefusedGlobal as refused:
        raise CheckpointError(_refused_message(path, refused)) from refused
    except restricted_pickle.DamagedFile as damaged:
        raise CheckpointError(f"{path}: {damaged}") from damaged
    except Exception as safe_error:  # noqa: BLE001 - decide below whether the restricted unpickler may try
        if not _is_unpickling_refusal(safe_error):
            raise CheckpointError(_corrupt_message(path, safe_error)) from safe_error
    try:
        return restricted_pickle.load(path, mmap=is_zip)
    except restricted_pickle.RefusedGlobal as refused:
        raise CheckpointError(_refused_message(path, refused)) from refused
    except Exception as error:  # noqa: BLE001 - any other failure means a damaged file
        raise CheckpointError(_corrupt_message(path, error)) from error


def _refused_message(path: str, refused: restricted_pickle.RefusedGlobal) -> str:
    return (f"Refused to load {path}: its pickle calls {refused.qualname}, which could run code on this machine. "
            "Nothing from it was executed. Only use model files from sources you trust; safetensors files cannot "
            "run code.")


def _is_zip(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _is_unpickling_refusal(error: Exception) -> bool:
    text = str(error)
    return "Weights only load failed" in text or "Unsupported global" in text or "Unsupported operand" in text


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else "no details"


def _corrupt_message(path: str, error: BaseException) -> str:
    return (f"{path} could not be read as a PyTorch checkpoint ({type(error).__name__}: {_first_line(error)}). "
            "The file may be truncated or corrupt: download it again.")


def _unwrap(obj: object, path: str) -> tuple[dict[str, torch.Tensor], str]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dictionary of weights.")
    if _is_state_dict(obj):
        return dict(obj), "flat"
    for key in CONTAINER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and _is_state_dict(inner):
            return dict(inner), key
    keys = ", ".join(map(str, list(obj)[:12]))
    raise CheckpointError(f"{path} holds no recognisable weights: its top-level entries are {keys}; "
                          f"expected a state dict or one under {', '.join(CONTAINER_KEYS)}.")


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def side_config_path(path: str) -> str:
    """Where a model file's side config goes: beside it, same stem, `.json`."""
    return os.path.splitext(path)[0] + ".json"


def _side_config(path: str, metadata: Mapping[str, str]) -> tuple[dict | None, str | None]:
    """The hyper-parameters shapes cannot tell: safetensors metadata `config`, `<stem>.json`, or `config.json`."""
    if "config" in metadata:
        return _config_object(metadata["config"], f"the 'config' metadata of {path}"), f"the 'config' metadata of {path}"
    for candidate in (side_config_path(path), os.path.join(os.path.dirname(path), "config.json")):
        if os.path.isfile(candidate):
            if os.path.getsize(candidate) > SIDE_CONFIG_MAX_BYTES:
                raise CheckpointError(f"{candidate} (the side config of {path}) is over {SIDE_CONFIG_MAX_BYTES} bytes: "
                                      "not a model config. Move it away or replace it with the model's config.")
            with open(candidate, "rb") as handle:
                return _config_object(handle.read(), f"{candidate} (the side config of {path})"), candidate
    return None, None


def _config_object(text: str | bytes, where: str) -> dict:
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, bad UTF-8, 5000-digit numbers, deep nesting
        raise CheckpointError(f"{where} is not valid UTF-8 JSON ({_first_line(error)}): fix it or remove it.") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{where} holds a JSON {type(config).__name__}, not an object of settings: fix it or "
                              "remove it.")
    return config


# ------------------------------------------------------------------------------------------- keys
def split_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: Sequence[str], *,
                   source: str = "") -> dict[str, dict[str, torch.Tensor]]:
    """Split `unet.`/`pose_proj.`/... keyed weights into one state dict per prefix, prefixes stripped.

    Every key must match a prefix: a key that matches none raises, naming it.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {prefix: {} for prefix in prefixes}
    ordered = sorted(prefixes, key=len, reverse=True)
    stray = []
    for key, value in state_dict.items():
        prefix = next((p for p in ordered if key.startswith(p)), None)
        if prefix is None:
            stray.append(key)
        else:
            parts[prefix][key[len(prefix):]] = value
    if stray:
        where = f"{source}: " if source else ""
        raise CheckpointError(f"{where}{len(stray)} weights belong to no known part ({', '.join(prefixes)}): "
                              f"{_listing(stray)}. The file holds more than this model; use the original file.")
    return parts


def build_uninitialised(factory: Callable[[], ModuleT]) -> ModuleT:
    """`factory()` on CPU without its random initialisation (seconds for the full-size UNet or DINOv2-giant).

    Only for modules whose every tensor is then overwritten by strict loading: a module with buffers is built
    normally, since non-persistent buffers are not in checkpoints and would stay uninitialised."""
    with torch.device("meta"):
        module = factory()
    if any(True for _ in module.buffers()):
        return factory()
    return module.to_empty(device="cpu")


def load_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "") -> None:
    """Load weights into `module`, refusing any missing, unexpected or mis-shaped key (and naming them)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [f"{k} {tuple(state_dict[k].shape)} (model wants {tuple(v.shape)})"
                  for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    # Weights are cast to the model's dtype on loading: a float64 or mixed file loads, but integer (quantized),
    # boolean, complex or sparse tensors would be cast into nonsense.
    not_float = [f"{k} ({state_dict[k].dtype if state_dict[k].layout == torch.strided else state_dict[k].layout})"
                 for k, v in expected.items()
                 if k in state_dict and v.is_floating_point()
                 and (not state_dict[k].is_floating_point() or state_dict[k].layout != torch.strided)]
    if not_float:
        where = f" from {source}" if source else ""
        raise CheckpointError(f"The weights{where} include {len(not_float)} that are not dense floating-point tensors: "
                              f"{_listing(not_float)}. Quantized or converted files are not supported: use the "
                              "original float16/float32 file.")
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing: {_listing(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
        if mismatched:
            problems.append(f"{len(mismatched)} with the wrong shape: {_listing(mismatched)}")
        where = f" from {source}" if source else ""
        raise CheckpointError(f"The weights{where} do not fit the {type(module).__name__} model: " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=True)


def _listing(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")
