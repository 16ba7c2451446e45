"""POSE_KEYPOINT values and OpenPose JSON files as editors and other packs make them (issue #10).

Bad values give `PoseFormatError` naming the input or file, the place and the fix; odd but valid ones load.
Property-based tests feed random JSON text, bytes and values: only the pack's error, never a hang."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posetransfer.errors import PoseTransferError
from posetransfer.pose.formats import (COORDINATE_RANGE, MAX_CANVAS_SIDE, MAX_JSON_BYTES, MAX_JSON_DEPTH,
                                       PoseFormatError, frames_from_pose_keypoint, load_openpose_json,
                                       pose_keypoint_from_frames, require_people)

from .fixtures import aux_fixture, present_points

# POSETRANSFER_FUZZ_EXAMPLES raises the count for a longer hunt; the suite's default keeps each test to seconds.
EXAMPLES = int(os.environ.get("POSETRANSFER_FUZZ_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=2000, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)


def _frame(body, width=64, height=48, **parts):
    return {"people": [{"pose_keypoints_2d": body, **parts}], "canvas_width": width, "canvas_height": height}


def _body(x=10.0, y=20.0, c=1.0):
    return [x, y, c] * 18


# ----------------------------------------------------------------------------------------- symptom 5
def test_absurd_coordinates_are_refused_naming_the_point():
    body = _body()
    body[3 * 4: 3 * 4 + 2] = [1e9, 5.0]
    with pytest.raises(PoseFormatError, match=r"POSE_KEYPOINT\[0\].people\[0\].pose_keypoints_2d: point 4 is at "
                                              rf"\(1e\+09, 5\) px, more than {COORDINATE_RANGE} canvases \(64 x 48\)"):
        frames_from_pose_keypoint([_frame(body)])
    hand = [-1e9, 3.0, 0.9] * 21
    with pytest.raises(PoseFormatError, match="hand_left_keypoints_2d: point 0"):
        frames_from_pose_keypoint(_frame(_body(), hand_left_keypoints_2d=hand))


def test_generous_range_and_missing_points_far_away_still_load():
    body = _body()
    body[0:3] = [-5 * 64.0, 9 * 48.0, 1.0]  # well off the canvas, within the range
    body[3:6] = [1e12, 1e12, 0.0]  # a missing point: its coordinates are not used
    person = frames_from_pose_keypoint(_frame(body))[0].people[0]
    assert person.body[0].tolist() == [-320.0, 432.0, 1.0] and person.body[1].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("width, height", [(MAX_CANVAS_SIDE + 1, 10), (10, 1e9), (0.4, 10), (-3, 5)])
def test_canvas_sizes_outside_what_comfyui_makes_are_refused(width, height):
    with pytest.raises(PoseFormatError, match=rf"canvas size .* is outside 1 \.\. {MAX_CANVAS_SIDE} px"):
        frames_from_pose_keypoint(_frame(_body(), width, height))


def test_numbers_from_other_packs_numpy_scalars_arrays_and_tuples_load():
    body = np.array(_body(), dtype=np.float32)
    frames = frames_from_pose_keypoint(_frame(body, np.int64(64), np.int32(48), face_keypoints_2d=tuple([1.0, 2.0, 1.0] * 70)))
    assert frames[0].people[0].body[0].tolist() == [10.0, 20.0, 1.0] and frames[0].people[0].face.shape == (70, 3)


@pytest.mark.parametrize("value", [10 ** 5000, float("nan"), float("inf"), True, "1", None, [1.0]],
                         ids=["5000_digits", "nan", "inf", "bool", "str", "none", "list"])
def test_non_numbers_and_huge_integers_are_refused(value):
    body = _body()
    body[0] = value
    with pytest.raises(PoseFormatError, match="pose_keypoints_2d: expected finite numbers"):
        frames_from_pose_keypoint(_frame(body))


# ----------------------------------------------------------------------------------------- symptom 9
@pytest.mark.parametrize("people", [[], None, [{"pose_keypoints_2d": _body(c=0.0)}], [{"pose_keypoints_2d": None}]])
def test_frames_without_a_visible_person_are_refused_where_one_is_needed(people):
    frames = frames_from_pose_keypoint([_frame(_body()), {"people": people, "canvas_width": 8, "canvas_height": 8}])
    with pytest.raises(PoseFormatError, match="target_pose_keypoint: frame 1 holds .*a person is needed"):
        require_people(frames, "target_pose_keypoint")
    assert require_people(frames[:1]) == frames[:1]


# ----------------------------------------------------------------------------------------- symptom 10
def test_deeply_nested_json_is_refused_without_recursion(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 10000 + "]" * 10000)
    with pytest.raises(PoseFormatError, match=rf"deep.json: JSON nested 10000 levels deep, over the limit of "
                                              rf"{MAX_JSON_DEPTH}"):
        load_openpose_json(path)


def test_a_5000_digit_integer_is_refused(tmp_path):
    path = tmp_path / "digits.json"
    path.write_text('{"people": [], "canvas_width": ' + "9" * 5000 + ', "canvas_height": 5}')
    with pytest.raises(PoseFormatError, match="digits.json: holds a 5000-digit integer"):
        load_openpose_json(path)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_unicode_encodings_windows_tools_write_load(tmp_path, encoding):
    path = tmp_path / "pose.json"
    path.write_bytes(json.dumps(aux_fixture(), ensure_ascii=False).encode(encoding))
    assert pose_keypoint_from_frames(load_openpose_json(path)) == aux_fixture()


@pytest.mark.parametrize("data, message", [
    ('{"people": [], "name": "caf\xe9", "canvas_width": 4, "canvas_height": 4}'.encode("latin-1"),
     r"not UTF-8 text: byte 0xe9 at offset 27 .*save it as UTF-8"),
    (bytes(range(256)) * 4, "not (UTF-8 text|valid JSON)"),
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "not (UTF-8 text|valid JSON)"),
    (b"", "the file is empty"),
    (b"  \n", "the file is empty"),
])
def test_other_encodings_and_binary_files_are_named(tmp_path, data, message):
    path = tmp_path / "pose.json"
    path.write_bytes(data)
    with pytest.raises(PoseFormatError, match=f"pose.json: {message}"):
        load_openpose_json(path)


def test_oversized_files_are_refused_before_reading(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(MAX_JSON_BYTES + 1)  # sparse: nothing is written or read
    with pytest.raises(PoseFormatError, match=rf"huge.json: {MAX_JSON_BYTES + 1} bytes is over the {MAX_JSON_BYTES}"):
        load_openpose_json(path)


def test_missing_and_unreadable_files_are_named(tmp_path):
    with pytest.raises(PoseFormatError, match="nope.json: cannot be read"):
        load_openpose_json(tmp_path / "nope.json")
    with pytest.raises(PoseFormatError, match="cannot be read"):
        load_openpose_json(tmp_path)


# ----------------------------------------------------------------------------------------- properties
_JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
_JSON = st.recursive(_JSON_LEAVES, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
    st.sampled_from(["people", "canvas_width", "canvas_height", "pose_keypoints_2d", "face_keypoints_2d",
                     "hand_left_keypoints_2d", "animals", "x"]), inner, max_size=5), max_leaves=60)
_COORD = st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-10 ** 30, max_value=10 ** 30)


def _accepted_frames_are_sane(frames):
    for frame in frames:
        assert 1 <= frame.width <= MAX_CANVAS_SIDE and 1 <= frame.height <= MAX_CANVAS_SIDE
        present = present_points(frame)
        assert (np.abs(present[:, 0]) <= COORDINATE_RANGE * frame.width).all()
        assert (np.abs(present[:, 1]) <= COORDINATE_RANGE * frame.height).all()


@SETTINGS
@given(_JSON)
def test_any_value_gives_frames_or_the_packs_error(value):
    try:
        frames = frames_from_pose_keypoint(value, default_size=(32, 32))
    except PoseTransferError:
        return
    _accepted_frames_are_sane(frames)


@SETTINGS
@given(st.lists(_COORD, min_size=54, max_size=54), st.integers(-5, 20000), st.integers(-5, 20000))
def test_any_body_numbers_give_sane_frames_or_the_packs_error(body, width, height):
    try:
        frames = frames_from_pose_keypoint(_frame(body, width, height))
    except PoseFormatError:
        return
    _accepted_frames_are_sane(frames)
    assert all(math.isfinite(float(v)) for v in body)  # a non-finite number was never accepted


@SETTINGS
@given(st.binary(max_size=400) | _JSON.map(lambda v: json.dumps(v).encode("utf-16")) |
       st.text(max_size=200).map(lambda t: t.encode("utf-8")))
def test_any_file_bytes_give_frames_or_the_packs_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("json") / "pose.json"
    path.write_bytes(data)
    try:
        frames = load_openpose_json(path, default_size=(16, 16))
    except PoseFormatError as error:
        assert str(path) in str(error)
        return
    _accepted_frames_are_sane(frames)


def test_scfm_and_prior_refuse_frames_whose_people_are_all_missing():
    from posetransfer.pose.conditions import pose_coordinates, scfm_body_points

    invisible = frames_from_pose_keypoint([_frame(_body(c=0.0))])[0]
    with pytest.raises(PoseFormatError, match="target_pose: no person with a visible body point"):
        scfm_body_points(invisible, "target_pose")
    with pytest.raises(PoseFormatError, match="target_pose: frame 0 has no person with visible keypoints"):
        pose_coordinates([invisible], name="target_pose")
    second_visible = frames_from_pose_keypoint([{"people": [{"pose_keypoints_2d": _body(c=0.0)},
                                                            {"pose_keypoints_2d": _body(x=3.0)}],
                                                 "canvas_width": 64, "canvas_height": 48}])[0]
    assert scfm_body_points(second_visible)[0].tolist() == [3.0, 20.0]
