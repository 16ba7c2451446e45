"""Frozen image encoders of PCDMs (DINOv2-giant, CLIP ViT-H/14) from their transformers-layout files, with
PCDMs' own preprocessing (PCDMS.md §3.1, §5).

PCDMs fed BOTH encoders through `CLIPImageProcessor()` defaults: PIL bicubic resize (shortest edge 224),
centre crop 224, CLIP mean/std. ComfyUI's own DINOv2 preprocessing (518 px, ImageNet stats) is not what the
released models saw, so it is not used here.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from .checkpoints import Checkpoint, CheckpointError, Kind, build_model, build_uninitialised, check_split, load_strict
from .images import pil_resize

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIPImageProcessor defaults (OpenAI CLIP statistics)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_INPUT_SIZE = 224
_DINO_HEAD_WIDTH = 64  # DINOv2 ViT-S/B/L/g all use 64-wide heads
# Head counts of the public CLIP vision towers by width (ViT-H/14 has 80-wide heads, so width // 64 would be wrong).
_CLIP_HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}
# transformers < 5 (and the hub files) name the DINOv2 attention projections differently.
_DINO_RENAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
)
# Weights of a full CLIP file that the vision tower does not use.
_CLIP_UNUSED_PREFIXES = ("text_model.", "text_projection.", "logit_scale")


def clip_preprocess(images: torch.Tensor, size: int = CLIP_INPUT_SIZE) -> torch.Tensor:
    """[B,3,H,W] in 0..1 -> [B,3,size,size] normalised with CLIP mean/std, float32.

    PIL bicubic on uint8 to the shortest edge `size`, then a centre crop (transformers' rounding), as
    `CLIPImageProcessor` does.
    """
    height, width = images.shape[-2:]
    short, long = (height, width) if height <= width else (width, height)
    new_long = int(size * long / short)
    new_size = (size, new_long) if height <= width else (new_long, size)
    resized = pil_resize(images, new_size)
    top, left = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    cropped = resized[..., top:top + size, left:left + size]
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
    return (cropped - mean) / std


# ------------------------------------------------------------------------------------------- DINOv2
def convert_dinov2_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hub/transformers-4 DINOv2 names -> transformers-5 names (attention projections, SwiGLU halves)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for old, new in _DINO_RENAMES:
            key = key.replace(old, new)
        match = re.match(r"(.*\.mlp\.)weights_(in|out)\.(weight|bias)$", key)
        if match and match.group(2) == "in":
            # the old fused SwiGLU input layer is [gate; up] along the output dimension
            gate, up = value.chunk(2, dim=0)
            out[f"{match.group(1)}gate_proj.{match.group(3)}"] = gate
            out[f"{match.group(1)}up_proj.{match.group(3)}"] = up
        elif match:
            out[f"{match.group(1)}down_proj.{match.group(3)}"] = value
        else:
            out[key] = value
    return out


def dinov2_config(state_dict: Mapping[str, torch.Tensor], overrides: Mapping[str, Any] | None = None) -> Any:
    """`Dinov2Config` inferred from a transformers-5 state dict (see `convert_dinov2_keys`)."""
    from transformers import Dinov2Config

    patch = state_dict["embeddings.patch_embeddings.projection.weight"]
    hidden, channels, patch_size = int(patch.shape[0]), int(patch.shape[1]), int(patch.shape[2])
    positions = int(state_dict["embeddings.position_embeddings"].shape[1]) - 1
    layers = len({k.split(".")[2] for k in state_dict if k.startswith("encoder.layer.")})
    swiglu = "encoder.layer.0.mlp.gate_proj.weight" in state_dict
    if swiglu:
        # transformers sizes SwiGLU as round8(int(hidden * ratio) * 2/3); hidden * ratio = 1.5 * width inverts it
        mlp_width = 1.5 * int(state_dict["encoder.layer.0.mlp.gate_proj.weight"].shape[0])
    else:
        mlp_width = int(state_dict["encoder.layer.0.mlp.fc1.weight"].shape[0])
    mlp_ratio = round(mlp_width / hidden)  # transformers types it as int (4 for every DINOv2 size)
    kwargs: dict[str, Any] = dict(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // _DINO_HEAD_WIDTH),
        patch_size=patch_size, num_channels=channels, image_size=round(math.sqrt(positions)) * patch_size,
        mlp_ratio=mlp_ratio, use_swiglu_ffn=swiglu, layerscale_value=1.0,
    )
    kwargs.update({k: v for k, v in (overrides or {}).items() if k in kwargs or k == "layer_norm_eps"})
    from_side_config = "num_attention_heads" in (overrides or {})
    check_split(kwargs["num_attention_heads"], [hidden], setting="num_attention_heads",
                default_unit=None if from_side_config else _DINO_HEAD_WIDTH)
    return Dinov2Config(**kwargs)


def build_dinov2(state_dict: Mapping[str, torch.Tensor], overrides: Mapping[str, Any] | None = None,
                 source: str = "") -> torch.nn.Module:
    """transformers `Dinov2Model` with weights from `state_dict` (old or new key names)."""
    from transformers import Dinov2Model

    state_dict = convert_dinov2_keys(state_dict)
    config = dinov2_config(state_dict, overrides)
    model = build_uninitialised(lambda: Dinov2Model(config)).eval()
    if "embeddings.mask_token" not in state_dict:
        # only masked pre-training uses it and some exports drop it: zeros, never uninitialised memory
        state_dict = {**state_dict, "embeddings.mask_token": torch.zeros_like(model.embeddings.mask_token)}
    load_strict(model, state_dict, source=source)
    return model


def load_dinov2(path: str) -> torch.nn.Module:
    """DINOv2 from a `clip_vision`-folder file; a CLIP file or anything else raises CheckpointError."""
    return build_model(path, Kind.DINOV2,
                       lambda checkpoint: build_dinov2(checkpoint.state_dict, checkpoint.config, source=checkpoint.path))


def _legacy_position_embeddings(model: torch.nn.Module, height: int, width: int) -> torch.Tensor:
    """transformers 4.32.1's DINOv2 pos-emb interpolation, the one PCDMs ran: bicubic with
    scale_factor=(n + 0.1) / sqrt(N), in the model dtype. Current transformers uses size=(n, n) in float32,
    which moves patch tokens by ~1.7 % of their range (CLS unchanged)."""
    embeddings = model.embeddings
    table = embeddings.position_embeddings
    positions = table.shape[1] - 1
    side = math.sqrt(positions)
    patch = model.config.patch_size
    grid_h, grid_w = height // patch + 0.1, width // patch + 0.1
    patch_table = table[:, 1:].reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
    patch_table = F.interpolate(patch_table, scale_factor=(float(grid_h / side), float(grid_w / side)),
                                mode="bicubic", align_corners=False)
    patch_table = patch_table.permute(0, 2, 3, 1).reshape(1, -1, table.shape[-1])
    return torch.cat([table[:, :1], patch_table], dim=1)


@torch.no_grad()
def encode_dino(model: torch.nn.Module, images: torch.Tensor, legacy_interpolation: bool = True) -> torch.Tensor:
    """DINOv2 `last_hidden_state` (B, 1 + (224/14)^2, hidden) of [B,3,H,W] 0..1 images, PCDMs preprocessing.

    `legacy_interpolation` (default) reproduces the transformers 4.32.1 pos-emb interpolation the released
    PCDMs models were trained and run with; False uses the installed transformers' forward.
    """
    return encode_dino_pixels(model, clip_preprocess(images), legacy_interpolation)


@torch.no_grad()
def encode_dino_pixels(model: torch.nn.Module, pixels: torch.Tensor, legacy_interpolation: bool = True) -> torch.Tensor:
    """`encode_dino` from already preprocessed pixels (training zeroes them for conditioning dropout, as PCDMs)."""
    param = next(model.parameters())
    pixels = pixels.to(device=param.device, dtype=param.dtype)
    if not legacy_interpolation:
        return model(pixel_values=pixels).last_hidden_state
    tokens = model.embeddings.patch_embeddings(pixels)
    tokens = torch.cat([model.embeddings.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
    tokens = tokens + _legacy_position_embeddings(model, pixels.shape[-2], pixels.shape[-1])
    return model.layernorm(model.encoder(tokens).last_hidden_state)


# ------------------------------------------------------------------------------------------- CLIP vision
def build_clip_vision(state_dict: Mapping[str, torch.Tensor], overrides: Mapping[str, Any] | None = None,
                      source: str = "") -> torch.nn.Module:
    """transformers `CLIPVisionModelWithProjection` from an HF-layout file (`vision_model.*`, `visual_projection.weight`)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(_CLIP_UNUSED_PREFIXES)}
    state_dict.pop("vision_model.embeddings.position_ids", None)  # a buffer older exports saved
    if "visual_projection.weight" not in state_dict:
        raise CheckpointError(f"{source or 'CLIP vision file'}: no 'visual_projection.weight'; PCDMs needs the "
                              "projected image embeddings (a CLIPVisionModelWithProjection file, e.g. CLIP-ViT-H-14)")
    patch = state_dict["vision_model.embeddings.patch_embedding.weight"]
    hidden, patch_size = int(patch.shape[0]), int(patch.shape[2])
    positions = int(state_dict["vision_model.embeddings.position_embedding.weight"].shape[0]) - 1
    kwargs: dict[str, Any] = dict(
        hidden_size=hidden,
        intermediate_size=int(state_dict["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=len({k.split(".")[3] for k in state_dict if k.startswith("vision_model.encoder.layers.")}),
        num_attention_heads=_CLIP_HEADS.get(hidden, max(1, hidden // 64)),
        patch_size=patch_size, image_size=round(math.sqrt(positions)) * patch_size,
        projection_dim=int(state_dict["visual_projection.weight"].shape[0]),
        num_channels=int(patch.shape[1]), hidden_act="gelu",  # OpenCLIP ViT-H/bigG; OpenAI towers override to quick_gelu
    )
    kwargs.update({k: v for k, v in (overrides or {}).items() if k in kwargs or k == "layer_norm_eps"})
    from_side_config = "num_attention_heads" in (overrides or {})
    if from_side_config or hidden not in _CLIP_HEADS:
        check_split(kwargs["num_attention_heads"], [hidden], setting="num_attention_heads",
                    default_unit=None if from_side_config else 64)
    config = CLIPVisionConfig(**kwargs)
    model = build_uninitialised(lambda: CLIPVisionModelWithProjection(config)).eval()
    load_strict(model, state_dict, source=source)
    return model


def load_clip_vision(path: str) -> torch.nn.Module:
    """CLIP vision tower (with projection) from a `clip_vision`-folder file; a DINOv2 file raises CheckpointError."""
    def build(checkpoint: Checkpoint) -> torch.nn.Module:
        config = checkpoint.config or {}
        return build_clip_vision(checkpoint.state_dict, config.get("vision_config", config), source=checkpoint.path)

    return build_model(path, Kind.CLIP_VISION, build)


@torch.no_grad()
def encode_clip_embeds(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Projected CLIP image embeddings (B, projection_dim) of [B,3,H,W] 0..1 images (not L2-normalised, as PCDMs)."""
    param = next(model.parameters())
    pixels = clip_preprocess(images).to(device=param.device, dtype=param.dtype)
    return model(pixel_values=pixels).image_embeds


@torch.no_grad()
def encode_zero_image(model: torch.nn.Module, batch: int = 1) -> torch.Tensor:
    """The projected CLIP embedding of an all-zero (already normalised) input, (batch, projection_dim).

    PCDMs' stage-1 pipeline returns it beside the prediction as `negative_image_embeds` (`get_zero_embed`): the
    prior's unconditional embedding in Kandinsky's convention. PCDMs' stage 2 does not use it (its unconditional
    branch is literal zeros); it is exposed to compare with the original and for decoders that take one.
    """
    param = next(model.parameters())
    size = model.config.image_size
    pixels = torch.zeros(1, 3, size, size, device=param.device, dtype=param.dtype)
    return model(pixel_values=pixels).image_embeds.repeat(batch, 1)
