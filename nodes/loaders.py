"""Loader nodes for the PCDMs family: the PCDMs checkpoint, DINOv2 / CLIP vision, and the SD VAE.

Each loader is a `ModelLoader` (inputs.py) that only declares its name (`TEXT`), its `ModelFileInput` (which widget,
folder, reader and device) and its `OUTPUT`: one file widget and the precision widget in, one model out, wrapped for
ComfyUI's memory management.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..models.encoders import load_clip_vision, load_dinov2
from ..models.pcdm.stages import load_pcdm_checkpoint
from ..models.vae import load_vae
from .comfy_adapter import encoder_device
from .inputs import (PCDMS_CATEGORY, ClipVisionModel, Dinov2Model, ModelFileInput, ModelLoader, NodeText, PcdmModel,
                     SdVae, cast_after)

PCDMS_HINT = ("Put PCDMs_ckpt.pt (simplified model, Google Drive link in the tencent-ailab/PCDMs README) or a paper "
              "stage-2 file (stage2_checkpoints/512/s2_512.pt) in models/pcdms.")


def _encoder_file(tooltip: str, read: Callable[[str], torch.nn.Module]) -> ModelFileInput:
    """A frozen image encoder from models/clip_vision, on the device ComfyUI uses for auxiliary encoders (core's
    CLIP vision runs there too)."""
    return ModelFileInput("clip_name", "clip_vision", tooltip, cast_after(read), device=encoder_device)


class PCDMLoader(ModelLoader):
    TEXT = NodeText("PoseTransferPCDMLoader", "PoseTransfer PCDM Loader", PCDMS_CATEGORY,
                    "Loads a PCDMs stage-2 checkpoint: the simplified release (PCDMs_ckpt.pt) or the paper's full "
                    "stage 2. The kind is detected from the weights; any other file is refused with an explanation.",
                    ("pcdms", "pose transfer model", "person image diffusion"))
    FILE = ModelFileInput("ckpt_name", "pcdms", "File in models/pcdms (.pt DeepSpeed file as released, or "
                          ".safetensors).", load_pcdm_checkpoint, hint=PCDMS_HINT)
    OUTPUT = PcdmModel.Output(display_name="pcdm_model", tooltip="The stage-2 UNet with its pose and appearance heads.")


class DINOv2Loader(ModelLoader):
    TEXT = NodeText("PoseTransferDINOv2Loader", "PoseTransfer DINOv2 Loader", PCDMS_CATEGORY,
                    "Loads DINOv2 (facebook/dinov2-giant model.safetensors, transformers layout) from "
                    "models/clip_vision: the appearance encoder of PCDMs, run with PCDMs' own 224 px CLIP-statistics "
                    "preprocessing.",
                    ("dinov2", "dino", "image encoder"))
    FILE = _encoder_file("DINOv2-giant file in models/clip_vision (e.g. dinov2-giant.safetensors).", load_dinov2)
    OUTPUT = Dinov2Model.Output(display_name="dinov2", tooltip="The DINOv2 encoder.")


class CLIPVisionLoader(ModelLoader):
    TEXT = NodeText("PoseTransferCLIPVisionLoader", "PoseTransfer CLIP Vision Loader", PCDMS_CATEGORY,
                    "Loads a CLIP vision tower with projection (OpenCLIP ViT-H/14 in transformers layout, the file "
                    "IPAdapter users already have) from models/clip_vision. PCDMs stage 1 and the full stage 2 use its "
                    "projected image embedding.",
                    ("clip vision", "clip-h", "vit-h"))
    FILE = _encoder_file("CLIP ViT-H/14 file in models/clip_vision (vision_model.* keys).", load_clip_vision)
    OUTPUT = ClipVisionModel.Output(display_name="clip_vision", tooltip="The CLIP vision encoder.")


class VAELoader(ModelLoader):
    TEXT = NodeText("PoseTransferVAELoader", "PoseTransfer VAE Loader", PCDMS_CATEGORY,
                    "Loads the Stable Diffusion 2.1-base VAE (diffusers or original layout) from models/vae for the "
                    "PCDMs nodes.",
                    ("sd vae", "autoencoder"))
    FILE = ModelFileInput("vae_name", "vae", "SD VAE file in models/vae (e.g. the vae/ file of "
                          "stable-diffusion-2-1-base).", cast_after(load_vae))
    OUTPUT = SdVae.Output(display_name="vae", tooltip="The SD VAE.")


NODES = [PCDMLoader, DINOv2Loader, CLIPVisionLoader, VAELoader]
