"""Pose files of the test lists -> what each path needs: PCDMs renders, SCFM keypoints, stage-1 coordinates.

A pose file is a rendered pose image, an OpenPose JSON (first frame, first person for SCFM), or a GFLA/PIDM
keypoint .txt (18 rows `x y`, -1 = missing, in the frame whose 40 px margins SCFM's loader cuts).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..models.images import from_uint8, read_image
from ..pose.keypoints import BODY_POINTS, Person, PoseFrame
from .pair_lists import GFLA_FRAME, GFLA_MARGIN

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _body_rows(path: str, what: str, dtype: type) -> np.ndarray:
    """An 18-row `x y` text file (OpenPose-18 order) -> (18, 2) array; errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        values = np.loadtxt(path, dtype=dtype, ndmin=2)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a {what} of numbers 'x y' per row ({err})") from None
    if values.shape != (BODY_POINTS, 2):
        raise ValueError(f"{path}: expected {BODY_POINTS} rows 'x y' (OpenPose-18), found shape {values.shape}")
    return values


def gfla_keypoints(path: str) -> np.ndarray:
    """A GFLA/PIDM keypoint .txt -> (18, 2) pixels of the 176 x 256 picture, -1 where missing (SCFM's loader)."""
    xy = _body_rows(path, "keypoint file", np.float64)
    missing = (xy == -1).any(axis=1)
    xy = xy - np.array([GFLA_MARGIN, 0.0])
    xy[missing] = -1.0
    return xy


def pose_frame(path: str) -> PoseFrame:
    """OpenPose JSON (first frame) or GFLA keypoint .txt -> PoseFrame; a rendered image cannot give keypoints."""
    lower = path.lower()
    if lower.endswith(".json"):
        from ..pose.formats import load_openpose_json

        if not os.path.isfile(path):
            raise FileNotFoundError(f"pose file not found: {path}")
        return load_openpose_json(path)[0]
    if lower.endswith(".txt"):
        xy = gfla_keypoints(path)
        present = (xy >= 0).all(axis=1)
        body = np.concatenate([np.where(present[:, None], xy, 0.0), present[:, None].astype(np.float64)], axis=1)
        return PoseFrame(GFLA_FRAME[0], GFLA_FRAME[1], [Person(body=body)])
    raise ValueError(f"{path}: keypoints are needed here (OpenPose .json or keypoint .txt), not a rendered pose image")


def render_pose(path: str, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """A pose file -> [1,3,H,W] 0..1 render in PCDMs' style. Images are read as they are; keypoints are drawn
    on `height` x `width`, or on their own canvas."""
    if path.lower().endswith(IMAGE_SUFFIXES):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pose image not found: {path}")
        return read_image(path)
    from ..pose.render import render_pcdms

    frame = pose_frame(path)
    return from_uint8(render_pcdms(frame, height or frame.height, width or frame.width))[None]


def scfm_pose(path: str):
    """A pose file -> SCFM `PoseInput` (OpenPose-18 pixels of its canvas, -1 missing)."""
    from ..models.scfm.pipeline import PoseInput

    if path.lower().endswith(".txt"):
        return PoseInput(gfla_keypoints(path), GFLA_FRAME[1], GFLA_FRAME[0])
    from ..pose.conditions import scfm_body_points

    frame = pose_frame(path)
    return PoseInput(scfm_body_points(frame, path), frame.height, frame.width)


def prior_coordinates(path: str) -> torch.Tensor:
    """A PCDMs `normalized_pose_txt` file (18 rows `x y`) -> (1, 36), fed to the prior as they are (as stage 1 did)."""
    return torch.from_numpy(_body_rows(path, "stage-1 pose file", np.float32).reshape(1, -1))
