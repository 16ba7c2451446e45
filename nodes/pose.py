"""Pose nodes: DWPose loader/extractor, skeleton rendering, alignment, OpenPose JSON load/save.

Glue only: the work is in `pose/`. Poses travel as POSE_KEYPOINT (the type comfyui_controlnet_aux and core
use), so other packs' poses and editors plug in directly.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..models.images import bchw_to_comfy, comfy_to_bchw, from_uint8, to_uint8
from ..pose.align import ALIGN_MODES, align_frames
from ..pose.dwpose import CHANNEL_ORDERS, NO_PERSON_MODES, PROVIDER_CHOICES, load_dwpose
from ..pose.formats import (SCHEMAS, frames_from_pose_keypoint, load_openpose_json, openpose_json,
                            pose_keypoint_from_frames, save_openpose_json)
from ..pose.keypoints import SELECTIONS, Person, PoseFrame, select_people
from ..pose.render import STYLES, render_controlnet_aux, render_pcdms
from .comfy_adapter import (input_directory, io, make_schema, model_file_list, output_directory, progress_callback,
                            resolve_model_file, to_output)
from .inputs import DWPOSE_HINT, POSE_CATEGORY, DWPoseModel, PoseKeypoint

NO_DETECTOR = "none (whole image)"
POSE_TOOLTIP = "Poses: a list with one OpenPose-style dict per image (from DWPose, other packs, or a JSON file)."
SCHEMA_TOOLTIP = ("controlnet_aux: confidence 1.0 for kept points, null for absent hands/face (what "
                  "comfyui_controlnet_aux tools read). core: as ComfyUI core's SDPose writes it: every part of every "
                  "person as a full list (feet 6 points, face 70), real scores. Hands keep the OpenPose labels "
                  "(hand_left = the person's left hand) in both.")
STYLE_TOOLTIP = ("pcdms: what the PCDMs models were trained on (thin hands, no face, drawn at 512 then resized). "
                 "controlnet_aux: the comfyui_controlnet_aux DWPose look (thick hands, face dots).")


def onnx_model_files() -> list[str]:
    """The ONNX files of the dwpose folder (it also lists other packs' TorchScript files, which we cannot run)."""
    return [f for f in model_file_list("dwpose") if f.lower().endswith(".onnx")]


def _default(options: list[str], wanted: str) -> str | None:
    return wanted if wanted in options else (options[0] if options else None)


def images_to_uint8(image: torch.Tensor) -> list[np.ndarray]:
    """IMAGE [B,H,W,C] (C = 1, 3 or 4) -> list of uint8 RGB (H,W,3) arrays."""
    return list(to_uint8(comfy_to_bchw(image, "image")))


def render_frames(frames: list[PoseFrame], style: str, height: int, width: int, hands: bool = True,
                  face: bool = True) -> torch.Tensor:
    """Frames -> IMAGE [B,H,W,3]."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if style == "pcdms":
        images = [render_pcdms(f, height, width) for f in frames]
    else:
        images = [render_controlnet_aux(f, height, width, draw_hands=hands, draw_face=face) for f in frames]
    return to_output(bchw_to_comfy(from_uint8(images)))


def _pose_keypoint_input() -> PoseKeypoint.Input:
    return PoseKeypoint.Input("pose_keypoint", tooltip=POSE_TOOLTIP)


def _style_input() -> io.Combo.Input:
    return io.Combo.Input("style", options=list(STYLES), default="pcdms", tooltip=STYLE_TOOLTIP)


def _keypoint_schema_input() -> io.Combo.Input:
    return io.Combo.Input("keypoint_schema", options=list(SCHEMAS), default="controlnet_aux", optional=True,
                          tooltip=SCHEMA_TOOLTIP)


def _without(frame: PoseFrame, hands: bool, face: bool, feet: bool = False) -> PoseFrame:
    """Disabled parts become null in POSE_KEYPOINT, as the peer's detect_hand/detect_face switches do; feet are
    kept only for core's schema (the peer never writes them)."""
    people = []
    for p in frame.people:
        parts = {"left_hand": p.left_hand if hands else None, "right_hand": p.right_hand if hands else None,
                 "face": p.face if face else None, "feet": p.feet if feet else None}
        people.append(Person(body=p.body, extra=dict(p.extra), **parts))
    return PoseFrame(frame.width, frame.height, people, dict(frame.extra))


class DWPoseLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        files = onnx_model_files()
        return make_schema(
            node_id="PoseTransferDWPoseLoader",
            display_name="PoseTransfer DWPose Loader",
            category=POSE_CATEGORY,
            description="Opens the DWPose ONNX models with onnxruntime. Sizes and batch support are read from the "
                        "files; the providers really used are reported in the console.",
            search_aliases=["dwpose", "openpose", "pose estimator", "yolox"],
            advanced=("provider", "detector_channels"),
            inputs=[
                io.Combo.Input("pose_model", options=files, default=_default(files, "dw-ll_ucoco_384.onnx"),
                               tooltip="DWPose whole-body model (.onnx) in models/dwpose, e.g. dw-ll_ucoco_384.onnx."),
                io.Combo.Input("detector", options=[NO_DETECTOR, *files], default=_default(files, "yolox_l.onnx"),
                               tooltip="YOLOX person detector (.onnx), e.g. yolox_l.onnx. 'none' treats every "
                                       "image as one person filling the frame."),
                io.Combo.Input("provider", options=list(PROVIDER_CHOICES), default="auto",
                               tooltip="onnxruntime execution provider. auto: the best available, CPU otherwise."),
                io.Combo.Input("detector_channels", options=list(CHANNEL_ORDERS), default="BGR",
                               tooltip="Channel order fed to the detector. BGR: as YOLOX was trained. RGB: as "
                                       "comfyui_controlnet_aux feeds it (to reproduce its boxes)."),
            ],
            outputs=[DWPoseModel.Output(display_name="dwpose", tooltip="The two onnxruntime sessions.")],
        )

    @classmethod
    def execute(cls, pose_model: str, detector: str, provider: str = "auto",
                detector_channels: str = "BGR") -> io.NodeOutput:
        pose_path = resolve_model_file("dwpose", pose_model, hint=DWPOSE_HINT)
        det_path = None if detector == NO_DETECTOR else resolve_model_file("dwpose", detector, hint=DWPOSE_HINT)
        return io.NodeOutput(load_dwpose(pose_path, det_path, provider, detector_channels))


class DWPoseExtract(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return make_schema(
            node_id="PoseTransferDWPoseExtract",
            display_name="PoseTransfer DWPose Extract",
            category=POSE_CATEGORY,
            description="Detects people and their whole-body keypoints in every image (frame by frame) and renders them.",
            search_aliases=["dwpose", "pose detection", "openpose", "keypoints"],
            advanced=("person_index", "real_scores"),
            inputs=[
                DWPoseModel.Input("dwpose", tooltip="From PoseTransfer DWPose Loader."),
                io.Image.Input("image", tooltip="Photo(s) or video frames; grayscale and RGBA are accepted."),
                io.Combo.Input("person", options=list(SELECTIONS), default="all",
                               tooltip="Which people to keep when several are found: all, the largest, the left-most, "
                                       "or the one at 'person_index' (detection order, best first)."),
                io.Int.Input("person_index", default=0, min=-64, max=64,
                             tooltip="Used when person = index; negative counts from the end."),
                io.Combo.Input("no_person", options=list(NO_PERSON_MODES), default="empty",
                               tooltip="When nobody is detected: an empty pose, the whole image as one person, or an error."),
                _style_input(),
                io.Boolean.Input("hands", default=True, tooltip="Keep hand keypoints (null in the output when off)."),
                io.Boolean.Input("face", default=True, tooltip="Keep face keypoints (null in the output when off)."),
                io.Boolean.Input("real_scores", default=False,
                                 tooltip="Write the model's scores as confidences instead of 1.0 (comfyui_controlnet_aux "
                                         "tools treat confidence below 1.0 as missing, so keep this off for them)."),
                _keypoint_schema_input(),
            ],
            outputs=[
                PoseKeypoint.Output(display_name="pose_keypoint",
                                    tooltip="Absolute pixels of each input image; confidence 1.0 (or the score) for "
                                            "kept points, 0,0,0 for missing ones, null for absent hands/face."),
                io.Image.Output(display_name="pose_image", tooltip="The skeletons drawn at the input size."),
            ],
        )

    @classmethod
    def execute(cls, dwpose, image: torch.Tensor, person: str = "all", person_index: int = 0,
                no_person: str = "empty", style: str = "pcdms", hands: bool = True,
                face: bool = True, real_scores: bool = False, keypoint_schema: str = "controlnet_aux") -> io.NodeOutput:
        images = images_to_uint8(image)
        frames = dwpose.run_batch(images, no_person, progress_callback(len(images)))
        frames = [PoseFrame(f.width, f.height, select_people(f.people, person, person_index)) for f in frames]
        frames = [_without(f, hands, face, feet=keypoint_schema == "core") for f in frames]
        height, width = images[0].shape[:2]
        value = pose_keypoint_from_frames(frames, real_scores, keypoint_schema)
        # the same UI string comfyui_controlnet_aux's DWPose node sends, which pose editors read
        return io.NodeOutput(value, render_frames(frames, style, height, width),
                             ui={"openpose_json": [openpose_json(value)]})


class RenderPose(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return make_schema(
            node_id="PoseTransferRenderPose",
            display_name="PoseTransfer Render Pose",
            category=POSE_CATEGORY,
            description="Draws POSE_KEYPOINT skeletons on black in the style a model expects, at the size you choose.",
            search_aliases=["draw pose", "openpose render", "skeleton"],
            inputs=[
                _pose_keypoint_input(),
                _style_input(),
                io.Int.Input("width", default=0, min=0, max=8192, step=8,
                             tooltip="Output width; 0 = the pose's canvas width. Poses are stretched to the output size."),
                io.Int.Input("height", default=0, min=0, max=8192, step=8,
                             tooltip="Output height; 0 = the pose's canvas height."),
                io.Boolean.Input("hands", default=True, tooltip="Draw hands (controlnet_aux style only; PCDMs always does)."),
                io.Boolean.Input("face", default=True, tooltip="Draw face dots (controlnet_aux style only; PCDMs never does)."),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="One rendered image per pose frame.")],
        )

    @classmethod
    def execute(cls, pose_keypoint, style: str = "pcdms", width: int = 0, height: int = 0, hands: bool = True,
                face: bool = True) -> io.NodeOutput:
        frames = frames_from_pose_keypoint(pose_keypoint)
        sizes = {(width or f.width, height or f.height) for f in frames}
        if len(sizes) > 1:
            raise ValueError(f"The pose frames have different canvas sizes {sorted(sizes)}; set width and height "
                             "so every frame renders at one size (an IMAGE batch shares one size).")
        out_w, out_h = sizes.pop()
        return io.NodeOutput(render_frames(frames, style, out_h, out_w, hands, face))


class AlignPose(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return make_schema(
            node_id="PoseTransferAlignPose",
            display_name="PoseTransfer Align Pose",
            category=POSE_CATEGORY,
            description="Retargets target poses to the source person's body size and position, so a tall source and a "
                        "short target pose don't give a squashed person. Off ('none') reproduces the original methods.",
            search_aliases=["retarget pose", "pose alignment", "scale pose"],
            inputs=[
                PoseKeypoint.Input("target_pose", tooltip="The pose(s) to transfer to; a sequence is aligned as a whole."),
                PoseKeypoint.Input("source_pose", tooltip="The pose of the source person (first frame is used)."),
                io.Combo.Input("mode", options=list(ALIGN_MODES), default="scale+translate",
                               tooltip="scale+translate: one scale and shift from the first frame. per-limb lengths: "
                                       "also give every limb the source's length, keeping the target's joint angles."),
                io.Int.Input("source_person", default=0, min=0, max=64,
                             tooltip="Which person of the source pose is the reference body."),
            ],
            outputs=[PoseKeypoint.Output(display_name="pose_keypoint",
                                         tooltip="The aligned target poses on the source pose's canvas.")],
        )

    @classmethod
    def execute(cls, target_pose, source_pose, mode: str = "scale+translate", source_person: int = 0) -> io.NodeOutput:
        source = frames_from_pose_keypoint(source_pose)[0]
        aligned = align_frames(frames_from_pose_keypoint(target_pose), source, mode, source_person)
        return io.NodeOutput(pose_keypoint_from_frames(aligned))


class LoadOpenPoseJSON(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return make_schema(
            node_id="PoseTransferLoadOpenPoseJSON",
            display_name="PoseTransfer Load OpenPose JSON",
            category=POSE_CATEGORY,
            description="Reads an OpenPose JSON file (one frame, or a list of frames) as POSE_KEYPOINT.",
            search_aliases=["openpose json", "load pose", "pose keypoint"],
            inputs=[
                io.String.Input("path", default="", tooltip="Path of the .json file: absolute, or relative to "
                                                            "ComfyUI's input folder."),
                io.Int.Input("canvas_width", default=512, min=1, max=16384,
                             tooltip="Canvas width for files that don't state one."),
                io.Int.Input("canvas_height", default=512, min=1, max=16384,
                             tooltip="Canvas height for files that don't state one."),
            ],
            outputs=[PoseKeypoint.Output(display_name="pose_keypoint", tooltip="The poses, in pixels.")],
        )

    @classmethod
    def fingerprint_inputs(cls, path: str, **_) -> tuple:
        # Reload when the file changes, not only when the path does.
        full = _input_path(path)
        return (full, os.path.getmtime(full)) if os.path.isfile(full) else (full,)

    @classmethod
    def execute(cls, path: str, canvas_width: int = 512, canvas_height: int = 512) -> io.NodeOutput:
        full = _input_path(path)
        if not path or not os.path.isfile(full):
            raise FileNotFoundError(f"OpenPose JSON file not found: '{path}' (looked for {full})")
        frames = load_openpose_json(full, (canvas_width, canvas_height))
        return io.NodeOutput(pose_keypoint_from_frames(frames, real_scores=True))


def _input_path(path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(input_directory(), path)


class SaveOpenPoseJSON(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return make_schema(
            node_id="PoseTransferSaveOpenPoseJSON",
            display_name="PoseTransfer Save OpenPose JSON",
            category=POSE_CATEGORY,
            description="Writes POSE_KEYPOINT as an OpenPose JSON file (a dict for one frame, a list for several).",
            search_aliases=["save pose", "openpose json", "export keypoints"],
            is_output_node=True,
            inputs=[
                _pose_keypoint_input(),
                io.String.Input("filename_prefix", default="poses/pose",
                                tooltip="File name under ComfyUI's output folder; a counter and .json are added."),
                io.Boolean.Input("real_scores", default=False,
                                 tooltip="Write detector scores instead of 1.0 (comfyui_controlnet_aux treats "
                                         "confidence below 1.0 as missing)."),
                _keypoint_schema_input(),
            ],
            outputs=[io.String.Output(display_name="path", tooltip="Path of the written file.")],
        )

    @classmethod
    def execute(cls, pose_keypoint, filename_prefix: str = "poses/pose", real_scores: bool = False,
                keypoint_schema: str = "controlnet_aux") -> io.NodeOutput:
        frames = frames_from_pose_keypoint(pose_keypoint)
        if os.path.isabs(filename_prefix) or ".." in filename_prefix.replace("\\", "/").split("/"):
            raise ValueError(f"filename_prefix must stay inside the output folder, got '{filename_prefix}'")
        base = os.path.join(output_directory(), filename_prefix)
        counter = 1
        while os.path.exists(f"{base}_{counter:05d}.json"):
            counter += 1
        return io.NodeOutput(save_openpose_json(frames, f"{base}_{counter:05d}.json", real_scores, keypoint_schema))


NODES = [DWPoseLoader, DWPoseExtract, RenderPose, AlignPose, LoadOpenPoseJSON, SaveOpenPoseJSON]
