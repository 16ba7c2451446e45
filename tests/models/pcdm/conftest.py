"""Tiny random PCDMs models written in the ORIGINAL containers (PCDMS.md §13), shared by the stage-2 tests.

Every tensor is randomised (default init zeroes conv_out and would hide bugs). Shapes cannot tell head and
group counts, so each file gets a `<stem>.json` side config, as a user's scaled-down model would.
"""
from __future__ import annotations

import json

import pytest
import torch

UNET_SIDE_CONFIG = {"attention_head_dim": [2, 4], "norm_num_groups": 8}
TINY_UNET = dict(
    block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1, attention_head_dim=(2, 4),
    cross_attention_dim=32, norm_num_groups=8, sample_size=8, use_linear_projection=True, in_channels=9,
    out_channels=4,
)
DINO_HIDDEN = 24
TINY_SIZE = 64  # model square side in the tests: latents 8 x 16


def randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            noise = torch.randn(tensor.shape, generator=generator) * 0.05
            is_norm_scale = name.endswith("weight") and tensor.dim() == 1 and "norm" in name
            tensor.copy_(noise + 1.0 if is_norm_scale else noise)
    return module.eval()


def tiny_unet(full: bool = False, in_channels: int = 9, seed: int = 0) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    extra = dict(class_embed_type="projection", projection_class_embeddings_input_dim=32) if full else {}
    return randomise(UNet2DConditionModel(**{**TINY_UNET, "in_channels": in_channels}, **extra), seed)


def tiny_pose_proj(seed: int = 1) -> torch.nn.Module:
    from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding

    return randomise(ControlNetConditioningEmbedding(32, 3, (4, 8, 8, 16)), seed)


def tiny_image_proj(seed: int = 2) -> torch.nn.Module:
    from posetransfer.models.pcdm.heads import ImageProjection

    return randomise(ImageProjection(DINO_HIDDEN, 16, 32), seed)


def stage2_state_dict(full: bool) -> dict[str, torch.Tensor]:
    """The `module` dict of a stage-2 file: `unet.`, `pose_proj.`, `image_proj_model[_p].` (fp16, as released)."""
    image_prefix = "image_proj_model_p." if full else "image_proj_model."
    parts = {"unet.": tiny_unet(full), "pose_proj.": tiny_pose_proj(), image_prefix: tiny_image_proj()}
    return {prefix + k: v.half() for prefix, module in parts.items() for k, v in module.state_dict().items()}


def write_with_config(path, config: dict) -> None:
    path.with_suffix(".json").write_text(json.dumps(config))


@pytest.fixture(scope="session")
def simplified_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pcdms") / "PCDMs_ckpt.pt"
    torch.save({"module": stage2_state_dict(full=False), "global_steps": 1000, "dp_world_size": 8}, path)
    write_with_config(path, UNET_SIDE_CONFIG)
    return path


@pytest.fixture(scope="session")
def full_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pcdms") / "s2_512.pt"
    torch.save({"module": stage2_state_dict(full=True)}, path)
    write_with_config(path, UNET_SIDE_CONFIG)
    return path


def tiny_vae(seed: int = 3) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    return randomise(AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                                   up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4,
                                   layers_per_block=1), seed)


def tiny_dinov2(seed: int = 4, swiglu: bool = False) -> torch.nn.Module:
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=DINO_HIDDEN, num_hidden_layers=1, num_attention_heads=2, patch_size=14,
                          image_size=98, use_swiglu_ffn=swiglu)
    return randomise(Dinov2Model(config), seed)


def old_dinov2_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers-5 names -> the hub files' (transformers 4) names."""
    renames = {".attention.q_proj.": ".attention.attention.query.", ".attention.k_proj.": ".attention.attention.key.",
               ".attention.v_proj.": ".attention.attention.value.", ".attention.o_proj.": ".attention.output.dense."}
    out = {}
    for key, value in state_dict.items():
        for new, old in renames.items():
            key = key.replace(new, old)
        out[key] = value
    return out


@pytest.fixture(scope="session")
def vae_file(tmp_path_factory):
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("vae") / "sd21-base-vae.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_vae().state_dict().items()}, str(path))
    write_with_config(path, {"norm_num_groups": 4})
    return path


@pytest.fixture(scope="session")
def dino_file(tmp_path_factory):
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("clip_vision") / "dinov2-giant.safetensors"
    save_file({k: v.contiguous() for k, v in old_dinov2_keys(tiny_dinov2().state_dict()).items()}, str(path))
    write_with_config(path, {"num_attention_heads": 2})
    return path


@pytest.fixture(scope="session")
def stage2_parts(simplified_file, full_file, vae_file, dino_file):
    """(simplified model, full model, VAE, DINOv2), loaded through the product loaders."""
    from posetransfer.models.encoders import load_dinov2
    from posetransfer.models.pcdm.stages import load_pcdm_checkpoint
    from posetransfer.models.vae import load_vae

    return (load_pcdm_checkpoint(str(simplified_file)), load_pcdm_checkpoint(str(full_file)),
            load_vae(str(vae_file)), load_dinov2(str(dino_file)))
