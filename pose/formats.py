"""POSE_KEYPOINT values and OpenPose JSON files <-> `PoseFrame`.

POSE_KEYPOINT (the io_type comfyui_controlnet_aux and ComfyUI core exchange) is a list with one dict per image:
``{"people": [{"pose_keypoints_2d": [x0,y0,c0,...], "face_keypoints_2d": ..., "hand_left_keypoints_2d": ...,
"hand_right_keypoints_2d": ...}], "canvas_width": W, "canvas_height": H}`` with flat lists in absolute pixels.
Two schemas are written (`SCHEMAS`):
- "controlnet_aux" (default): c = 1.0 for present points and 0,0,0 for missing ones (or the real scores on
  request), `null` for absent face/hands, feet only when present (the DWPose Extract node drops them in this
  schema, so its output is byte for byte comfyui_controlnet_aux's).
- "core": as ComfyUI core's SDPose nodes write it (comfy_extras/nodes_sdpose.py): every person has all five
  parts as full lists (`foot_keypoints_2d` 6 points, face 70 = 68 landmarks + right and left eye), real
  scores, neck score min(shoulders), missing points 0,0,0.
We read both, pixel or normalised (all within [0,1]) parts, `null` parts, missing keys, extra keys (kept),
and refuse animal-only frames with a clear message. A point is present when its confidence is at least
`VISIBILITY_THRESHOLD` (0.3, the threshold of DWPose, core's drawer and controlnet_aux) and it is not (0,0):
real-score producers (core, CMU OpenPose) write low-confidence guesses that must not be drawn.

Which hand is which: `hand_left_keypoints_2d` is the person's LEFT hand, the one attached to the left wrist
(OpenPose body point 7), as in CMU OpenPose and comfyui_controlnet_aux. That is COCO-WholeBody points 91-111
(92-112 after the neck is inserted): mmpose's COCO-WholeBody definition names point 91 'left_hand_root' and
links it to 'left_wrist'. Core's SDPose writes those points under `hand_right_keypoints_2d` (its docstring:
"92-112 right hand"), i.e. the other way round; its drawer draws both hands alike, so nothing shows there. On
reading, a hand whose root lies on the other side's wrist is moved to that side (`_hands_by_wrist`), so core
values arrive with the standard labels; we always write the standard labels.

Values come from editors and other packs, so everything is checked at this boundary (issue #10): numbers must be
finite, a canvas at most `MAX_CANVAS_SIDE`, present points within `COORDINATE_RANGE` canvases (renderers and
PCDM Inpaint work in proportion to the drawn extent), and JSON files at most `MAX_JSON_BYTES`, nested at most
`MAX_JSON_DEPTH`, in UTF-8/16/32.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import re
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import PoseTransferError
from .keypoints import (BODY_POINTS, FACE_POINTS, FOOT_POINTS, HAND_POINTS, VISIBILITY_THRESHOLD, Person, PoseFrame,
                        missing_points)

# JSON key -> (Person attribute, points)
PART_KEYS = {
    "pose_keypoints_2d": ("body", BODY_POINTS),
    "face_keypoints_2d": ("face", FACE_POINTS),
    "hand_left_keypoints_2d": ("left_hand", HAND_POINTS),
    "hand_right_keypoints_2d": ("right_hand", HAND_POINTS),
    "foot_keypoints_2d": ("feet", FOOT_POINTS),
}
_FRAME_KEYS = ("people", "canvas_width", "canvas_height")
MAX_CANVAS_SIDE = 16384  # ComfyUI's MAX_RESOLUTION: no image of a workflow is larger
COORDINATE_RANGE = 10  # a present point lies within 10 canvas widths/heights of the origin (generous for editors)
MAX_JSON_BYTES = 64 * 1024 * 1024  # ~10,000 frames of whole-body poses
MAX_JSON_DEPTH = 32  # a POSE_KEYPOINT file nests 6 deep; extra keys get some room
MAX_INT_DIGITS = 20  # JSON integers beyond int64 are not coordinates (and 5000 digits would stall the parser)
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
SCHEMAS = ("controlnet_aux", "core")
# core's key order (nodes_sdpose._to_openpose_frames)
_CORE_KEYS = ("pose_keypoints_2d", "foot_keypoints_2d", "face_keypoints_2d", "hand_right_keypoints_2d",
              "hand_left_keypoints_2d")
L_WRIST, R_WRIST, R_SHOULDER, L_SHOULDER, NECK = 7, 4, 2, 5, 1


class PoseFormatError(PoseTransferError):
    """A POSE_KEYPOINT value or OpenPose JSON file that cannot be read; the message says what and where."""


# ----------------------------------------------------------------------------------------------- writing
def _flat(part: np.ndarray | None, real_scores: bool) -> list[float] | None:
    if part is None:
        return None
    part = np.asarray(part, dtype=np.float64)
    present = part[:, 2] > 0  # absent (score 0 or NaN) points are written 0, 0, 0
    out = np.zeros((len(part), 3))
    out[present, :2] = part[present, :2]
    out[present, 2] = part[present, 2] if real_scores else 1.0
    return out.ravel().tolist()


def _core_person(person: Person) -> dict:
    body = person.body.copy()
    if body[NECK, 2] > 0:  # core scores the neck min(shoulders), where DWPose ports write a binary 1
        body[NECK, 2] = min(body[R_SHOULDER, 2], body[L_SHOULDER, 2]) or body[NECK, 2]
    parts = {"pose_keypoints_2d": body, "foot_keypoints_2d": person.feet, "face_keypoints_2d": person.face,
             "hand_right_keypoints_2d": person.right_hand, "hand_left_keypoints_2d": person.left_hand}
    counts = {key: count for key, (_, count) in PART_KEYS.items()}
    entry = dict(person.extra)
    for key in _CORE_KEYS:
        part = parts[key]
        entry[key] = _flat(missing_points(counts[key]) if part is None else part, real_scores=True)
    return entry


def frame_to_dict(frame: PoseFrame, real_scores: bool = False, schema: str = "controlnet_aux") -> dict:
    """One POSE_KEYPOINT entry in `schema` ("controlnet_aux": the peer's four parts, feet only when the frame
    has them (read from a file); "core": every part of every person, real scores)."""
    if schema not in SCHEMAS:
        raise ValueError(f"schema must be one of {SCHEMAS}, got {schema!r}")
    people = []
    for person in frame.people:
        if schema == "core":
            people.append(_core_person(person))
            continue
        entry = dict(person.extra)
        for key, (attr, _) in PART_KEYS.items():
            part = getattr(person, attr)
            if attr == "feet" and part is None:
                continue
            entry[key] = _flat(part, real_scores)
        people.append(entry)
    if schema == "core":  # core writes the canvas size first
        return {**frame.extra, "canvas_width": int(frame.width), "canvas_height": int(frame.height), "people": people}
    # the peer's key order (encode_poses_as_dict), so the JSON text is byte for byte the same
    return {**frame.extra, "people": people, "canvas_height": int(frame.height), "canvas_width": int(frame.width)}


def pose_keypoint_from_frames(frames: Sequence[PoseFrame], real_scores: bool = False,
                              schema: str = "controlnet_aux") -> list[dict]:
    """`PoseFrame`s -> a POSE_KEYPOINT value (list of dicts, one per image)."""
    return [frame_to_dict(frame, real_scores, schema) for frame in frames]


def openpose_json(value: list[dict]) -> str:
    """The UI string comfyui_controlnet_aux's DWPose node returns (`ui={"openpose_json": [...]}`), which
    pose editors read: the whole POSE_KEYPOINT list as JSON, indent 4, character for character
    `json.dumps(value, indent=4)`."""
    return _indented(value, "")


def _indented(value: Any, indent: str) -> str:
    """`json.dumps(value, indent=4)` at nesting `indent`. Indenting makes `json` fall back to its pure-Python
    encoder (4 ms a frame of keypoints); lists of numbers, nearly all of the text, go through its C encoder
    here and only get their line breaks added."""
    inner = indent + "    "
    if isinstance(value, dict) and value:
        items = (f"{json.dumps(str(key))}: {_indented(item, inner)}" for key, item in value.items())
        return "{\n" + inner + (",\n" + inner).join(items) + "\n" + indent + "}"
    if isinstance(value, (list, tuple)) and value:
        flat = None if isinstance(value[0], (dict, list, tuple, str)) else json.dumps(value)
        if flat is None or '"' in flat or "{" in flat or "[" in flat[1:]:  # strings or containers: one by one
            items = [_indented(item, inner) for item in value]
        else:  # numbers, booleans and nulls hold no ", " of their own to split on
            items = flat[1:-1].split(", ")
        return "[\n" + inner + (",\n" + inner).join(items) + "\n" + indent + "]"
    return json.dumps(value)


# ----------------------------------------------------------------------------------------------- reading
def _number(value: Any, where: str) -> float:
    """A finite real (Python or numpy; not a bool) as float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise PoseFormatError(f"{where}: expected finite numbers, found {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise PoseFormatError(f"{where}: expected finite numbers, found {_shown(value)}")
    return number


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 64 else f"a {value.bit_length()}-bit integer"
    return text if len(text) <= 60 else text[:57] + "..."


def _part(values: Any, count: int, where: str) -> np.ndarray | None:
    """A flat (or nested-triple) list -> (count,3) with missing points zeroed; None for null/empty."""
    if isinstance(values, (np.ndarray, tuple)):  # other packs hand over arrays or tuples
        values = np.asarray(values).tolist() if isinstance(values, np.ndarray) else list(values)
    if values is None or (isinstance(values, list) and len(values) == 0):
        return None
    if not isinstance(values, list):
        raise PoseFormatError(f"{where}: expected a list of numbers [x0,y0,c0,...] or null, found {type(values).__name__}")
    if all(isinstance(v, (list, tuple)) for v in values):  # a few editors write [[x,y,c],...]
        values = [c for triple in values for c in triple]
    if len(values) % 3:
        raise PoseFormatError(f"{where}: {len(values)} numbers is not a multiple of 3 (x, y, confidence)")
    if len(values) != 3 * count:
        raise PoseFormatError(f"{where}: expected {count} points ({3 * count} numbers), found {len(values) // 3}")
    arr = np.array([_number(v, where) for v in values], dtype=np.float64).reshape(-1, 3)
    missing = (arr[:, 2] < VISIBILITY_THRESHOLD) | ((arr[:, 0] == 0) & (arr[:, 1] == 0))
    arr[missing] = 0.0
    return arr


def _check_range(part: np.ndarray | None, width: int, height: int, where: str) -> np.ndarray | None:
    """Present points (in pixels) must lie within `COORDINATE_RANGE` canvases: 1e9 px would make the renderers
    and PCDM Inpaint work for minutes on what is an editor's or exporter's error."""
    if part is None:
        return None
    present = part[:, 2] > 0
    limit = COORDINATE_RANGE * np.array([width, height], dtype=np.float64)
    outside = present & np.any(np.abs(part[:, :2]) > limit, axis=1)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        x, y = part[index, :2]
        raise PoseFormatError(
            f"{where}: point {index} is at ({x:.6g}, {y:.6g}) px, more than {COORDINATE_RANGE} canvases "
            f"({width} x {height}) from the origin. Fix the pose in its editor, or set its confidence to 0 to mark "
            "it missing.")
    return part


def _root_distance(hand: np.ndarray | None, body: np.ndarray, wrist: int) -> float | None:
    if hand is None or hand[0, 2] <= 0 or body[wrist, 2] <= 0:
        return None
    return float(np.hypot(*(hand[0, :2] - body[wrist, :2])))


def _hands_by_wrist(body: np.ndarray, left: np.ndarray | None, right: np.ndarray | None
                    ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(left, right) hands, swapped when the labels contradict the wrists: a hand's root point (0) is its
    wrist, so a "left" hand whose root lies on the right wrist is the right hand (core's SDPose labelling).
    Swaps only on clear evidence: every available root is at least twice as near the other side's wrist."""
    votes = []
    for hand, own, other in ((left, L_WRIST, R_WRIST), (right, R_WRIST, L_WRIST)):
        near_own, near_other = _root_distance(hand, body, own), _root_distance(hand, body, other)
        if near_own is not None and near_other is not None:
            votes.append(near_other * 2 <= near_own)
    return (right, left) if votes and all(votes) else (left, right)


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
    if round(width) < 1 or round(height) < 1 or max(width, height) > MAX_CANVAS_SIDE:
        raise PoseFormatError(f"{where}: canvas size {width:g} x {height:g} is outside 1 .. {MAX_CANVAS_SIDE} px per "
                              "side (the largest image ComfyUI makes). Fix canvas_width/canvas_height.")
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
        parts = {attr: _check_range(_denormalise(_part(raw.get(key), count, f"{where}.people[{i}].{key}"), width, height),
                                    width, height, f"{where}.people[{i}].{key}")
                 for key, (attr, count) in PART_KEYS.items()}
        if parts["body"] is None:
            parts["body"] = missing_points(BODY_POINTS)
        for attr in ("left_hand", "right_hand", "face", "feet"):  # core writes zero lists for absent parts
            if parts[attr] is not None and not (parts[attr][:, 2] > 0).any():
                parts[attr] = None
        parts["left_hand"], parts["right_hand"] = _hands_by_wrist(parts["body"], parts["left_hand"],
                                                                  parts["right_hand"])
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


def require_people(frames: Sequence[PoseFrame], what: str = "pose") -> list[PoseFrame]:
    """`frames` unchanged when each holds a person with a visible point; else the error names the frame."""
    for index, frame in enumerate(frames):
        if not any(person.bounds() is not None for person in frame.people):
            found = "no people" if not frame.people else f"{len(frame.people)} people, none with a visible point"
            raise PoseFormatError(
                f"{what}: frame {index} holds {found} (every confidence 0 counts as missing); a person is needed in "
                "every pose. Check the pose extraction for that image, or leave the frame out.")
    return list(frames)


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
        size = os.path.getsize(path)
        if size > MAX_JSON_BYTES:
            raise PoseFormatError(f"{size} bytes is over the {MAX_JSON_BYTES} bytes a pose file may have; split the "
                                  "sequence into several files")
        with open(path, "rb") as handle:
            data = parse_json(handle.read())
        return frames_from_pose_keypoint(data, default_size)
    except PoseFormatError as err:
        raise PoseFormatError(f"{path}: {err}") from err
    except OSError as err:
        raise PoseFormatError(f"{path}: cannot be read ({type(err).__name__}: {err.strerror or err})") from err


def parse_json(data: bytes) -> Any:
    """JSON bytes (UTF-8, or UTF-16/32 with or without a byte-order mark, as Windows tools write) -> value,
    within `MAX_JSON_DEPTH` nesting and `MAX_INT_DIGITS`-digit integers."""
    if not data.strip():
        raise PoseFormatError("the file is empty; expected OpenPose JSON")
    try:
        text = data.decode(json.detect_encoding(data))
    except UnicodeDecodeError as err:
        raise PoseFormatError(f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} cannot be "
                              "decoded. It is binary or in another encoding (e.g. Latin-1); save it as UTF-8 JSON") from None
    text = text.lstrip("\ufeff")
    depth = _nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise PoseFormatError(f"JSON nested {depth} levels deep, over the limit of {MAX_JSON_DEPTH}; a pose file "
                              "nests 6 deep. This is not an OpenPose file")
    try:
        return json.loads(text, parse_int=_bounded_int)
    except PoseFormatError:
        raise
    except (ValueError, RecursionError) as err:  # JSONDecodeError; Python's own digit limit; deep nesting
        raise PoseFormatError(f"not valid JSON ({err})") from None


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise PoseFormatError(f"holds a {len(digits.lstrip('-'))}-digit integer, over the {MAX_INT_DIGITS} digits a "
                              "coordinate or size can need")
    return int(digits)


def _nesting_depth(text: str) -> int:
    """Deepest [ / { nesting outside strings, without recursion (a 10,000-deep file must not crash the check)."""
    structure = np.frombuffer(_JSON_STRING.sub('""', text).encode("utf-8", "replace"), dtype=np.uint8)
    steps = np.zeros(len(structure), dtype=np.int8)
    steps[(structure == ord("[")) | (structure == ord("{"))] = 1
    steps[(structure == ord("]")) | (structure == ord("}"))] = -1
    nonzero = steps[steps != 0].astype(np.int64)
    return int(np.cumsum(nonzero).max()) if len(nonzero) else 0


def save_openpose_json(frames: Iterable[PoseFrame], path: str | os.PathLike, real_scores: bool = False,
                       schema: str = "controlnet_aux") -> str:
    """Write frames as OpenPose JSON: a single dict for one frame (what editors open), else a list."""
    value = pose_keypoint_from_frames(list(frames), real_scores, schema)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value[0] if len(value) == 1 else value, handle, indent=4)
    return str(path)
