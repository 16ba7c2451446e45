"""SCFM nodes: load a model, preview its flow warp, sample the person in a new pose.

Glue only: POSE_KEYPOINT -> first person's OpenPose-18 body -> SCFM pose maps (`pose/conditions.py`),
IMAGE <-> [B,3,H,W]; the work is in `models/scfm/pipeline.py`.
"""
from __future__ import annotations

import torch

from ..models.batching import chunk_count
from ..models.images import bchw_to_comfy, comfy_to_bchw
from ..models.scfm import pipeline, sampler
from ..models.scfm.checkpoint import load_scfm
from ..pose.conditions import scfm_body_points, scfm_pose_maps
from ..pose.formats import frames_from_pose_keypoint
from .comfy_adapter import io, load_models, make_schema, progress_callback, to_output
from .inputs import (CHUNK_TIP, SCFM_CATEGORY, ModelFileInput, ModelLoader, NodeText, PoseKeypoint, ScfmModel,
                     cast_after, fit_input, seed_input)

SCFM_HINT = ("No SCFM weights were ever published: train with the original repository (zylwithxy/SCFM-guided-DDPM, "
             "checkpoints/<exp>/last.pt) or with `python <pack> scfm-train`, and put the file in models/scfm.")
NOISE_MODES = ("per item (seed + i)", "single draw (original)")

_FIT_TOOLTIP = ("How the image is put on the model's 256 x 256 square. stretch: resize both axes (how the original's "
                "DeepFashion data was prepared); pad: keep the aspect with white borders; crop: keep the aspect and cut "
                "the overflow. Results come back at the source image's size.")
_POSE_TOOLTIP = "OpenPose-18 keypoints (e.g. from PoseTransfer DWPose Extract); the first person of each frame is used."


def _poses(value, what: str, images: torch.Tensor) -> list[pipeline.PoseInput]:
    """POSE_KEYPOINT -> first person per frame; a frame without canvas size is taken to be the source image's."""
    default_size = (images.shape[-1], images.shape[-2])
    return [pipeline.PoseInput(scfm_body_points(frame, f"{what}, frame {i}"), frame.height, frame.width)
            for i, frame in enumerate(frames_from_pose_keypoint(value, default_size))]


def _pipeline_inputs(model, source_image, source_pose, target_pose, fit: str
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ComfyUI values -> (source images [B,3,H,W], source pose maps, target pose maps [B,20,S,S]), batch-1 inputs
    broadcast, the maps placed on the model square like the images."""
    images = comfy_to_bchw(source_image, "source_image")
    images, sources, targets = pipeline.check_batches(images, _poses(source_pose, "source_pose", images),
                                                      _poses(target_pose, "target_pose", images))
    size = model.config.image_size
    return (images, scfm_pose_maps(pipeline.place_on_square(sources, size, fit), size),
            scfm_pose_maps(pipeline.place_on_square(targets, size, fit), size))


def _common_inputs() -> list:
    return [
        ScfmModel.Input("scfm_model", tooltip="An SCFM model from PoseTransfer SCFM Loader."),
        io.Image.Input("source_image", tooltip="The person to re-pose (batch of 1 is used for every target pose)."),
        PoseKeypoint.Input("source_pose", tooltip="Pose of the source image. " + _POSE_TOOLTIP),
        PoseKeypoint.Input("target_pose", tooltip="The wanted pose. " + _POSE_TOOLTIP),
    ]


class SCFMLoader(ModelLoader):
    TEXT = NodeText("PoseTransferSCFMLoader", "PoseTransfer SCFM Loader", SCFM_CATEGORY,
                    "Loads an SCFM model: the original training file (last.pt / Epoch{n}.pt, read without running its "
                    "pickled config), its ema/model weights, or a .safetensors conversion.",
                    ("scfm", "flow guided diffusion", "pose transfer model"))
    FILE = ModelFileInput("ckpt_name", "scfm", "File in models/scfm (the original's last.pt, or .safetensors).",
                          cast_after(load_scfm), hint=SCFM_HINT)
    OUTPUT = ScfmModel.Output(display_name="scfm_model",
                              tooltip="Denoiser, source encoder, flow net and MSFF in one model.")
    ORIGINAL_PRECISION = "fp32"
    IS_EXPERIMENTAL = True


class SCFMWarp(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return make_schema(
            node_id="PoseTransferSCFMWarp",
            display_name="PoseTransfer SCFM Warp",
            category=SCFM_CATEGORY,
            description="Shows the correspondence SCFM's flow net finds between the poses: the source image warped "
                        "into the target pose, the flow as a colour wheel and the occlusion mask.",
            search_aliases=["flow", "warp", "optical flow", "correspondence"],
            is_experimental=True,
            inputs=[*_common_inputs(), fit_input("stretch", _FIT_TOOLTIP)],
            outputs=[
                io.Image.Output(display_name="warped", tooltip="The source pixels moved by the flow (image/8 flow, "
                                                               "bilinear), at the source image's size."),
                io.Image.Output(display_name="flow", tooltip="Flow colour wheel: hue = direction (red = right, "
                                                             "green-yellow = down), saturation = length; white = still."),
                io.Mask.Output(display_name="occlusion", tooltip="1 where the target has no visible source "
                                                                 "counterpart (to be generated), 0 where it is warped."),
            ],
        )

    @classmethod
    def execute(cls, scfm_model, source_image, source_pose, target_pose, fit: str = "stretch") -> io.NodeOutput:
        load_models([scfm_model])
        images, source_maps, target_maps = _pipeline_inputs(scfm_model.model, source_image, source_pose, target_pose,
                                                            fit)
        warped, flow, occlusion = pipeline.warp_preview(scfm_model.model, images, source_maps, target_maps,
                                                        fit_mode=fit)
        return io.NodeOutput(to_output(bchw_to_comfy(warped)), to_output(bchw_to_comfy(flow)), to_output(occlusion))


class SCFMSample(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return make_schema(
            node_id="PoseTransferSCFMSample",
            display_name="PoseTransfer SCFM Sample",
            category=SCFM_CATEGORY,
            description="Generates the source person in the target pose with SCFM's guided DDIM (the original uses 50 "
                        "steps, eta 0, guidance 2 with the flow sites off in the unguided pass). Works at 256 x 256; "
                        "the result is returned at the source image's size.",
            search_aliases=["scfm", "pose transfer", "person image synthesis"],
            is_experimental=True,
            advanced=("batch_size", "noise_mode"),
            inputs=[
                *_common_inputs(),
                seed_input("Noise seed; see noise_mode for how batch items get theirs."),
                io.Int.Input("steps", default=sampler.DEFAULT_STEPS, min=1, max=1000,
                             tooltip="DDIM steps over 1000 training steps (stride 1000 // steps); 50 as in the paper."),
                io.Float.Input("guidance", default=sampler.DEFAULT_GUIDANCE, min=0.0, max=20.0, step=0.1,
                               tooltip="Image guidance: 1 = no guidance (one pass per step); 2 = the original."),
                fit_input("stretch", _FIT_TOOLTIP),
                io.Int.Input("batch_size", display_name="batch_chunk", default=4, min=1, max=64, tooltip=CHUNK_TIP),
                io.Combo.Input("noise_mode", options=list(NOISE_MODES), default=NOISE_MODES[0],
                               tooltip="per item: image i uses seed + i, so it stays the same in any batch. single draw: "
                                       "one generator draws the whole batch, as the original (torch.manual_seed) did."),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="The person in the target pose.")],
        )

    @classmethod
    def execute(cls, scfm_model, source_image, source_pose, target_pose, seed: int = 0, steps: int = 50,
                guidance: float = 2.0, fit: str = "stretch", batch_size: int = 4,
                noise_mode: str = NOISE_MODES[0]) -> io.NodeOutput:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        model = scfm_model.model
        images, source_maps, target_maps = _pipeline_inputs(model, source_image, source_pose, target_pose, fit)
        settings = pipeline.SampleSettings(steps=steps, guidance=guidance, seed=seed, fit=fit, chunk_size=batch_size,
                                           per_item_seed=noise_mode == NOISE_MODES[0])
        batch = images.shape[0]
        load_models([scfm_model], pipeline.memory_estimate(settings, batch, model.dtype, model.config.image_size))
        result = pipeline.transfer(model, images, source_maps, target_maps, settings,
                                   progress=progress_callback(chunk_count(batch, batch_size) * steps))
        return io.NodeOutput(to_output(bchw_to_comfy(result)))


NODES: list = [SCFMLoader, SCFMWarp, SCFMSample]
