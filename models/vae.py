"""The Stable Diffusion VAE (diffusers `AutoencoderKL`) from a diffusers- or original-LDM-layout file.

The architecture (channels, blocks, latent channels) is read from the shapes; the GroupNorm group count is
not visible in the weights (32 for every SD VAE) and comes from a side config when it differs.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from .checkpoints import Kind, build_model, build_uninitialised, check_split, load_strict

SD_LATENT_SCALE = 0.18215  # SD1/2 VAE scaling factor, hard-coded in the PCDMs demo
_VAE_NORM_GROUPS = 32
# Pre-0.14 diffusers attention names, still found in hub VAE files (diffusers' own loader no longer renames them).
_OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
# LDM files exported from training keep EMA bookkeeping scalars (decay, num_updates) beside the weights.
_LDM_BOOKKEEPING = "model_ema."


def _is_ldm(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("encoder.down.", "decoder.up.")) for k in state_dict)


def convert_vae_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any SD VAE layout -> current diffusers names; attention 1x1-conv weights become Linear weights.

    Original-LDM files go through diffusers' own single-file conversion (`convert_ldm_vae_checkpoint`). It
    keeps only the keys it knows, so anything else is counted here and refused by name: a file is never read
    with silently dropped weights.
    """
    if _is_ldm(state_dict):
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        weights = {k: v for k, v in state_dict.items() if not k.startswith(_LDM_BOOKKEEPING)}
        count = lambda prefix: len({k.split(".")[2] for k in weights if k.startswith(prefix)})  # noqa: E731
        blocks = {"down_block_types": ("DownEncoderBlock2D",) * count("encoder.down."),
                  "up_block_types": ("UpDecoderBlock2D",) * count("decoder.up.")}
        converted = convert_ldm_vae_checkpoint(weights, blocks)
        if len(converted) != len(weights):
            known = {id(v) for v in converted.values()}
            left = sorted(k for k, v in weights.items() if id(v) not in known)
            raise ValueError(f"original-layout VAE: {len(weights) - len(converted)} weights have no diffusers name, "
                             f"e.g. {left[:5]}; this is not an SD VAE file")
        state_dict = converted
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"(mid_block\.attentions\.0)\.(query|key|value|proj_attn)\.",
                     lambda m: f"{m.group(1)}.{_OLD_ATTENTION[m.group(2)]}.", key)
        if ".attentions.0.to_" in key and value.dim() == 4:
            value = value[:, :, 0, 0]
        out[key] = value
    return out


def vae_config(state_dict: Mapping[str, torch.Tensor], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`AutoencoderKL` kwargs inferred from a diffusers-layout state dict."""
    blocks = sorted({int(k.split(".")[2]) for k in state_dict if k.startswith("encoder.down_blocks.")})
    channels = tuple(int(state_dict[f"encoder.down_blocks.{i}.resnets.0.conv2.weight"].shape[0]) for i in blocks)
    layers = len({k.split(".")[4] for k in state_dict if k.startswith("encoder.down_blocks.0.resnets.")})
    kwargs: dict[str, Any] = dict(
        in_channels=int(state_dict["encoder.conv_in.weight"].shape[1]),
        out_channels=int(state_dict["decoder.conv_out.weight"].shape[0]),
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=channels, layers_per_block=layers,
        latent_channels=int(state_dict["decoder.conv_in.weight"].shape[1]),
        norm_num_groups=_VAE_NORM_GROUPS, scaling_factor=SD_LATENT_SCALE,
    )
    for key, value in (overrides or {}).items():
        if key in kwargs:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    return kwargs


def build_vae(state_dict: Mapping[str, torch.Tensor], overrides: Mapping[str, Any] | None = None,
              source: str = "") -> torch.nn.Module:
    from diffusers import AutoencoderKL

    state_dict = convert_vae_keys(state_dict)
    config = vae_config(state_dict, overrides)
    from_side_config = "norm_num_groups" in (overrides or {})
    check_split(config["norm_num_groups"], config["block_out_channels"], setting="norm_num_groups",
                default_unit=None if from_side_config else _VAE_NORM_GROUPS)
    model = build_uninitialised(lambda: AutoencoderKL(**config)).eval()
    load_strict(model, state_dict, source=source)
    return model


def load_vae(path: str) -> torch.nn.Module:
    """AutoencoderKL from a `vae`-folder file in either layout; other files raise CheckpointError naming what they are."""
    return build_model(path, (Kind.VAE_DIFFUSERS, Kind.VAE_LDM),
                       lambda checkpoint: build_vae(checkpoint.state_dict, checkpoint.config, source=checkpoint.path))


@torch.no_grad()
def encode_latents(vae: torch.nn.Module, images: torch.Tensor, scale: float = SD_LATENT_SCALE) -> torch.Tensor:
    """[B,3,H,W] in [-1,1] -> scaled latents (B,4,H/8,W/8), float32, from the posterior MODE.

    The original samples the posterior with the global RNG; the mode makes conditions deterministic
    (ARCHITECTURE.md decision 6).
    """
    param = next(vae.parameters())
    posterior = vae.encode(images.to(device=param.device, dtype=param.dtype)).latent_dist
    return posterior.mode().float() * scale


@torch.no_grad()
def decode_latents(vae: torch.nn.Module, latents: torch.Tensor, scale: float = SD_LATENT_SCALE) -> torch.Tensor:
    """Scaled latents (B,4,h,w) -> images [B,3,8h,8w] in 0..1, float32."""
    param = next(vae.parameters())
    images = vae.decode((latents / scale).to(device=param.device, dtype=param.dtype)).sample
    return (images.float() / 2 + 0.5).clamp(0, 1)
