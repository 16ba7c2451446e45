"""What a model file is, from its key names and shapes (never its file name), and what a near-miss lacks."""
from __future__ import annotations

from enum import Enum
from typing import Callable, Mapping

import torch


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


# What each kind's weights must show (PCDMS.md §4, SCFM.md §6): a check returns None when met, else what it saw.
# Positive checks (a key or prefix that must be there) also measure how much an unrecognised file resembles a
# kind; negative ones (a prefix that must be absent) only tell close kinds apart.
Check = Callable[[Mapping[str, torch.Tensor]], "str | None"]


def _has(key: str) -> Check:
    return lambda sd: None if key in sd else f"missing {key}"


def _has_prefix(prefix: str) -> Check:
    return lambda sd: None if any(k.startswith(prefix) for k in sd) else f"no {prefix}* weights"


def _lacks_prefix(prefix: str) -> Check:
    return lambda sd: f"unexpected {prefix}* weights" if any(k.startswith(prefix) for k in sd) else None


def _shape(key: str, dims: int, axis: int, size: int) -> Check:
    def check(sd: Mapping[str, torch.Tensor]) -> str | None:
        value = sd.get(key)
        if value is None:
            return f"missing {key}"
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) == dims and shape[axis] == size:
            return None
        return f"{key} has shape {shape}, expected {dims} dimensions with {size} at position {axis}"
    return check


_CONV_IN = "unet.conv_in.weight"
# (positive checks, negative checks), in detection order: SCFM training files hold both "model" and "ema" etc.
SIGNATURES: dict[Kind, tuple[tuple[Check, ...], tuple[Check, ...]]] = {
    Kind.PCDM_PRIOR: ((_shape("positional_embedding", 3, 1, 6), _has("prd_embedding")), ()),
    Kind.PCDM_STAGE2: ((_shape(_CONV_IN, 4, 1, 9), _has_prefix("pose_proj."), _has("unet.class_embedding.linear_1.weight"),
                        _has_prefix("image_proj_model_p.")), ()),
    Kind.PCDM_SIMPLIFIED: ((_shape(_CONV_IN, 4, 1, 9), _has_prefix("pose_proj."), _has_prefix("image_proj_model.")),
                           (_lacks_prefix("unet.class_embedding."),)),
    Kind.PCDM_STAGE3: ((_shape(_CONV_IN, 4, 1, 8), _has_prefix("image_proj_model_p.")), (_lacks_prefix("pose_proj."),)),
    Kind.SCFM: ((_has("flow_net.output_eight.weight"), _has_prefix("cct_block.")), ()),
    Kind.VAE_DIFFUSERS: ((_has("decoder.conv_out.weight"), _has("encoder.down_blocks.0.resnets.0.conv1.weight")), ()),
    Kind.VAE_LDM: ((_has("decoder.conv_out.weight"), _has("encoder.down.0.block.0.conv1.weight")), ()),
    Kind.DINOV2: ((_has("embeddings.patch_embeddings.projection.weight"), _has("embeddings.cls_token")), ()),
    Kind.CLIP_VISION: ((_has("vision_model.embeddings.patch_embedding.weight"),), ()),
}


def detect_kind(state_dict: Mapping[str, torch.Tensor]) -> Kind:
    """What a state dict is, from key names and shapes (PCDMS.md §4, SCFM.md §6)."""
    for kind, (positive, negative) in SIGNATURES.items():
        if all(check(state_dict) is None for check in (*positive, *negative)):
            return kind
    return Kind.UNKNOWN


def closest_kind(state_dict: Mapping[str, torch.Tensor]) -> tuple[Kind, list[str]] | None:
    """For an unrecognised state dict: the kind whose signature it meets best (at least half of its positive
    checks, one at least) and what it lacks; None when it resembles nothing."""
    best: tuple[float, Kind, list[str]] | None = None
    for kind, (positive, negative) in SIGNATURES.items():
        results = [check(state_dict) for check in positive]
        met = sum(result is None for result in results)
        if met == 0 or met * 2 < len(positive):
            continue
        score = met / len(positive)
        if best is None or score > best[0]:
            problems = [r for r in (*results, *(check(state_dict) for check in negative)) if r is not None]
            best = (score, kind, problems)
    return None if best is None else (best[1], best[2])


def describe_unknown(state_dict: Mapping[str, torch.Tensor]) -> str:
    """What an unrecognised file is closest to and what it lacks, or its first keys when it resembles nothing."""
    closest = closest_kind(state_dict)
    if closest is not None:
        kind, problems = closest
        return (f"It resembles {KIND_DESCRIPTIONS[kind]}, but: {'; '.join(problems)}. The file is incomplete or of "
                "another model version: download it again, or use a file of the kind this input expects.")
    return f"It resembles none of them; its first keys are: {', '.join(map(str, list(state_dict)[:5]))}."
