"""Loader nodes for the PCDMs family: the PCDMs checkpoint, DINOv2 / CLIP vision, and the SD VAE.

Each returns one model wrapped for ComfyUI's memory management (`wrap_model`); the node-output cache is the
model cache. The custom types live in `inputs.py`.
"""
from __future__ import annotations

from ..models.encoders import load_clip_vision, load_dinov2
from ..models.pcdm.stages import load_pcdm_checkpoint
from ..models.vae import load_vae
from .comfy_adapter import (encoder_device, io, resolve_dtype, resolve_model_file,
                            torch_device, wrap_model)
from .inputs import PCDMS_CATEGORY, ClipVisionModel, Dinov2Model, PcdmModel, SdVae, loader_schema

PCDMS_HINT = ("Put PCDMs_ckpt.pt (simplified model, Google Drive link in the tencent-ailab/PCDMs README) or a paper "
              "stage-2 file (stage2_checkpoints/512/s2_512.pt) in models/pcdms.")


def _encoder_output(load, clip_name: str, precision: str) -> io.NodeOutput:
    """A frozen encoder from models/clip_vision, on the device ComfyUI uses for auxiliary encoders."""
    device = encoder_device()
    model = load(resolve_model_file("clip_vision", clip_name)).to(resolve_dtype(precision, device))
    return io.NodeOutput(wrap_model(model, device))


class PCDMLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return loader_schema(
            "PoseTransferPCDMLoader", "PoseTransfer PCDM Loader", PCDMS_CATEGORY,
            "Loads a PCDMs stage-2 checkpoint: the simplified release (PCDMs_ckpt.pt) or the paper's full stage 2. The "
            "kind is detected from the weights; any other file is refused with an explanation.",
            ["pcdms", "pose transfer model", "person image diffusion"],
            ("ckpt_name", "pcdms", "File in models/pcdms (.pt DeepSpeed file as released, or .safetensors)."),
            PcdmModel.Output(display_name="pcdm_model", tooltip="The stage-2 UNet with its pose and appearance heads."))

    @classmethod
    def execute(cls, ckpt_name: str, precision: str = "auto") -> io.NodeOutput:
        path = resolve_model_file("pcdms", ckpt_name, hint=PCDMS_HINT)
        device = torch_device()
        return io.NodeOutput(wrap_model(load_pcdm_checkpoint(path, resolve_dtype(precision, device)), device))


class DINOv2Loader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return loader_schema(
            "PoseTransferDINOv2Loader", "PoseTransfer DINOv2 Loader", PCDMS_CATEGORY,
            "Loads DINOv2 (facebook/dinov2-giant model.safetensors, transformers layout) from models/clip_vision: the "
            "appearance encoder of PCDMs, run with PCDMs' own 224 px CLIP-statistics preprocessing.",
            ["dinov2", "dino", "image encoder"],
            ("clip_name", "clip_vision", "DINOv2-giant file in models/clip_vision (e.g. dinov2-giant.safetensors)."),
            Dinov2Model.Output(display_name="dinov2", tooltip="The DINOv2 encoder."))

    @classmethod
    def execute(cls, clip_name: str, precision: str = "auto") -> io.NodeOutput:
        return _encoder_output(load_dinov2, clip_name, precision)


class CLIPVisionLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return loader_schema(
            "PoseTransferCLIPVisionLoader", "PoseTransfer CLIP Vision Loader", PCDMS_CATEGORY,
            "Loads a CLIP vision tower with projection (OpenCLIP ViT-H/14 in transformers layout, the file IPAdapter "
            "users already have) from models/clip_vision. PCDMs stage 1 and the full stage 2 use its projected image "
            "embedding.", ["clip vision", "clip-h", "vit-h"],
            ("clip_name", "clip_vision", "CLIP ViT-H/14 file in models/clip_vision (vision_model.* keys)."),
            ClipVisionModel.Output(display_name="clip_vision", tooltip="The CLIP vision encoder."))

    @classmethod
    def execute(cls, clip_name: str, precision: str = "auto") -> io.NodeOutput:
        return _encoder_output(load_clip_vision, clip_name, precision)


class VAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return loader_schema(
            "PoseTransferVAELoader", "PoseTransfer VAE Loader", PCDMS_CATEGORY,
            "Loads the Stable Diffusion 2.1-base VAE (diffusers or original layout) from models/vae for the PCDMs "
            "nodes.",
            ["sd vae", "autoencoder"],
            ("vae_name", "vae", "SD VAE file in models/vae (e.g. the vae/ file of stable-diffusion-2-1-base)."),
            SdVae.Output(display_name="vae", tooltip="The SD VAE."))

    @classmethod
    def execute(cls, vae_name: str, precision: str = "auto") -> io.NodeOutput:
        path = resolve_model_file("vae", vae_name)
        device = torch_device()
        model = load_vae(path).to(resolve_dtype(precision, device))
        return io.NodeOutput(wrap_model(model, device))


NODES = [PCDMLoader, DINOv2Loader, CLIPVisionLoader, VAELoader]
