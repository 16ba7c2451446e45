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
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

import torch

from . import restricted_pickle


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


class Kind(str, Enum):
    PCDM_SIMPLIFIED = "pcdm_simplified"
    PCDM_STAGE2 = "pcdm_stage2_full"
    PCDM_STAGE3 = "pcdm_stage3"
    PCDM_PRIOR = "pcdm_prior"
    SCFM = "scfm"
    VAE_DIFFUSERS = "vae_diffusers"
    VAE_LDM = "vae_ldm"
    DINOV2 = "dinov2"
    CLIP_VISION = "clip_vision"
    UNKNOWN = "unknown"


KIND_DESCRIPTIONS = {
    Kind.PCDM_SIMPLIFIED: "the simplified PCDMs stage-2 model (PCDMs_ckpt.pt: unet + pose_proj + image_proj_model)",
    Kind.PCDM_STAGE2: "the full PCDMs stage-2 inpainting model (unet with class embedding + pose_proj + image_proj_model_p)",
    Kind.PCDM_STAGE3: "a PCDMs stage-3 refinement model (8-channel unet + image_proj_model_p)",
    Kind.PCDM_PRIOR: "a PCDMs stage-1 prior transformer",
    Kind.SCFM: "an SCFM denoising model (flow_net + cct_block + U-Net)",
    Kind.VAE_DIFFUSERS: "a Stable Diffusion VAE (diffusers layout)",
    Kind.VAE_LDM: "a Stable Diffusion VAE (original LDM layout)",
    Kind.DINOV2: "a DINOv2 image encoder (transformers layout)",
    Kind.CLIP_VISION: "a CLIP vision encoder (transformers layout)",
    Kind.UNKNOWN: "not a model this pack recognises",
}

# Checked in this order: SCFM training files hold both "model" and "ema"; inference uses "ema".
CONTAINER_KEYS = ("ema", "module", "state_dict", "model")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")


class CheckpointError(ValueError):
    """A model file that cannot be used as asked; the message names the file and what to do."""


@dataclass
class Checkpoint:
    path: str
    state_dict: dict[str, torch.Tensor]
    container: str
    kind: Kind
    metadata: dict[str, str] = field(default_factory=dict)
    config: dict | None = None

    @property
    def description(self) -> str:
        return KIND_DESCRIPTIONS[self.kind]


# ------------------------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike, expect: Kind | Iterable[Kind] | None = None) -> Checkpoint:
    """Read a model file safely, unwrap its container and detect what it is.

    With `expect`, a file of another kind raises `CheckpointError` saying what the file really is.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"Model file not found: {path}")
    metadata: dict[str, str] = {}
    if _is_safetensors(path):
        state_dict, metadata = _read_safetensors(path)
        container = "safetensors"
    else:
        state_dict, container = _unwrap(_read_pickle(path), path)
    kind = detect_kind(state_dict)
    checkpoint = Checkpoint(path, state_dict, container, kind, metadata, _side_config(path, metadata))
    if expect is not None:
        require_kind(checkpoint, expect)
    return checkpoint


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
        sample = ", ".join(list(checkpoint.state_dict)[:5])
        message += f" Its first keys are: {sample}."
    raise CheckpointError(message)


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
    try:
        with torch.serialization.safe_globals(restricted_pickle.SAFE_EXTRAS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except Exception as safe_error:  # noqa: BLE001 - decide below whether the restricted unpickler may try
        if not _is_unpickling_refusal(safe_error):
            raise CheckpointError(_corrupt_message(path, safe_error)) from safe_error
    try:
        return restricted_pickle.load(path, mmap=_is_zip(path))
    except restricted_pickle.RefusedGlobal as refused:
        raise CheckpointError(
            f"Refused to load {path}: its pickle calls {refused.qualname}, which could run code on this machine. "
            "Nothing from it was executed. Only use model files from sources you trust; safetensors files cannot run code."
        ) from refused
    except Exception as error:  # noqa: BLE001 - any other failure means a damaged file
        raise CheckpointError(_corrupt_message(path, error)) from error


def _is_zip(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _is_unpickling_refusal(error: Exception) -> bool:
    text = str(error)
    return "Weights only load failed" in text or "Unsupported global" in text or "Unsupported operand" in text


def _corrupt_message(path: str, error: Exception) -> str:
    return (f"{path} could not be read as a PyTorch checkpoint ({type(error).__name__}: {str(error).splitlines()[0]}). "
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


def _side_config(path: str, metadata: Mapping[str, str]) -> dict | None:
    if "config" in metadata:
        return json.loads(metadata["config"])
    stem = os.path.splitext(path)[0]
    for candidate in (stem + ".json", os.path.join(os.path.dirname(path), "config.json")):
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as handle:
                return json.load(handle)
    return None


# ------------------------------------------------------------------------------------------- kinds
def detect_kind(state_dict: Mapping[str, torch.Tensor]) -> Kind:
    """What a state dict is, from key names and shapes (PCDMS.md §4, SCFM.md §6)."""
    keys = state_dict.keys()

    def has_prefix(prefix: str) -> bool:
        return any(key.startswith(prefix) for key in keys)

    positional = state_dict.get("positional_embedding")
    if positional is not None and "prd_embedding" in keys and positional.dim() == 3 and positional.shape[1] == 6:
        return Kind.PCDM_PRIOR
    conv_in = state_dict.get("unet.conv_in.weight")
    if conv_in is not None and conv_in.dim() == 4:
        channels, pose = conv_in.shape[1], has_prefix("pose_proj.")
        if channels == 9 and pose and "unet.class_embedding.linear_1.weight" in keys and has_prefix("image_proj_model_p."):
            return Kind.PCDM_STAGE2
        if channels == 9 and pose and has_prefix("image_proj_model.") and not has_prefix("unet.class_embedding."):
            return Kind.PCDM_SIMPLIFIED
        if channels == 8 and not pose and has_prefix("image_proj_model_p."):
            return Kind.PCDM_STAGE3
    if "flow_net.output_eight.weight" in keys and has_prefix("cct_block."):
        return Kind.SCFM
    if "decoder.conv_out.weight" in keys:
        if "encoder.down_blocks.0.resnets.0.conv1.weight" in keys:
            return Kind.VAE_DIFFUSERS
        if "encoder.down.0.block.0.conv1.weight" in keys:
            return Kind.VAE_LDM
    if "embeddings.patch_embeddings.projection.weight" in keys and "embeddings.cls_token" in keys:
        return Kind.DINOV2
    if "vision_model.embeddings.patch_embedding.weight" in keys:
        return Kind.CLIP_VISION
    return Kind.UNKNOWN


# ------------------------------------------------------------------------------------------- keys
def split_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: Sequence[str]) -> dict[str, dict[str, torch.Tensor]]:
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
        raise CheckpointError(f"{len(stray)} weights belong to no known part ({', '.join(prefixes)}): "
                              f"{_listing(stray)}")
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
