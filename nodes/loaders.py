"""Loader nodes for the PCDMs family: the PCDMs checkpoint, DINOv2 / CLIP vision, and the SD VAE.

Each loader is a `ModelFileInput` (inputs.py: which widget, folder, reader and device) with a `loader_schema`:
one file widget and the precision widget in, one model out, wrapped for ComfyUI's memory management.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..models.encoders import load_clip_vision, load_dinov2
from ..models.pcdm.stages import load_pcdm_checkpoint
from ..models.vae import load_vae
from .comfy_adapter import encoder_device
from .inputs import (PCDMS_CATEGORY, ClipVisionModel, Dinov2Model, ModelFileInput, ModelLoader, PcdmModel, SdVae,
                     cast_after, loader_schema)

PCDMS_HINT = ("Put PCDMs_ckpt.pt (simplified model, Google Drive link in the tencent-ailab/PCDMs README) or a paper "
              "stage-2 file (stage2_checkpoints/512/s2_512.pt) in models/pcdms.")


def _encoder_file(tooltip: str, read: Callable[[str], torch.nn.Module]) -> ModelFileInput:
    """A frozen image encoder from models/clip_vision, on the device ComfyUI uses for auxiliary encoders (core's
    CLIP vision runs there too)."""
    return ModelFileInput("clip_name", "clip_vision", tooltip, cast_after(read), device=encoder_device)


class PCDMLoader(ModelLoader):
    FILE = ModelFileInput("ckpt_name", "pcdms", "File in models/pcdms (.pt DeepSpeed file as released, or "
                          ".safetensors).", load_pcdm_checkpoint, hint=PCDMS_HINT)

    @classmethod
    def define_schema(cls):
        return loader_schema(
            "PoseTransferPCDMLoader", "PoseTransfer PCDM Loader", PCDMS_CATEGORY,
            "Loads a PCDMs stage-2 checkpoint: the simplified release (PCDMs_ckpt.pt) or the paper's full stage 2. The "
            "kind is detected from the weights; any other file is refused with an explanation.",
            ["pcdms", "pose transfer model", "person image diffusion"], cls.FILE,
            PcdmModel.Output(display_name="pcdm_model", tooltip="The stage-2 UNet with its pose and appearance heads."))


class DINOv2Loader(ModelLoader):
    FILE = _encoder_file("DINOv2-giant file in models/clip_vision (e.g. dinov2-giant.safetensors).", load_dinov2)

    @classmethod
    def define_schema(cls):
        return loader_schema(
            "PoseTransferDINOv2Loader", "PoseTransfer DINOv2 Loader", PCDMS_CATEGORY,
            "Loads DINOv2 (facebook/dinov2-giant model.safetensors, transformers layout) from models/clip_vision: the "
            "appearance encoder of PCDMs, run with PCDMs' own 224 px CLIP-statistics preprocessing.",
            ["dinov2", "dino", "image encoder"], cls.FILE,
            Dinov2Model.Output(display_name="dinov2", tooltip="The DINOv2 encoder."))


class CLIPVisionLoader(ModelLoader):
    FILE = _encoder_file("CLIP ViT-H/14 file in models/clip_vision (vision_model.* keys).", load_clip_vision)

    @classmethod
    def define_schema(cls):
        return loader_schema(
            "PoseTransferCLIPVisionLoader", "PoseTransfer CLIP Vision Loader", PCDMS_CATEGORY,
            "Loads a CLIP vision tower with projection (OpenCLIP ViT-H/14 in transformers layout, the file IPAdapter "
            "users already have) from models/clip_vision. PCDMs stage 1 and the full stage 2 use its projected image "
            "embedding.",
            ["clip vision", "clip-h", "vit-h"], cls.FILE,
            ClipVisionModel.Output(display_name="clip_vision", tooltip="The CLIP vision encoder."))


class VAELoader(ModelLoader):
    FILE = ModelFileInput("vae_name", "vae", "SD VAE file in models/vae (e.g. the vae/ file of "
                          "stable-diffusion-2-1-base).", cast_after(load_vae))

    @classmethod
    def define_schema(cls):
        return loader_schema(
            "PoseTransferVAELoader", "PoseTransfer VAE Loader", PCDMS_CATEGORY,
            "Loads the Stable Diffusion 2.1-base VAE (diffusers or original layout) from models/vae for the PCDMs "
            "nodes.",
            ["sd vae", "autoencoder"], cls.FILE,
            SdVae.Output(display_name="vae", tooltip="The SD VAE."))


NODES = [PCDMLoader, DINOv2Loader, CLIPVisionLoader, VAELoader]
