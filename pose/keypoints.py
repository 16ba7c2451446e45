"""Typed per-frame poses and the COCO-WholeBody-133 -> OpenPose-18 (+ hands, face) conversion.

Coordinates are float pixels of the frame's canvas (`width` x `height`); every point carries a score, and a
score of 0 means "missing" (its x, y are then 0). Parts that were never detected or are disabled are `None`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

BODY_POINTS, HAND_POINTS, FACE_POINTS, FOOT_POINTS = 18, 21, 70, 6
# OpenPose-18 order (DWPOSE.md §5): 0 nose, 1 neck, 2-4 right arm, 5-7 left arm, 8-10 right leg, 11-13 left leg,
# 14/15 right/left eye, 16/17 right/left ear.
# OpenPose index <- COCO-17 index, after the neck was inserted at 17 (the conversion every DWPose port uses).
OPENPOSE_FROM_MMPOSE = {1: 17, 2: 6, 3: 8, 4: 10, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16, 12: 13, 13: 15,
                        14: 2, 15: 1, 16: 4, 17: 3}
# Slices of the 134-point array (133 + neck) after the reorder.
FEET, FACE68, LEFT_HAND, RIGHT_HAND = slice(18, 24), slice(24, 92), slice(92, 113), slice(113, 134)
VISIBILITY_THRESHOLD = 0.3  # comfyui_controlnet_aux keeps a point when score >= 0.3
SHOULDERS = (5, 6)  # COCO left/right shoulder, averaged into the neck
# 17 drawn limbs, 1-based OpenPose pairs (the two ear-shoulder pairs of the original list are never drawn).
LIMBS = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13),
         (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18))
HAND_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
              (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20))


def missing_points(count: int) -> np.ndarray:
    """(count,3) array of missing points (x = y = score = 0)."""
    return np.zeros((count, 3), dtype=np.float64)


@dataclass
class Person:
    """One person: each part is (K,3) float64 [x, y, score] in canvas pixels, score 0 = missing.

    `body` is OpenPose-18 (always present, possibly all missing); `face` has 70 points (68 landmarks + the
    right and left eye of the body, as OpenPose writes them); hands 21 points each; `feet` 6 (optional).
    `extra` keeps unknown per-person JSON keys so files round-trip without loss.
    """

    body: np.ndarray = field(default_factory=lambda: missing_points(BODY_POINTS))
    left_hand: np.ndarray | None = None
    right_hand: np.ndarray | None = None
    face: np.ndarray | None = None
    feet: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def parts(self) -> dict[str, np.ndarray | None]:
        return {"body": self.body, "left_hand": self.left_hand, "right_hand": self.right_hand,
                "face": self.face, "feet": self.feet}

    def visible_xy(self) -> np.ndarray:
        """(N,2) pixels of every present point of every part."""
        points = [p[p[:, 2] > 0, :2] for p in self.parts().values() if p is not None]
        return np.concatenate(points) if points else np.zeros((0, 2))

    def bounds(self) -> tuple[float, float, float, float] | None:
        """(x1, y1, x2, y2) of the present points, or None when nothing is present."""
        xy = self.visible_xy()
        if len(xy) == 0:
            return None
        return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())

    def mapped(self, fn) -> "Person":
        """A copy whose present points are moved by `fn((N,2) xy) -> (N,2) xy`; missing points stay 0."""
        def move(part: np.ndarray | None) -> np.ndarray | None:
            if part is None:
                return None
            out = part.copy()
            present = out[:, 2] > 0
            if present.any():
                out[present, :2] = fn(out[present, :2])
            return out
        return replace(self, **{name: move(part) for name, part in self.parts().items()}, extra=dict(self.extra))


@dataclass
class PoseFrame:
    """The people of one image, in pixels of a `width` x `height` canvas. `extra` keeps unknown frame keys."""

    width: int
    height: int
    people: list[Person] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def scaled_to(self, width: int, height: int) -> "PoseFrame":
        """The same pose on a canvas of another size (coordinates stretched per axis)."""
        factor = np.array([width / self.width, height / self.height])
        return PoseFrame(width, height, [p.mapped(lambda xy: xy * factor) for p in self.people], dict(self.extra))


def _visible_part(points: np.ndarray, threshold: float) -> np.ndarray | None:
    """(K,3) with dropped points zeroed, or None when no point is kept (as comfyui_controlnet_aux)."""
    keep = points[:, 2] >= threshold
    if not keep.any():
        return None
    out = points.astype(np.float64).copy()
    out[~keep] = 0.0
    return out


def people_from_wholebody(keypoints: np.ndarray, scores: np.ndarray,
                          threshold: float = VISIBILITY_THRESHOLD) -> list[Person]:
    """COCO-WholeBody-133 detections -> OpenPose people.

    keypoints: (N,133,2) pixels; scores: (N,133) raw SimCC maxima. The neck is the mean of the shoulders with
    score 1 when both shoulders score > 0.3, else 0 (binary, as every DWPose port). Points scoring below
    `threshold` are dropped; a hand or face with no kept point is None; feet are kept for completeness.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (133, 2) or scores.shape != keypoints.shape[:2]:
        raise ValueError(f"expected keypoints (N,133,2) and scores (N,133), got {keypoints.shape} and {scores.shape}")
    info = np.concatenate([keypoints, scores[..., None]], axis=-1)
    neck = info[:, list(SHOULDERS)].mean(axis=1)
    neck[:, 2] = np.all(info[:, list(SHOULDERS), 2] > 0.3, axis=1).astype(np.float64)
    info = np.insert(info, 17, neck, axis=1)
    reordered = info.copy()
    for openpose, mmpose in OPENPOSE_FROM_MMPOSE.items():
        reordered[:, openpose] = info[:, mmpose]
    people = []
    for row in reordered:
        body = _visible_part(row[:BODY_POINTS], threshold)
        body = missing_points(BODY_POINTS) if body is None else body
        face = _visible_part(row[FACE68], threshold)
        if face is not None:  # OpenPose's 70-point face ends with the two body eyes
            face = np.concatenate([face, body[[14, 15]]])
        people.append(Person(body=body, left_hand=_visible_part(row[LEFT_HAND], threshold),
                             right_hand=_visible_part(row[RIGHT_HAND], threshold), face=face,
                             feet=_visible_part(row[FEET], threshold)))
    return people


SELECTIONS = ("all", "largest", "left-most", "index")


def select_people(people: Sequence[Person], mode: str = "all", index: int = 0) -> list[Person]:
    """Choose people: all, the largest (area of the present points' bounds), the left-most, or by index
    (0 = first in detection order; negative counts from the end). People with no present point are never
    chosen by largest/left-most. An index outside the list raises."""
    if mode not in SELECTIONS:
        raise ValueError(f"person selection must be one of {SELECTIONS}, got {mode!r}")
    people = list(people)
    if mode == "all" or not people:
        return people
    if mode == "index":
        if not -len(people) <= index < len(people):
            raise IndexError(f"person index {index} is out of range: {len(people)} people were found")
        return [people[index]]
    bounded = [(p, p.bounds()) for p in people if p.bounds() is not None]
    if not bounded:
        return []
    if mode == "largest":
        return [max(bounded, key=lambda pb: (pb[1][2] - pb[1][0]) * (pb[1][3] - pb[1][1]))[0]]
    return [min(bounded, key=lambda pb: pb[1][0])[0]]
