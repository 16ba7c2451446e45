"""Build a PCDMs stage-2 model (simplified release or the paper's full stage 2) from its original file."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..checkpoints import Checkpoint, CheckpointError, Kind, build_model, build_uninitialised, load_strict, split_prefixes
from .heads import ImageProjection, build_pose_proj
from .unet import build_pose_unet


STAGE2_KINDS = (Kind.PCDM_SIMPLIFIED, Kind.PCDM_STAGE2)
# The simplified release names its appearance head `image_proj_model`; the paper's stages use `image_proj_model_p`.
_IMAGE_PROJ_PREFIX = {Kind.PCDM_SIMPLIFIED: "image_proj_model.", Kind.PCDM_STAGE2: "image_proj_model_p."}


class PcdmStage2(nn.Module):
    """UNet + pose projection + appearance projection of one stage-2 checkpoint.

    kind: Kind.PCDM_SIMPLIFIED (cross-attention = projected DINO tokens; uncond = projection of zeros) or
    Kind.PCDM_STAGE2 (+ target CLIP-H embed as the last token and as class label; uncond = literal zeros).
    """

    def __init__(self, unet: nn.Module, pose_proj: nn.Module, image_proj: ImageProjection, kind: Kind):
        super().__init__()
        self.unet = unet
        self.pose_proj = pose_proj
        self.image_proj = image_proj
        self.kind = kind

    @property
    def is_full(self) -> bool:
        return self.kind == Kind.PCDM_STAGE2

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def unet_overrides(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The UNet part of a side config: either a diffusers UNet config or `{"unet": {...}}`."""
    if not config:
        return {}
    return dict(config.get("unet", config))


def build_stage2(checkpoint: Checkpoint) -> PcdmStage2:
    """Module for an already-read stage-2 checkpoint, weights loaded strictly (float32 unless the file says otherwise)."""
    if checkpoint.kind not in STAGE2_KINDS:
        raise CheckpointError(f"{checkpoint.path}: expected a PCDMs stage-2 checkpoint, found {checkpoint.kind.value}")
    image_prefix = _IMAGE_PROJ_PREFIX[checkpoint.kind]
    parts = split_prefixes(checkpoint.state_dict, ["unet.", "pose_proj.", image_prefix], source=checkpoint.path)
    unet = build_uninitialised(lambda: build_pose_unet(parts["unet."], unet_overrides(checkpoint.config)))
    pose_proj = build_uninitialised(lambda: build_pose_proj(parts["pose_proj."]))
    image_proj = build_uninitialised(lambda: ImageProjection.from_state_dict(parts[image_prefix]))
    source = checkpoint.path
    load_strict(unet.unet, parts["unet."], source=f"{source} (unet.)")
    load_strict(pose_proj, parts["pose_proj."], source=f"{source} (pose_proj.)")
    load_strict(image_proj, parts[image_prefix], source=f"{source} ({image_prefix})")
    if image_proj.out_dim != unet.config.cross_attention_dim:
        raise CheckpointError(f"{source}: image projection outputs {image_proj.out_dim} channels but the UNet "
                              f"cross-attention expects {unet.config.cross_attention_dim}")
    return PcdmStage2(unet, pose_proj, image_proj, checkpoint.kind)


def load_pcdm_checkpoint(path: str, dtype: torch.dtype | None = None) -> PcdmStage2:
    """Read `path` (DeepSpeed `{"module": ...}`, bare dict or safetensors) and build the stage-2 model.

    Raises CheckpointError naming the file when it holds something else (e.g. the released `s2_256.pt`,
    which is really a stage-1 prior — tencent-ailab/PCDMs#24). `dtype` casts the weights (default: kept).
    """
    model = build_model(path, STAGE2_KINDS, build_stage2)
    return model.to(dtype) if dtype is not None else model
