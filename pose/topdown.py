"""Top-down RTMPose/DWPose pre- and post-processing (DWPOSE.md §4): box -> affine crop -> SimCC decode.

The pose network sees a (input_w x input_h) crop of the box enlarged 1.25x and widened/heightened to the
network's aspect ratio, normalised with ImageNet statistics in RGB order, and answers per keypoint two 1-D
classification vectors (SimCC) over x and y bins at `split_ratio` bins per crop pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .imageops import affine_from_points, warp_affine
from .native import opencv

BOX_PADDING = 1.25
SIMCC_SPLIT_RATIO = 2.0
MEAN = np.array([123.675, 116.28, 103.53])  # ImageNet, RGB order (the mmpose config has bgr_to_rgb=True)
STD = np.array([58.395, 57.12, 57.375])
# (level - MEAN) / STD for every uint8 level per channel, in float64 then float32 as the reference computes it:
# a lookup gives the same numbers as the arithmetic at a fraction of its cost.
_NORMALISED_LEVELS = ((np.arange(256)[None, :] - MEAN[:, None]) / STD[:, None]).astype(np.float32)
_LEVELS_LUT = np.ascontiguousarray(_NORMALISED_LEVELS.T).reshape(1, 256, 3)  # for cv2.LUT: a table per channel


@dataclass(frozen=True)
class Crop:
    """Where a crop came from: box centre and the aspect-fixed, padded box size (w, h), in image pixels."""

    center: np.ndarray
    scale: np.ndarray


def crop_for_box(box: np.ndarray, input_w: int, input_h: int) -> Crop:
    """x1y1x2y2 box -> centre and 1.25x size, widened or heightened to the input aspect w/h."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    center = np.array([x1 + x2, y1 + y2]) * 0.5
    w, h = (x2 - x1) * BOX_PADDING, (y2 - y1) * BOX_PADDING
    aspect = input_w / input_h
    scale = np.array([w, w / aspect]) if w > h * aspect else np.array([h * aspect, h])
    return Crop(center, scale)


def crop_matrix(crop: Crop, input_w: int, input_h: int) -> np.ndarray:
    """2x3 affine (rotation 0) taking the crop region onto the network input.

    Three point pairs as mmpose builds them: the centre, the centre moved up by half the box width, and the
    third point b + (-d_y, d_x) with d = b - centre. Rotating the other way is the same map on paper but not
    in float32, and the difference moves joints by a SimCC bin.
    """
    src = np.zeros((3, 2), dtype=np.float32)
    src[0] = crop.center
    src[1] = crop.center + np.array([0.0, crop.scale[0] * -0.5])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0] = [input_w * 0.5, input_h * 0.5]
    dst[1] = np.array([input_w * 0.5, input_h * 0.5]) + np.array([0.0, input_w * -0.5])
    for points in (src, dst):
        direction = points[0] - points[1]
        points[2] = points[1] + np.array([-direction[1], direction[0]])
    return affine_from_points(src, dst)


def crop_input(image_rgb: np.ndarray, crop: Crop, input_w: int, input_h: int,
               out: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB (H,W,3) -> normalised float32 (3, input_h, input_w) network input for one crop, written into
    `out` when given (a slot of the batch, saving a copy)."""
    levels = warp_affine(image_rgb, crop_matrix(crop, input_w, input_h), input_h, input_w)  # uint8, as cv2's
    out = np.empty((3, input_h, input_w), np.float32) if out is None else out
    cv2 = opencv()
    if cv2 is not None:  # the same table, looked up natively
        np.copyto(out, cv2.LUT(levels, _LEVELS_LUT).transpose(2, 0, 1))
        return out
    for channel in range(3):  # a lookup per channel, indexed by the uint8 levels themselves
        np.take(_NORMALISED_LEVELS[channel], levels[..., channel], out=out[channel])
    return out


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray,
                 split_ratio: float = SIMCC_SPLIT_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """(N,K,Wx), (N,K,Wy) -> crop-pixel locations (N,K,2) and scores (N,K).

    Argmax per axis; the score is the smaller of the two maxima (raw values, no softmax); a keypoint whose
    score is <= 0 gets location -1 (before the division by the split ratio, as the reference does). A keypoint
    whose vectors hold NaN or +inf (a damaged model, float16 overflow) gets score NaN, for the caller to treat.
    """
    locs = np.stack([np.argmax(simcc_x, axis=-1), np.argmax(simcc_y, axis=-1)], axis=-1).astype(np.float32)
    max_x, max_y = np.max(simcc_x, axis=-1), np.max(simcc_y, axis=-1)
    scores = np.minimum(max_x, max_y)
    scores[~(np.isfinite(max_x) & np.isfinite(max_y))] = np.nan
    locs[scores <= 0] = -1
    return locs / np.float32(split_ratio), scores


def to_image(locs: np.ndarray, crop: Crop, input_w: int, input_h: int) -> np.ndarray:
    """Crop pixels (K,2) -> image pixels: p / (w, h) * scale + centre - scale / 2."""
    return locs / np.array([input_w, input_h]) * crop.scale + crop.center - crop.scale / 2


def to_image_many(locs: np.ndarray, crops: list[Crop], input_w: int, input_h: int) -> np.ndarray:
    """`to_image` for (N,K,2) locations of N crops at once (same arithmetic, so the same numbers)."""
    if not crops:
        return np.zeros((0, locs.shape[1], 2))
    centers = np.stack([c.center for c in crops])[:, None]
    scales = np.stack([c.scale for c in crops])[:, None]
    return locs / np.array([input_w, input_h]) * scales + centers - scales / 2
