"""Poses as the models take them: PCDMs-style renders, the PCDMs prior's 36 coordinates, SCFM's 20-channel maps.

The pipelines in `models/` take these as arrays/tensors and never see keypoints; `nodes/` and `cli/` call these
functions and hand the results over. Renders are uint8 (B, H, W, 3) like every image of the pose toolkit; the
callers convert them with `models.images.from_uint8`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .formats import PoseFormatError
from .keypoints import BODY_POINTS, PoseFrame, select_people
from .render import render_pcdms, scfm_pose_map

Progress = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------- PCDMs renders
def pcdms_renders(frames: Sequence[PoseFrame], height: int, width: int) -> np.ndarray:
    """Pose frames -> uint8 (B, height, width, 3), drawn in the style PCDMs was trained on."""
    return np.stack([render_pcdms(frame, height, width) for frame in frames])


def source_pose_renders(dwpose, photos: Sequence[np.ndarray], progress: Progress | None = None) -> np.ndarray:
    """uint8 RGB photos (H, W, 3), one size -> uint8 (B, H, W, 3) PCDMs-style renders of their DWPose keypoints.

    `dwpose` is a loaded `pose.dwpose.DWPose`; a photo without a person raises its no-person error, since a
    source pose is required."""
    frames = dwpose.run_batch(list(photos), no_person="error", progress=progress)
    height, width = photos[0].shape[:2]
    return pcdms_renders(frames, height, width)


# ------------------------------------------------------------------------------------------- PCDMs prior
# How the 18 OpenPose body points become the prior's 36 numbers. The released model was trained on DeepFashion
# `normalized_pose_txt` files whose convention is undocumented (PCDMS.md §10.3), so it is an explicit choice.
# "fraction" is OUR documented default: x/W, y/H of the canvas (= of the square model input, which is a straight
# resize), missing points 0. The others: centred [-1, 1]; pixels of a 512 or 256 model canvas; pixels of the
# GFLA DeepFashion 176x256 frame (whose txt files mark missing points with -1).
POSE_CONVENTIONS = ("fraction", "centred", "pixels_512", "pixels_256", "deepfashion_176x256")
DEEPFASHION_FRAME = (176.0, 256.0)  # GFLA's DeepFashion image size (width, height)


def pose_coordinates(frames: Sequence[PoseFrame], convention: str = "fraction", name: str = "pose") -> torch.Tensor:
    """Body poses of the largest person per frame -> (B, 36) float32 `x0, y0, x1, y1, ...` in `convention`."""
    if convention not in POSE_CONVENTIONS:
        raise ValueError(f"pose convention must be one of {POSE_CONVENTIONS}, got {convention!r}")
    rows = []
    for index, frame in enumerate(frames):
        chosen = select_people(frame.people, "largest")
        if not chosen:
            raise PoseFormatError(f"{name}: frame {index} has no person with visible keypoints; the PCDMs prior "
                                  "needs one body pose per image. Check the pose detector's output for that image.")
        body = torch.from_numpy(chosen[0].body)
        present = body[:, 2] > 0
        xy = body[:, :2] / torch.tensor([float(frame.width), float(frame.height)], dtype=body.dtype)
        missing = 0.0
        if convention == "centred":
            xy = xy * 2.0 - 1.0
        elif convention.startswith("pixels_"):
            xy = xy * float(convention.split("_")[1])
        elif convention == "deepfashion_176x256":
            xy, missing = xy * torch.tensor(DEEPFASHION_FRAME, dtype=xy.dtype), -1.0
        rows.append(torch.where(present[:, None], xy, torch.full_like(xy, missing)).reshape(-1))
    return torch.stack(rows).float()


# ------------------------------------------------------------------------------------------- SCFM
def scfm_body_points(frame: PoseFrame, what: str = "pose") -> np.ndarray:
    """The first person's OpenPose-18 body of a frame -> (18, 2) pixels of its canvas, -1 for missing points.
    People whose body has no visible point (every confidence 0) do not count."""
    visible = [person for person in frame.people if (person.body[:, 2] > 0).any()]
    if not visible:
        raise PoseFormatError(f"{what}: no person with a visible body point in this frame; SCFM needs one person per "
                              "image (check the pose extraction, or pick a frame with a visible person).")
    body = np.asarray(visible[0].body, dtype=np.float64)
    return np.where(body[:, 2:3] > 0, body[:, :2], -1.0)


def scfm_pose_maps(points: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """(18, 2) bodies already placed on the model's size x size square (-1 = missing) -> float32 [B,20,S,S] in
    [0, 1], SCFM's pose input (SCFM.md §4)."""
    maps = [np.ascontiguousarray(scfm_pose_map(np.asarray(xy).reshape(BODY_POINTS, 2), size=size)) for xy in points]
    return torch.from_numpy(np.stack(maps))
