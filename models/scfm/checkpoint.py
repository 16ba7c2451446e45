"""SCFM weights: the original `ema` key layout <-> our canonical layout, and the loader (SCFM.md §6).

The original state dict (1188 entries at full size) holds 208 entries our model does not have, each
handled here explicitly, never by non-strict loading:
- dead weights: every `cond_emb_layers` (the blocks are always called with cond=None), the source encoder's
  `emb_layers` and `time_embed` (it never receives a timestep), and in each site the attention heads it does
  not use (a site uses the head of its level; the k=1 head of level 5 is a constant softmax over one channel);
- one alias pair per flow-net jump: `jumpN.conv1.*` and `jumpN.model.2.*` are the same tensor. We keep
  `conv1` and accept either name.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Mapping

import torch

from ..checkpoints import CheckpointError, Kind, build_model, load_strict
from .config import SCFMConfig
from .unet import SCFMUNet

logger = logging.getLogger(__name__)

_JUMP_ALIAS = re.compile(r"^flow_net\.(jump\d+)\.model\.2\.(weight|bias)$")
_DEAD = (
    re.compile(r"\.cond_emb_layers\.1\.(weight|bias)$"),
    re.compile(r"^encoder\.input_blocks\.\d+\.0\.emb_layers\.1\.(weight|bias)$"),
    re.compile(r"^encoder\.time_embed\.[02]\.(weight|bias)$"),
)
_SITE_HEAD = re.compile(r"^(input_blocks\.\d+|middle_block|output_blocks\.\d+)\.1\.target\.attn(\d)\.")
# Site location -> its level (3: image/8, 4: image/16, 5: image/32).
_SITE_LEVELS = {"input_blocks.11": 3, "input_blocks.14": 4, "input_blocks.17": 5, "middle_block": 5,
                "output_blocks.1": 5, "output_blocks.4": 4, "output_blocks.7": 3}
# The head each level uses (attn0: k=3, attn1: k=2); level 5 (k=1) needs none.
_USED_HEAD = {3: 0, 4: 1}


def is_dead_key(key: str) -> bool:
    """True for weights of the original that never influence its output (see module docstring)."""
    if any(pattern.search(key) for pattern in _DEAD):
        return True
    match = _SITE_HEAD.match(key)
    if match is None:
        return False
    level = _SITE_LEVELS.get(match.group(1))
    return level is not None and _USED_HEAD.get(level) != int(match.group(2))


def canonical_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original `ema` (or already canonical) weights -> the keys of `SCFMUNet`: dead keys dropped, aliases folded.

    Safe to pass to `safetensors.save_file` (no shared tensors remain). Raises `CheckpointError` if the two
    names of an alias pair hold different values.
    """
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        alias = _JUMP_ALIAS.match(key)
        if alias:
            aliases[f"flow_net.{alias.group(1)}.conv1.{alias.group(2)}"] = value
        elif not is_dead_key(key):
            out[key] = value
    for key, value in aliases.items():
        kept = out.setdefault(key, value)
        if kept is not value and not torch.equal(kept, value):
            raise CheckpointError(f"{key} and its alias {key.replace('conv1', 'model.2')} hold different values; "
                                  "the original stores one tensor under both names, so this file was altered.")
    return out


def original_state_dict(state_dict: Mapping[str, torch.Tensor], config: SCFMConfig) -> dict[str, torch.Tensor]:
    """Canonical weights -> the original `ema` layout (dead weights as zeros, jump aliases sharing storage).

    Lets a model trained here be loaded by the original code (`BeatGANsAutoencModel.load_state_dict`).
    """
    out = dict(state_dict)
    widths, emb = config.level_channels, config.embed_channels
    for key, value in state_dict.items():
        alias = re.match(r"^flow_net\.(jump\d+)\.conv1\.(weight|bias)$", key)
        if alias:
            out[f"flow_net.{alias.group(1)}.model.2.{alias.group(2)}"] = value
        block = re.match(r"^(.*)\.out_layers\.3\.weight$", key)
        if block:
            channels = value.shape[0]
            _zeros(out, f"{block.group(1)}.cond_emb_layers.1", (channels, channels))
            if key.startswith("encoder."):
                _zeros(out, f"{block.group(1)}.emb_layers.1", (2 * channels, emb))
    _zeros(out, "encoder.time_embed.0", (emb, config.model_channels))
    _zeros(out, "encoder.time_embed.2", (emb, emb))
    # Head widths are hard-wired in the original: attn0 at the level-3 width, attn1/attn2 at the level-4 width.
    heads = {0: (widths[3], 3), 1: (widths[4], 2), 2: (widths[4], 1)}
    for site, level in _SITE_LEVELS.items():
        for index, (channels, k) in heads.items():
            if _USED_HEAD.get(level) != index:
                prefix = f"{site}.1.target.attn{index}.fully_connect_layer"
                _zeros(out, f"{prefix}.0", (128, 2 * channels, k, k))
                _zeros(out, f"{prefix}.2", (k * k, 128, 1, 1))
    return out


def _zeros(out: dict[str, torch.Tensor], prefix: str, weight_shape: tuple[int, ...]) -> None:
    out[f"{prefix}.weight"] = torch.zeros(weight_shape)
    out[f"{prefix}.bias"] = torch.zeros(weight_shape[0])


def build_scfm(state_dict: Mapping[str, torch.Tensor], *, source: str = "") -> SCFMUNet:
    """An eval-mode `SCFMUNet` holding `state_dict` (original or canonical layout), widths read from its shapes."""
    canonical = canonical_state_dict(state_dict)
    config = SCFMConfig.from_state_dict(canonical)
    # Build without random initialisation (the weights are overwritten anyway).
    with torch.device("meta"):
        model = SCFMUNet(config)
    model = model.to_empty(device="cpu")
    load_strict(model, canonical, source=source)
    dropped = len(state_dict) - len(canonical)
    logger.info("SCFM %s: %d weights loaded, %d dead or alias entries dropped", source, len(canonical), dropped)
    return model.eval()


def load_scfm(path: str | os.PathLike) -> SCFMUNet:
    """Read an SCFM file (training container `last.pt`, its `ema`/`model` dict, or safetensors) -> model.

    The training container's pickled config object is never executed (the pack's restricted reader).
    """
    return build_model(path, Kind.SCFM, lambda checkpoint: build_scfm(checkpoint.state_dict, source=checkpoint.path))
