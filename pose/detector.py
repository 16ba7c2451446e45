"""YOLOX person detection post-processing (DWPOSE.md §3): anchor decode, class-aware NMS, person filter.

The ONNX model takes a letterboxed (1,3,S,S) float32 image in 0..255 (no mean/std) and returns (1,A,5+C):
raw box offsets (cx, cy, log w, log h), sigmoided objectness and class scores, over anchors of strides
8/16/32 in row-major grid order.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

STRIDES = (8, 16, 32)
NMS_IOU = 0.45
SCORE_THRESHOLD = 0.1  # per-class candidates entering NMS
PERSON_THRESHOLD = 0.3  # final person score
PERSON_CLASS = 0


@lru_cache(maxsize=8)  # one grid per detector input size, read-only
def anchor_grid(height: int, width: int, strides: tuple[int, ...] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """(A,2) float32 grid cells (x, y) and (A,1) float32 strides of every anchor, levels concatenated."""
    cells, steps = [], []
    for stride in strides:
        gy, gx = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
        cells.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
        steps.append(np.full((gx.size, 1), stride))
    grid = np.concatenate(cells).astype(np.float32), np.concatenate(steps).astype(np.float32)
    for array in grid:
        array.flags.writeable = False
    return grid


def person_rows(raw: np.ndarray, score_threshold: float = SCORE_THRESHOLD) -> np.ndarray:
    """Indices of the (A,5+C) model rows whose person score (objectness x class 0, in float32 as `decode_boxes`
    computes it) passes `score_threshold`: the only rows `select_person_boxes` can keep, so the only ones worth
    decoding (a frame has a few dozen of 8400)."""
    raw = np.asarray(raw, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(raw[:, 4] * raw[:, 5 + PERSON_CLASS] > np.float32(score_threshold))


def decode_boxes(raw: np.ndarray, input_hw: tuple[int, int], ratio: float,
                 rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(A,5+C) model rows -> (A,4) x1y1x2y2 boxes in source pixels and (A,C) scores (objectness x class);
    with `rows`, only those rows (indices), each decoded exactly as in the whole.

    Decoded in float32 as the reference ports do: a float64 decode moves boxes by ~1e-5 px, enough to
    round a keypoint into a neighbouring SimCC bin downstream. Junk rows may overflow `exp` to infinity (or hold NaN):
    such boxes come out non-finite and `select_person_boxes` never picks them.
    """
    raw = np.asarray(raw, dtype=np.float32)
    cells, strides = anchor_grid(*input_hw)
    if len(cells) != len(raw):
        raise ValueError(f"detector returned {len(raw)} anchors; a {input_hw[0]}x{input_hw[1]} YOLOX input "
                         f"has {len(cells)} (strides {STRIDES})")
    if rows is not None:
        raw, cells, strides = raw[rows], cells[rows], strides[rows]
    with np.errstate(over="ignore", invalid="ignore"):
        centers = (raw[:, :2] + cells) * strides
        sizes = np.exp(raw[:, 2:4]) * strides
        boxes = np.concatenate([centers - sizes / 2.0, centers + sizes / 2.0], axis=1)
        boxes /= np.float32(ratio)
        scores = raw[:, 4:5] * raw[:, 5:]
    return boxes, scores


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU, limit: int | None = None) -> list[int]:
    """Greedy NMS with the "+1 pixel" area convention of the YOLOX demo; returns kept indices, best first.

    With `limit`, stops once that many are kept: a kept box depends only on better-scoring ones, so these are the
    first `limit` of the full result (thousands of disjoint junk boxes would otherwise take seconds). In float32 as
    the reference: areas of junk boxes near 1e38 px overflow, and two such boxes count as overlapping.
    """
    x1, y1, x2, y2 = boxes.T
    keep = []
    with np.errstate(over="ignore", invalid="ignore"):
        areas = (x2 - x1 + 1) * (y2 - y1 + 1)
        order = np.argsort(scores, kind="stable")[::-1]
        while order.size and (limit is None or len(keep) < limit):
            best, rest = order[0], order[1:]
            keep.append(int(best))
            w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
            h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
            inter = w * h
            order = rest[inter / (areas[best] + areas[rest] - inter) <= iou_threshold]
    return keep


BOX_MARGIN = 1.0  # boxes are clipped to the image grown by this fraction of its size on every side
MIN_BOX_SIDE = 1.0  # px: boxes narrower than this once clipped (or not finite) are dropped


def select_person_boxes(boxes: np.ndarray, scores: np.ndarray, image_hw: tuple[int, int], limit: int | None = None,
                        score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = NMS_IOU,
                        person_threshold: float = PERSON_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Class-aware NMS, then keep class-0 detections scoring > `person_threshold`, at most `limit`, best first;
    boxes clipped to the image of size `image_hw` grown by `BOX_MARGIN` of its size on each side. Returns (N,4), (N,).

    Only the person class can survive the final filter and NMS never compares across classes, so running
    NMS on the person column alone gives the same boxes as the full class loop.

    Odd images make real detectors emit junk boxes (thousands, +-1e8 px, NaN): boxes or scores that are not finite,
    and boxes with a side under `MIN_BOX_SIDE` px once clipped, are dropped before NMS (so they suppress nobody), and
    boxes beyond the margin are clipped after it: a crop of such a box is meaningless and its affine map numerically
    singular. Real boxes of people cut by the frame overshoot the image by a few pixels and are kept exactly as the
    detector gave them (the peer does not clip), so results stay identical to comfyui_controlnet_aux's.
    """
    person = scores[:, PERSON_CLASS]
    candidates = np.flatnonzero((person > score_threshold) & np.isfinite(person) & _croppable(boxes, image_hw))
    if candidates.size == 0:
        return np.zeros((0, 4), dtype=np.float32), np.zeros((0,), dtype=np.float32)
    keep = candidates[nms(boxes[candidates], person[candidates], iou_threshold, limit)]
    keep = keep[person[keep] > person_threshold]  # kept boxes come best first: the cut above commutes with this
    return _clip(boxes[keep], image_hw), person[keep]


def within_margin(points: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(...,2) x, y in pixels -> bool (...): inside the image grown by `BOX_MARGIN` of its size on each side."""
    low, high = _margin(image_hw)
    return ((points >= low[:2]) & (points <= high[:2])).all(axis=-1)


def _margin(image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    height, width = image_hw
    low = np.array([-width, -height, -width, -height], dtype=np.float64) * BOX_MARGIN
    high = np.array([width, height, width, height], dtype=np.float64) * (1 + BOX_MARGIN)
    return low, high


def _clip(boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Clip to the grown image; only boxes beyond it change, so in-margin boxes keep their exact float32 values."""
    low, high = _margin(image_hw)
    outside = ((boxes < low) | (boxes > high)).any(axis=1)
    clipped = boxes.copy()
    if outside.any():
        clipped[outside] = np.clip(boxes[outside].astype(np.float64), low, high).astype(boxes.dtype)
    return clipped


def _croppable(boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """(A,) bool: finite boxes whose sides are at least `MIN_BOX_SIDE` px once clipped."""
    finite = np.isfinite(boxes).all(axis=1)
    low, high = _margin(image_hw)
    with np.errstate(invalid="ignore"):
        clipped = np.clip(boxes.astype(np.float64), low, high)
        sides = np.stack([clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]], axis=1)
    return finite & (sides >= MIN_BOX_SIDE).all(axis=1)
