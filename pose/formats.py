"""POSE_KEYPOINT values and OpenPose JSON files <-> `PoseFrame`.

POSE_KEYPOINT (the io_type comfyui_controlnet_aux and ComfyUI core exchange) is a list with one dict per image:
``{"people": [{"pose_keypoints_2d": [x0,y0,c0,...], "face_keypoints_2d": ..., "hand_left_keypoints_2d": ...,
"hand_right_keypoints_2d": ...}], "canvas_width": W, "canvas_height": H}`` with flat lists in absolute pixels.
We write what controlnet_aux tools accept: c = 1.0 for present points and 0,0,0 for missing ones (or the real
scores on request), `null` for absent face/hands. We read pixel or normalised (all within [0,1]) parts,
`null` parts, missing keys, extra keys (kept), and refuse animal-only frames with a clear message.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Sequence

import numpy as np

from .keypoints import BODY_POINTS, FACE_POINTS, FOOT_POINTS, HAND_POINTS, Person, PoseFrame, missing_points

# JSON key -> (Person attribute, points)
PART_KEYS = {
    "pose_keypoints_2d": ("body", BODY_POINTS),
    "face_keypoints_2d": ("face", FACE_POINTS),
    "hand_left_keypoints_2d": ("left_hand", HAND_POINTS),
    "hand_right_keypoints_2d": ("right_hand", HAND_POINTS),
    "foot_keypoints_2d": ("feet", FOOT_POINTS),
}
_FRAME_KEYS = ("people", "canvas_width", "canvas_height")


class PoseFormatError(ValueError):
    """A POSE_KEYPOINT value or OpenPose JSON file that cannot be read; the message says what and where."""


# ----------------------------------------------------------------------------------------------- writing
def _flat(part: np.ndarray | None, real_scores: bool) -> list[float] | None:
    if part is None:
        return None
    out = []
    for x, y, score in part:
        if score > 0:
            out += [float(x), float(y), float(score) if real_scores else 1.0]
        else:
            out += [0.0, 0.0, 0.0]
    return out


def frame_to_dict(frame: PoseFrame, real_scores: bool = False) -> dict:
    """One POSE_KEYPOINT entry. Feet are written only when present (as core's SDPose does)."""
    people = []
    for person in frame.people:
        entry = dict(person.extra)
        for key, (attr, _) in PART_KEYS.items():
            part = getattr(person, attr)
            if attr == "feet" and part is None:
                continue
            entry[key] = _flat(part, real_scores)
        people.append(entry)
    return {**frame.extra, "people": people, "canvas_width": int(frame.width), "canvas_height": int(frame.height)}


def pose_keypoint_from_frames(frames: Sequence[PoseFrame], real_scores: bool = False) -> list[dict]:
    """`PoseFrame`s -> a POSE_KEYPOINT value (list of dicts, one per image)."""
    return [frame_to_dict(frame, real_scores) for frame in frames]


# ----------------------------------------------------------------------------------------------- reading
def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PoseFormatError(f"{where}: expected finite numbers, found {value!r}")
    return float(value)


def _part(values: Any, count: int, where: str) -> np.ndarray | None:
    """A flat (or nested-triple) list -> (count,3) with missing points zeroed; None for null/empty."""
    if values is None or (isinstance(values, list) and len(values) == 0):
        return None
    if not isinstance(values, list):
        raise PoseFormatError(f"{where}: expected a list of numbers [x0,y0,c0,...] or null, found {type(values).__name__}")
    if all(isinstance(v, (list, tuple)) for v in values):  # a few editors write [[x,y,c],...]
        values = [c for triple in values for c in triple]
    if len(values) % 3:
        raise PoseFormatError(f"{where}: {len(values)} numbers is not a multiple of 3 (x, y, confidence)")
    arr = np.array([_number(v, where) for v in values], dtype=np.float64).reshape(-1, 3)
    if len(arr) != count:
        raise PoseFormatError(f"{where}: expected {count} points ({3 * count} numbers), found {len(arr)}")
    missing = (arr[:, 2] <= 0) | ((arr[:, 0] == 0) & (arr[:, 1] == 0))
    arr[missing] = 0.0
    return arr


def _denormalise(part: np.ndarray | None, width: int, height: int) -> np.ndarray | None:
    """Parts whose present points all lie in [0,1] are normalised (controlnet_aux's rule, applied per
    part because some editors mix normalised bodies with pixel hands) -> pixels."""
    if part is None:
        return None
    present = part[:, 2] > 0
    if present.any() and np.all(np.abs(part[present, :2]) <= 1.0):
        part = part.copy()
        part[present, :2] *= np.array([width, height], dtype=np.float64)
    return part


def _canvas(entry: dict, default_size: tuple[int, int] | None, where: str) -> tuple[int, int]:
    width, height = entry.get("canvas_width"), entry.get("canvas_height")
    if width is None or height is None:
        if default_size is None:
            raise PoseFormatError(f"{where}: 'canvas_width'/'canvas_height' are missing and no image size was given")
        return default_size
    width, height = _number(width, f"{where}.canvas_width"), _number(height, f"{where}.canvas_height")
    if width < 1 or height < 1:
        raise PoseFormatError(f"{where}: canvas size must be positive, found {width} x {height}")
    return int(round(width)), int(round(height))


def frame_from_dict(entry: Any, default_size: tuple[int, int] | None = None, where: str = "frame") -> PoseFrame:
    """One POSE_KEYPOINT / OpenPose JSON dict -> `PoseFrame` in pixels. `default_size` = (width, height)
    used when the dict has no canvas size."""
    if not isinstance(entry, dict):
        raise PoseFormatError(f"{where}: expected a dict with a 'people' list, found {type(entry).__name__}")
    if "people" not in entry and entry.get("animals"):
        raise PoseFormatError(f"{where}: holds only animal poses ('animals'); these nodes handle people only")
    people_raw = entry.get("people") or []
    if not isinstance(people_raw, list):
        raise PoseFormatError(f"{where}.people: expected a list, found {type(people_raw).__name__}")
    width, height = _canvas(entry, default_size, where)
    people = []
    for i, raw in enumerate(people_raw):
        if not isinstance(raw, dict):
            raise PoseFormatError(f"{where}.people[{i}]: expected a dict, found {type(raw).__name__}")
        parts = {attr: _denormalise(_part(raw.get(key), count, f"{where}.people[{i}].{key}"), width, height)
                 for key, (attr, count) in PART_KEYS.items()}
        if parts["body"] is None:
            parts["body"] = missing_points(BODY_POINTS)
        people.append(Person(**parts, extra={k: v for k, v in raw.items() if k not in PART_KEYS}))
    extra = {k: v for k, v in entry.items() if k not in _FRAME_KEYS}
    return PoseFrame(width, height, people, extra)


def frames_from_pose_keypoint(value: Any, default_size: tuple[int, int] | None = None) -> list[PoseFrame]:
    """A POSE_KEYPOINT value (list of dicts, or one dict) -> list of `PoseFrame`s in pixels."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise PoseFormatError(f"POSE_KEYPOINT: expected a list of per-image dicts, found {type(value).__name__}")
    if len(value) == 0:
        raise PoseFormatError("POSE_KEYPOINT: the list is empty (no frames)")
    return [frame_from_dict(entry, default_size, f"POSE_KEYPOINT[{i}]") for i, entry in enumerate(value)]


def broadcast(frames: Sequence[PoseFrame], count: int, what: str = "poses") -> list[PoseFrame]:
    """Repeat a single frame `count` times; any other length must equal `count`."""
    if len(frames) == count:
        return list(frames)
    if len(frames) == 1:
        return list(frames) * count
    raise ValueError(f"{what}: {len(frames)} frames do not match a batch of {count} images (use 1 frame or {count})")


def frames_for_images(value: Any, count: int, width: int, height: int, what: str = "pose") -> list[PoseFrame]:
    """POSE_KEYPOINT for a batch of `count` images of width x height: parsed (canvas defaults to the image
    size), a single frame broadcast, and every frame stretched onto the image size when its canvas differs
    (normalised coordinates are relative to the canvas, so the canvas is the image the pose belongs to)."""
    frames = broadcast(frames_from_pose_keypoint(value, (width, height)), count, what)
    return [f if (f.width, f.height) == (width, height) else f.scaled_to(width, height) for f in frames]


# ----------------------------------------------------------------------------------------------- files
def load_openpose_json(path: str | os.PathLike, default_size: tuple[int, int] | None = None) -> list[PoseFrame]:
    """An OpenPose JSON file (one frame dict, or a list of them) -> frames. Errors name the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise PoseFormatError(f"{path}: not valid JSON ({err})") from err
    try:
        return frames_from_pose_keypoint(data, default_size)
    except PoseFormatError as err:
        raise PoseFormatError(f"{path}: {err}") from err


def save_openpose_json(frames: Iterable[PoseFrame], path: str | os.PathLike, real_scores: bool = False) -> str:
    """Write frames as OpenPose JSON: a single dict for one frame (what editors open), else a list."""
    value = pose_keypoint_from_frames(list(frames), real_scores)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value[0] if len(value) == 1 else value, handle, indent=4)
    return str(path)
