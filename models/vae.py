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
# Pre-0.14 diffusers attention names, still found in hub VAE files.
_OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_LDM_ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _ldm_key_to_diffusers(key: str, n_up: int) -> str:
    """One original-LDM VAE key -> its diffusers name (decoder `up.i` counts from the bottom, `up_blocks` from the top)."""
    key = re.sub(r"^(encoder|decoder)\.norm_out\.", r"\1.conv_norm_out.", key)
    key = re.sub(r"^encoder\.down\.(\d+)\.block\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2.", key)
    key = re.sub(r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0.", key)
    key = re.sub(r"^decoder\.up\.(\d+)\.block\.(\d+)\.",
                 lambda m: f"decoder.up_blocks.{n_up - 1 - int(m.group(1))}.resnets.{m.group(2)}.", key)
    key = re.sub(r"^decoder\.up\.(\d+)\.upsample\.",
                 lambda m: f"decoder.up_blocks.{n_up - 1 - int(m.group(1))}.upsamplers.0.", key)
    key = re.sub(r"\.mid\.block_(\d)\.", lambda m: f".mid_block.resnets.{int(m.group(1)) - 1}.", key)
    key = re.sub(r"\.mid\.attn_1\.(\w+)\.", lambda m: f".mid_block.attentions.0.{_LDM_ATTENTION[m.group(1)]}.", key)
    return re.sub(r"\.nin_shortcut\.", ".conv_shortcut.", key)


def convert_vae_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any SD VAE layout -> current diffusers names; attention 1x1-conv weights become Linear weights."""
    n_up = len({k.split(".")[2] for k in state_dict if k.startswith("decoder.up.")})
    out = {}
    for key, value in state_dict.items():
        if key.startswith("model_ema."):  # EMA bookkeeping scalars some LDM VAE exports keep (decay, num_updates)
            continue
        if key.startswith(("encoder.down.", "decoder.up.")) or ".mid." in key or ".norm_out." in key:
            key = _ldm_key_to_diffusers(key, n_up)
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
