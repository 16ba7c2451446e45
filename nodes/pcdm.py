"""PCDMs stage-2 nodes: inpainting from given poses, and a one-step node that extracts the source pose itself."""
from __future__ import annotations

from typing import Any

import torch

from ..models.batching import chunk_count
from ..models.images import bchw_to_comfy, comfy_to_bchw, from_uint8, to_uint8
from ..models.pcdm.inpaint import InpaintResult, InpaintSettings, inpaint, memory_estimate
from ..pose.conditions import pcdms_renders, source_pose_renders
from ..pose.dwpose import NoPersonError, load_dwpose
from ..pose.formats import frames_from_pose_keypoint, require_people
from .comfy_adapter import io, load_models, make_schema, progress_callback, resolve_model_file, to_output
from .inputs import (CHUNK_TIP, DWPOSE_HINT, PCDMS_CATEGORY, Dinov2Model, DWPoseModel, PcdmEmbedding, PcdmModel,
                     PoseKeypoint, SdVae, pcdm_sampling_inputs, sequential_guidance_input, square_input)
from .pose import onnx_model_files


def _stage2_schema(node_id: str, display_name: str, description: str, aliases: list[str], poses: list,
                   appended: tuple = ()) -> io.Schema:
    """The stage-2 nodes: the models and the source image, the sampling widgets, then how the poses arrive
    (`poses`), then the advanced widgets; `appended` inputs come last (added after workflows shipped)."""
    return make_schema(
        node_id=node_id,
        display_name=display_name,
        category=PCDMS_CATEGORY,
        description=description,
        search_aliases=aliases,
        advanced=("resolution", "batch_chunk", "sequential_guidance"),
        inputs=[
            PcdmModel.Input("pcdm_model", tooltip="From PoseTransfer PCDM Loader."),
            Dinov2Model.Input("dinov2", tooltip="From PoseTransfer DINOv2 Loader (dinov2-giant)."),
            SdVae.Input("vae", tooltip="From PoseTransfer VAE Loader (SD2.1-base VAE)."),
            io.Image.Input("source_image", tooltip="The person to repose. Batch 1 (used for every pose) or one per "
                                                   "pose."),
            *pcdm_sampling_inputs(steps=50, scheduler="ddim"),
            *poses,
            square_input("resolution", optional=True),
            io.Int.Input("batch_chunk", display_name="batch_chunk", default=4, min=1, max=64, optional=True,
                         tooltip=CHUNK_TIP),
            sequential_guidance_input(),
            *appended,
        ],
        outputs=[io.Image.Output(display_name="image", tooltip="The source person in each target pose, at the target "
                                                               "pose's size."),
                 io.Image.Output(display_name="canvas", tooltip="The whole decoded [source | generated] canvas.")],
    )


def _target_pose_inputs() -> list:
    return [io.Image.Input("target_pose", optional=True, tooltip="Target pose render(s); a batch gives a batch."),
            PoseKeypoint.Input("target_pose_keypoint", optional=True,
                               tooltip="Or the target pose(s) as keypoints (drawn in PCDMs' style).")]


def render_keypoints(value: Any, height: int | None, width: int | None,
                     require_person: str | None = None) -> torch.Tensor:
    """POSE_KEYPOINT -> [B,3,H,W] 0..1 renders; size = the given one or the first frame's canvas.
    `require_person`: the input's name when every frame must hold a visible person."""
    frames = frames_from_pose_keypoint(value)
    if require_person:
        require_people(frames, require_person)
    return from_uint8(pcdms_renders(frames, height or frames[0].height, width or frames[0].width))


def pose_input(image: torch.Tensor | None, keypoints: Any, what: str, size: tuple[int, int] | None = None,
               require_person: bool = False) -> torch.Tensor:
    """Exactly one of a pose IMAGE or a POSE_KEYPOINT -> [B,3,H,W] 0..1."""
    if (image is None) == (keypoints is None):
        raise ValueError(f"connect exactly one of {what} (IMAGE, a rendered pose) or {what}_keypoint (POSE_KEYPOINT)")
    if image is not None:
        return comfy_to_bchw(image, what)
    required = f"{what}_keypoint" if require_person else None
    return render_keypoints(keypoints, *(size or (None, None)), require_person=required)


def run_inpaint(pcdm_model, dinov2, vae, source: torch.Tensor, source_pose: torch.Tensor, target_pose: torch.Tensor,
                settings: InpaintSettings, target_embedding: torch.Tensor | None = None) -> InpaintResult:
    """Stage 2 with ComfyUI's memory management and progress bar; tensors [B,3,H,W] in, the pipeline's result out."""
    batch = target_pose.shape[0]
    dtype = pcdm_model.model.dtype
    load_models([pcdm_model, dinov2, vae], memory_estimate(settings, batch, dtype))
    total = settings.steps * chunk_count(batch, settings.chunk_size)
    return inpaint(pcdm_model.model, vae.model, dinov2.model, source, source_pose, target_pose, settings,
                   target_embeds=target_embedding, progress=progress_callback(total))


def _node_output(result: InpaintResult) -> io.NodeOutput:
    return io.NodeOutput(to_output(bchw_to_comfy(result.images)), to_output(bchw_to_comfy(result.canvas)))


def _settings(steps: int, guidance: float, scheduler: str, seed: int, fit: str, resolution: int,
              batch_chunk: int, sequential_guidance: bool) -> InpaintSettings:
    return InpaintSettings(steps=steps, guidance_scale=guidance, scheduler=scheduler, seed=seed, fit=fit,
                           size=resolution, chunk_size=batch_chunk, sequential_guidance=sequential_guidance)


class PCDMInpaint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return _stage2_schema(
            "PoseTransferPCDMInpaint", "PoseTransfer PCDM Inpaint",
            "PCDMs stage 2: paints the source person in each target pose (a batch of poses gives a batch of frames; "
            "the source is encoded once). Poses are rendered images or POSE_KEYPOINT.",
            ["pcdms", "pose transfer", "repose", "person image synthesis"],
            [io.Image.Input("source_pose", optional=True,
                            tooltip="Pose render of the source image (same aspect ratio as the source)."),
             PoseKeypoint.Input("source_pose_keypoint", optional=True,
                                tooltip="Or the source pose as keypoints (drawn in PCDMs' style at the source size)."),
             *_target_pose_inputs(),
             PcdmEmbedding.Input("target_embedding", optional=True,
                                 tooltip="Full stage-2 model only: target CLIP-H embedding from the PCDM Prior node.")])

    @classmethod
    def execute(cls, pcdm_model, dinov2, vae, source_image, steps: int, guidance: float, scheduler: str, seed: int,
                fit: str, source_pose=None, source_pose_keypoint=None, target_pose=None, target_pose_keypoint=None,
                target_embedding=None, resolution: int = 512, batch_chunk: int = 4,
                sequential_guidance: bool = False) -> io.NodeOutput:
        source = comfy_to_bchw(source_image, "source_image")
        settings = _settings(steps, guidance, scheduler, seed, fit, resolution, batch_chunk, sequential_guidance)
        src_pose = pose_input(source_pose, source_pose_keypoint, "source_pose", tuple(source.shape[-2:]))
        tgt_pose = pose_input(target_pose, target_pose_keypoint, "target_pose", require_person=True)
        result = run_inpaint(pcdm_model, dinov2, vae, source, src_pose, tgt_pose, settings, target_embedding)
        return _node_output(result)


class PCDMPoseTransfer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return _stage2_schema(
            "PoseTransferPCDMPoseTransfer", "PoseTransfer PCDM Pose Transfer (one step)",
            "Source photo + target pose -> the person in that pose. Extracts the source pose with DWPose (ONNX files "
            "in models/dwpose), draws it in PCDMs' style, and runs PCDM Inpaint.",
            ["pcdms", "pose transfer", "repose", "one step"],
            [io.Combo.Input("dwpose_model", options=onnx_model_files(), default="dw-ll_ucoco_384.onnx",
                            tooltip="DWPose keypoint model (ONNX) in models/dwpose. Ignored when 'dwpose' is "
                                    "connected."),
             io.Combo.Input("detector_model", options=onnx_model_files(), default="yolox_l.onnx",
                            tooltip="YOLOX person detector (ONNX) in models/dwpose. Ignored when 'dwpose' is "
                                    "connected."),
             *_target_pose_inputs()],
            appended=(DWPoseModel.Input("dwpose", optional=True,
                                        tooltip="From PoseTransfer DWPose Loader: its sessions are opened once and "
                                                "reused by every run. Without it, the two files above are opened on "
                                                "each run."),))

    @classmethod
    def execute(cls, pcdm_model, dinov2, vae, source_image, steps: int, guidance: float, scheduler: str, seed: int,
                fit: str, dwpose_model: str, detector_model: str, target_pose=None, target_pose_keypoint=None,
                resolution: int = 512, batch_chunk: int = 4, sequential_guidance: bool = False,
                dwpose=None) -> io.NodeOutput:
        source = comfy_to_bchw(source_image, "source_image")
        settings = _settings(steps, guidance, scheduler, seed, fit, resolution, batch_chunk, sequential_guidance)
        tgt_pose = pose_input(target_pose, target_pose_keypoint, "target_pose", require_person=True)
        if dwpose is None:
            dwpose = load_dwpose(resolve_model_file("dwpose", dwpose_model, hint=DWPOSE_HINT),
                                 resolve_model_file("dwpose", detector_model, hint=DWPOSE_HINT))
        photos = list(to_uint8(source))
        try:
            src_pose = from_uint8(source_pose_renders(dwpose, photos, progress_callback(len(photos))))
        except NoPersonError:
            raise NoPersonError(
                "DWPose found no person in the source image. Use a photo where the whole person is clearly "
                "visible, or extract the source pose with PoseTransfer DWPose Extract (or draw it) and use "
                "PoseTransfer PCDM Inpaint with its source_pose input instead.") from None
        return _node_output(run_inpaint(pcdm_model, dinov2, vae, source, src_pose, tgt_pose, settings))


NODES = [PCDMInpaint, PCDMPoseTransfer]
