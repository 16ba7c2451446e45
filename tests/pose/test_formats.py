"""POSE_KEYPOINT / OpenPose JSON <-> PoseFrame, and COCO-WholeBody-133 -> OpenPose-18."""
import json

import numpy as np
import pytest

from posetransfer.pose.formats import (SCHEMAS, PoseFormatError, broadcast, frames_for_images,
                                       frames_from_pose_keypoint, load_openpose_json, openpose_json,
                                       pose_keypoint_from_frames, save_openpose_json)
from posetransfer.pose.keypoints import Person, PoseFrame, people_from_wholebody, select_people

from .fixtures import aux_fixture


def test_aux_form_round_trips_exactly():
    value = aux_fixture()
    frames = frames_from_pose_keypoint(value)
    assert frames[0].people[0].right_hand is None and frames[0].people[0].body[16, 2] == 0
    assert pose_keypoint_from_frames(frames) == value


def test_real_scores_and_extra_keys_round_trip():
    value = [{"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": [10.5, 20.25, 0.7] * 18,
                                          "foot_keypoints_2d": [1.0, 2.0, 0.5] * 6}],
              "canvas_width": 100, "canvas_height": 50}]
    frames = frames_from_pose_keypoint(value)
    assert pose_keypoint_from_frames(frames, real_scores=True) == [
        {**value[0], "people": [{**value[0]["people"][0], "face_keypoints_2d": None,
                                 "hand_left_keypoints_2d": None, "hand_right_keypoints_2d": None}]}]
    assert pose_keypoint_from_frames(frames)[0]["people"][0]["pose_keypoints_2d"][:3] == [10.5, 20.25, 1.0]


def test_normalised_parts_become_pixels_and_missing_keys_are_tolerated():
    value = {"people": [{"pose_keypoints_2d": [0.5, 0.25, 1.0] + [0.0] * 51,
                         "hand_left_keypoints_2d": [100.0, 20.0, 1.0] * 21}],  # pixel hand beside a normalised body
             "canvas_width": 200, "canvas_height": 400}
    person = frames_from_pose_keypoint(value)[0].people[0]
    np.testing.assert_array_equal(person.body[0], [100.0, 100.0, 1.0])
    np.testing.assert_array_equal(person.left_hand[0], [100.0, 20.0, 1.0])
    assert person.face is None and person.right_hand is None


@pytest.mark.parametrize("value, message", [
    ([], "empty"),
    ([{"animals": [[1, 2, 1]], "canvas_width": 5, "canvas_height": 5}], "animal"),
    ([{"people": [{"pose_keypoints_2d": [1, 2]}], "canvas_width": 5, "canvas_height": 5}], "multiple of 3"),
    ([{"people": [{"pose_keypoints_2d": [1, 2, 1]}], "canvas_width": 5, "canvas_height": 5}], "expected 18 points"),
    ([{"people": [{"pose_keypoints_2d": ["a", 2, 1] * 18}], "canvas_width": 5, "canvas_height": 5}], "finite"),
    ([{"people": []}], "canvas_width"),
    ("nope", "list"),
])
def test_malformed_values_raise_clear_errors(value, message):
    with pytest.raises(PoseFormatError, match=message):
        frames_from_pose_keypoint(value)


def test_broadcast():
    frame = PoseFrame(4, 4)
    assert broadcast([frame], 3) == [frame] * 3
    with pytest.raises(ValueError, match="2 frames do not match a batch of 3"):
        broadcast([frame, frame], 3)


def test_json_files_round_trip_and_errors(tmp_path):
    frames = frames_from_pose_keypoint(aux_fixture() * 2)
    path = save_openpose_json(frames, tmp_path / "sub" / "poses.json")
    assert pose_keypoint_from_frames(load_openpose_json(path)) == aux_fixture() * 2
    single = save_openpose_json(frames[:1], tmp_path / "one.json")
    assert isinstance(json.load(open(single)), dict)
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(PoseFormatError, match="bad.json: not valid JSON"):
        load_openpose_json(bad)


def test_wholebody_to_openpose_mapping_and_visibility():
    kp = np.arange(133 * 2, dtype=np.float64).reshape(1, 133, 2)
    scores = np.full((1, 133), 0.9)
    scores[0, 6] = 0.3  # right shoulder exactly at the threshold: kept, but the neck needs both > 0.3
    scores[0, 91:112] = 0.1  # whole left hand invisible -> None
    person = people_from_wholebody(kp, scores)[0]
    np.testing.assert_array_equal(person.body[2, :2], kp[0, 6])  # R shoulder <- COCO 6
    np.testing.assert_array_equal(person.body[14, :2], kp[0, 2])  # R eye <- COCO 2
    np.testing.assert_array_equal(person.body[1], [0.0, 0.0, 0.0])  # neck dropped: score is binary
    assert person.body[2, 2] == 0.3
    scores[0, 6] = 0.31
    neck = people_from_wholebody(kp, scores)[0].body[1]
    np.testing.assert_array_equal(neck, [*kp[0, [5, 6]].mean(0), 1.0])
    assert person.left_hand is None
    np.testing.assert_array_equal(person.right_hand[:, :2], kp[0, 112:133])
    np.testing.assert_array_equal(person.face[:68, :2], kp[0, 23:91])
    np.testing.assert_array_equal(person.face[68:], person.body[[14, 15]])


def test_person_selection():
    def person(x0, size):
        body = np.zeros((18, 3))
        body[0] = [x0, 10, 1]
        body[1] = [x0 + size, 10 + size, 1]
        return Person(body=body)
    people = [person(50, 10), person(5, 3), person(80, 40), Person()]
    assert select_people(people, "largest") == [people[2]]
    assert select_people(people, "left-most") == [people[1]]
    assert select_people(people, "index", -1) == [people[3]]
    assert select_people(people, "all") == people
    with pytest.raises(IndexError, match="4 people"):
        select_people(people, "index", 4)


def test_frames_for_images_broadcasts_and_rescales():
    value = [{"people": [{"pose_keypoints_2d": [10.0, 20.0, 1.0] + [0.0] * 51}], "canvas_width": 100,
              "canvas_height": 50}]
    frames = frames_for_images(value, 3, 200, 200)
    assert len(frames) == 3 and (frames[2].width, frames[2].height) == (200, 200)
    np.testing.assert_array_equal(frames[0].people[0].body[0], [20.0, 80.0, 1.0])
    with pytest.raises(ValueError, match="target pose: 2 frames"):
        frames_for_images(value * 2, 3, 200, 200, "target pose")


# ------------------------------------------------------------------ core ComfyUI's schema and the hands
def _hand_case_models(tmp_path):
    """A planted pose model whose COCO-WholeBody left wrist (9) and point 91 share one crop point, and right
    wrist (10) and point 112 another: the anatomy the COCO-WholeBody definition gives ('left_hand_root' is
    linked to 'left_wrist')."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("pose_planted", Path(__file__).with_name("planted_models.py"))
    planted = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(planted)
    rng = np.random.default_rng(8)
    px, py = rng.integers(20, 500, 133), rng.integers(20, 700, 133)
    px[[9, 91]], py[[9, 91]] = 400, 300  # left wrist = left hand root (image right for a person facing us)
    px[[10, 112]], py[[10, 112]] = 100, 310  # right wrist = right hand root
    sx, sy = np.zeros((133, 576)), np.zeros((133, 768))
    sx[np.arange(133), px], sy[np.arange(133), py] = 0.9, 0.9
    return planted.pose_model(tmp_path / "pose.onnx", sx, sy)


def test_which_hand_is_which_settled_on_a_constructed_case(tmp_path):
    from posetransfer.pose.dwpose import load_dwpose

    dw = load_dwpose(_hand_case_models(tmp_path), None)
    person = dw(np.zeros((384, 288, 3), np.uint8)).people[0]
    np.testing.assert_array_equal(person.left_hand[0, :2], person.body[7, :2])  # OpenPose 7 = left wrist
    np.testing.assert_array_equal(person.right_hand[0, :2], person.body[4, :2])  # OpenPose 4 = right wrist
    for schema in SCHEMAS:
        value = pose_keypoint_from_frames([PoseFrame(288, 384, [person])], schema=schema)[0]["people"][0]
        assert value["hand_left_keypoints_2d"][:2] == value["pose_keypoints_2d"][21:23]
    # core's SDPose writes COCO-WholeBody 91-111 as hand_right: read back, the hands follow their wrists
    core = pose_keypoint_from_frames([PoseFrame(288, 384, [person])], schema="core")
    people = core[0]["people"]
    people[0]["hand_left_keypoints_2d"], people[0]["hand_right_keypoints_2d"] = (
        people[0]["hand_right_keypoints_2d"], people[0]["hand_left_keypoints_2d"])
    read = frames_from_pose_keypoint(core)[0].people[0]
    np.testing.assert_array_equal(read.left_hand[:, :2], person.left_hand[:, :2])
    np.testing.assert_array_equal(read.right_hand[:, :2], person.right_hand[:, :2])


def test_core_schema_is_written_as_core_writes_it():
    body = np.zeros((18, 3))
    body[[1, 2, 5]] = [[50, 40, 1.0], [40, 40, 0.8], [60, 40, 0.6]]  # neck, shoulders
    person = Person(body=body, left_hand=np.tile([10.0, 20.0, 0.7], (21, 1)),
                    feet=np.tile([5.0, 90.0, 0.5], (6, 1)))
    value = pose_keypoint_from_frames([PoseFrame(100, 120, [person])], schema="core")
    frame = value[0]
    assert list(frame) == ["canvas_width", "canvas_height", "people"]
    entry = frame["people"][0]
    assert list(entry) == ["pose_keypoints_2d", "foot_keypoints_2d", "face_keypoints_2d",
                           "hand_right_keypoints_2d", "hand_left_keypoints_2d"]
    lengths = {k: len(v) for k, v in entry.items()}
    assert lengths == {"pose_keypoints_2d": 54, "foot_keypoints_2d": 18, "face_keypoints_2d": 210,
                       "hand_right_keypoints_2d": 63, "hand_left_keypoints_2d": 63}
    assert entry["pose_keypoints_2d"][3:6] == [50.0, 40.0, 0.6]  # neck scored min(shoulders), as core
    assert entry["hand_left_keypoints_2d"][:3] == [10.0, 20.0, 0.7] and set(entry["face_keypoints_2d"]) == {0.0}
    read = frames_from_pose_keypoint(value)[0].people[0]
    np.testing.assert_array_equal(read.feet, person.feet)
    np.testing.assert_array_equal(read.left_hand, person.left_hand)
    assert read.face is None and read.right_hand is None  # all-missing parts read as absent
    with pytest.raises(ValueError, match="schema"):
        pose_keypoint_from_frames([PoseFrame(100, 120, [person])], schema="sdpose")


def test_low_confidence_points_of_real_score_producers_are_missing():
    flat = [10.0, 10.0, 0.9] + [20.0, 20.0, 0.1] + [0.0] * 48
    person = frames_from_pose_keypoint([{"people": [{"pose_keypoints_2d": flat}], "canvas_width": 64,
                                         "canvas_height": 64}])[0].people[0]
    assert person.body[0, 2] == 0.9 and not person.body[1].any()


def test_openpose_json_string_is_the_peers():
    """`json.dumps(value, indent=4)` to the character, for real frames, both schemas, and odd JSON values a
    POSE_KEYPOINT from another pack might carry (strings with ", ", nested lists, nulls, NaN, empty parts)."""
    empty = pose_keypoint_from_frames([PoseFrame(10, 20, [])])
    real = aux_fixture() * 3
    core = pose_keypoint_from_frames(frames_from_pose_keypoint(aux_fixture()), real_scores=True, schema="core")
    odd = [{"people": [{"pose_keypoints_2d": [1, 2.5, -0.0, 1e300, float("nan"), True, None], "face": []}],
            "note": "a, b", "nested": [[1, [2, "x, y"]], [], {}], "mixed": [1, "two", None]}]
    for value in (empty, real, core, odd, [], [[]]):
        text = openpose_json(value)
        assert text == json.dumps(value, indent=4)
