"""Property-based tests of DWPose post-processing (issue #10): junk boxes and raw model outputs from the wild.

Boxes with NaN, infinities, +-1e8 px, zero or negative sides, thousands of them; detector rows and SimCC vectors
with random values of the declared shapes (and of other shapes at run time). Only the pack's own errors, within a
deadline; whatever is returned is finite, inside the image grown by the documented margin, capped, and readable
by the pack's own POSE_KEYPOINT reader.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from posetransfer.errors import PoseTransferError
from posetransfer.pose import detector as det
from posetransfer.pose import topdown
from posetransfer.pose.dwpose import COCO_CLASSES, NO_PERSON_MODES, WHOLEBODY_POINTS, DWPose, ModelSlotError, OnnxModel
from posetransfer.pose.formats import frames_from_pose_keypoint, pose_keypoint_from_frames
from posetransfer.pose.keypoints import VISIBILITY_THRESHOLD

from .fixtures import present_points

# POSETRANSFER_FUZZ_EXAMPLES raises the count for a longer hunt; the suite's default keeps each test to seconds.
EXAMPLES = int(os.environ.get("POSETRANSFER_FUZZ_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=2000, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SPECIALS = np.array([np.nan, np.inf, -np.inf, 1e8, -1e8, 0.0, 1.0, -1.0], np.float32)

_FLOAT32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
_SIDE = st.integers(1, 2000)


def _junk(rng: np.random.Generator, shape: tuple[int, ...], scale: float, special: float) -> np.ndarray:
    """Gaussian values of `scale`, a fraction `special` of them replaced by NaN, infinities, +-1e8, 0, +-1."""
    values = (rng.standard_normal(shape) * scale).astype(np.float32)
    mask = rng.random(shape) < special
    values[mask] = rng.choice(SPECIALS, int(mask.sum()))
    return values


@st.composite
def _boxes_and_scores(draw) -> tuple[np.ndarray, np.ndarray]:
    """A few boxes of arbitrary float32 values, or up to thousands of generated ones, with person scores."""
    if draw(st.booleans()):
        count = draw(st.integers(0, 12))
        boxes = draw(hnp.arrays(np.float32, (count, 4), elements=_FLOAT32))
        person = draw(hnp.arrays(np.float32, (count,), elements=_FLOAT32))
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        count = draw(st.integers(0, 5000))
        corner = _junk(rng, (count, 2), draw(st.sampled_from([10.0, 500.0, 1e8])), draw(st.floats(0, 0.3)))
        size = _junk(rng, (count, 2), draw(st.sampled_from([1.0, 100.0, 1e8])), draw(st.floats(0, 0.3)))
        with np.errstate(invalid="ignore", over="ignore"):
            boxes = np.concatenate([corner, corner + size], axis=1)  # negative sizes give inverted boxes
        person = _junk(rng, (count,), 1.0, draw(st.floats(0, 0.3))) ** 2
    scores = np.zeros((len(boxes), COCO_CLASSES), np.float32)
    scores[:, 0] = person
    return boxes, scores


def _assert_boxes_usable(boxes: np.ndarray, image_hw: tuple[int, int]) -> None:
    height, width = image_hw
    assert boxes.dtype == np.float32 and boxes.shape[1:] == (4,) and np.isfinite(boxes).all()
    margin = det.BOX_MARGIN
    assert (boxes[:, [0, 2]] >= -width * margin).all() and (boxes[:, [0, 2]] <= width * (1 + margin)).all()
    assert (boxes[:, [1, 3]] >= -height * margin).all() and (boxes[:, [1, 3]] <= height * (1 + margin)).all()
    assert (boxes[:, 2] - boxes[:, 0] >= det.MIN_BOX_SIDE - 1e-3).all()
    assert (boxes[:, 3] - boxes[:, 1] >= det.MIN_BOX_SIDE - 1e-3).all()


@SETTINGS
@given(_boxes_and_scores(), _SIDE, _SIDE, st.integers(1, 80))
def test_selected_boxes_are_finite_clipped_capped_and_best_first(boxes_scores, height, width, limit):
    boxes, scores = boxes_scores
    kept, kept_scores = det.select_person_boxes(boxes, scores, (height, width), limit=limit)
    _assert_boxes_usable(kept, (height, width))
    assert len(kept) == len(kept_scores) <= limit
    assert np.isfinite(kept_scores).all() and (kept_scores > det.PERSON_THRESHOLD).all()
    assert (np.diff(kept_scores) <= 0).all()
    if len(boxes) <= 400:  # the early stop is exact: the first `limit` boxes of the whole result
        everyone, everyone_scores = det.select_person_boxes(boxes, scores, (height, width))
        np.testing.assert_array_equal(kept, everyone[:limit])
        np.testing.assert_array_equal(kept_scores, everyone_scores[:limit])


@st.composite
def _detector_rows(draw) -> tuple[tuple[int, int], np.ndarray, float]:
    """A YOLOX input size (multiples of 32, up to the released 640x640: 8400 anchors), junk rows for it, a ratio."""
    input_hw = (32 * draw(st.integers(1, 20)), 32 * draw(st.integers(1, 20)))
    anchors = len(det.anchor_grid(*input_hw)[0])
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    rows = _junk(rng, (anchors, 5 + COCO_CLASSES), draw(st.sampled_from([1.0, 10.0, 100.0])), draw(st.floats(0, 0.5)))
    rows[:, 4:] = np.abs(rows[:, 4:]) ** 0.5  # scores mostly in 0..1 as sigmoids give, some junk
    return input_hw, rows, draw(st.floats(1e-3, 1e3))


@SETTINGS
@given(_detector_rows(), _SIDE, _SIDE)
def test_any_detector_rows_decode_to_usable_boxes(rows_case, height, width):
    input_hw, rows, ratio = rows_case
    boxes, scores = det.decode_boxes(rows, input_hw, ratio)
    assert boxes.shape == (len(rows), 4) and scores.shape == (len(rows), COCO_CLASSES)
    kept, kept_scores = det.select_person_boxes(boxes, scores, (height, width), limit=65)
    _assert_boxes_usable(kept, (height, width))
    # decoding only the person candidates (what DWPose does) gives those rows exactly, and the same selection
    candidates = det.person_rows(rows)
    some_boxes, some_scores = det.decode_boxes(rows, input_hw, ratio, candidates)
    np.testing.assert_array_equal(some_boxes, boxes[candidates])
    np.testing.assert_array_equal(some_scores, scores[candidates])
    assert set(np.flatnonzero(scores[:, 0] > det.SCORE_THRESHOLD)) == set(candidates)
    same, same_scores = det.select_person_boxes(some_boxes, some_scores, (height, width), limit=65)
    np.testing.assert_array_equal(same, kept)
    np.testing.assert_array_equal(same_scores, kept_scores)


@SETTINGS
@given(hnp.arrays(np.float32, st.tuples(st.integers(0, 3), st.integers(1, 5), st.integers(1, 40)), elements=_FLOAT32),
       hnp.arrays(np.float32, st.tuples(st.just(1), st.just(1), st.integers(1, 40)), elements=_FLOAT32))
def test_simcc_decode_of_any_values(simcc_x, simcc_y_row):
    simcc_y = np.broadcast_to(simcc_y_row, (*simcc_x.shape[:2], simcc_y_row.shape[-1]))
    locs, scores = topdown.decode_simcc(simcc_x, simcc_y)
    assert locs.shape == (*simcc_x.shape[:2], 2) and scores.shape == simcc_x.shape[:2]
    assert np.isfinite(locs).all()
    bins = np.array([simcc_x.shape[-1], simcc_y.shape[-1]]) / topdown.SIMCC_SPLIT_RATIO
    assert ((locs >= 0) & (locs < bins) | (locs == -1 / topdown.SIMCC_SPLIT_RATIO)).all()
    # a NaN or +inf anywhere in a keypoint's vectors (or vectors all -inf) is flagged, never a score
    broken = ~(np.isfinite(simcc_x.max(-1)) & np.isfinite(simcc_y.max(-1)))
    np.testing.assert_array_equal(np.isnan(scores), broken)
    np.testing.assert_array_equal(scores[~broken], np.minimum(simcc_x.max(-1), simcc_y.max(-1))[~broken])


@SETTINGS
@given(_boxes_and_scores(), _SIDE, _SIDE, st.sampled_from([(32, 24), (256, 192), (384, 288)]))
def test_crops_of_selected_boxes_are_finite_network_inputs(boxes_scores, height, width, input_hw):
    boxes, scores = boxes_scores
    kept, _ = det.select_person_boxes(boxes, scores, (min(height, 400), min(width, 400)), limit=3)
    image = np.random.default_rng(0).integers(0, 256, (min(height, 400), min(width, 400), 3), dtype=np.uint8)
    input_h, input_w = input_hw
    for box in kept:
        crop = topdown.crop_for_box(box, input_w, input_h)
        assert np.isfinite(crop.center).all() and (crop.scale >= det.MIN_BOX_SIDE).all()
        assert np.isfinite(topdown.crop_matrix(crop, input_w, input_h)).all()
        pixels = topdown.crop_input(image, crop, input_w, input_h)
        assert pixels.shape == (3, input_h, input_w) and np.isfinite(pixels).all()


# ------------------------------------------------------------------------------------------- the whole path
POSE_HW = (32, 24)  # a small pose input keeps crops cheap; the code reads the size from the session
MAX_PEOPLE = 5


class _Session:
    """Stands in for an onnxruntime session: answers `run` with outputs made by `make(batch)`."""

    def __init__(self, make):
        self.make = make

    def run(self, wanted, feed):
        return self.make(len(next(iter(feed.values()))))


def _model(name: str, input_hw, batch, outputs: dict[str, list], make) -> OnnxModel:
    return OnnxModel(_Session(make), f"/models/{name}", "input", input_hw, batch, ["CPUExecutionProvider"],
                     list(outputs), list(outputs.values()))


@st.composite
def _pipeline_case(draw):
    """A DWPose over stand-in sessions whose outputs are junk of the declared shapes, or (rarely) of other shapes."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    det_hw = (32 * draw(st.integers(1, 6)), 32 * draw(st.integers(1, 6)))
    anchors = len(det.anchor_grid(*det_hw)[0])
    bins = (round(POSE_HW[1] * topdown.SIMCC_SPLIT_RATIO), round(POSE_HW[0] * topdown.SIMCC_SPLIT_RATIO))
    wrong = draw(st.sampled_from([None] * 6 + ["anchors", "columns", "points", "x-bins", "batch"]))
    det_scale, det_special = draw(st.sampled_from([1.0, 10.0, 100.0])), draw(st.floats(0, 0.3))
    pose_special = draw(st.sampled_from([0.0, 0.001, 0.05, 0.5]))
    grow = draw(st.sampled_from([-1, 1, 7]))

    def detector_rows(batch):
        shape = [batch, anchors + grow * (wrong == "anchors"), 5 + COCO_CLASSES + grow * (wrong == "columns")]
        rows = _junk(rng, tuple(shape), det_scale, det_special)
        rows[..., 4:] = np.abs(rows[..., 4:]) ** 0.5
        return [rows]

    def simcc(batch):
        count = max(0, batch + grow * (wrong == "batch"))
        points = WHOLEBODY_POINTS + grow * (wrong == "points")
        x = _junk(rng, (count, points, bins[0] + grow * (wrong == "x-bins")), 0.3, pose_special)
        y = _junk(rng, (count, points, bins[1]), 0.3, pose_special)
        return [np.abs(x), np.abs(y)]

    declared = {"simcc_x": ["batch", WHOLEBODY_POINTS, bins[0]], "simcc_y": ["batch", WHOLEBODY_POINTS, bins[1]]}
    pose = _model("pose.onnx", POSE_HW, draw(st.sampled_from([None, 1, 3])), declared, simcc)
    detector = None
    if draw(st.integers(0, 4)):
        detector = _model("detector.onnx", det_hw, draw(st.sampled_from([None, 1])),
                          {"output": ["batch", "anchors", 5 + COCO_CLASSES]}, detector_rows)
    images = [rng.integers(0, 256, (draw(st.integers(1, 120)), draw(st.integers(1, 120)), 3), dtype=np.uint8)
              for _ in range(draw(st.integers(1, 3)))]
    return DWPose(pose, detector, max_people=MAX_PEOPLE), images, draw(st.sampled_from(NO_PERSON_MODES)), wrong


class _Records(logging.Handler):
    """The warnings of the DWPose module while in use (a context manager: hypothesis reruns the test body)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.logger = logging.getLogger("posetransfer.pose.dwpose")

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self) -> "_Records":
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)


@SETTINGS
@given(case=_pipeline_case())
def test_any_model_outputs_give_sane_frames_or_the_packs_error(case):
    dwpose, images, no_person, wrong = case
    try:
        with _Records() as warnings_seen:
            frames = dwpose.run_batch(images, no_person, frames_per_chunk=2)
    except ModelSlotError as error:  # only for outputs of other shapes than the files declare, naming the file
        assert wrong is not None and "/models/" in str(error)
        return
    except PoseTransferError as error:  # NoPersonError, asked for
        assert no_person == "error" and dwpose.detector is not None, error
        return
    # outputs of other shapes pass only where the run never saw them: detector faults without a detector, or no crop
    assert wrong is None or dwpose.detector is None and wrong in ("anchors", "columns") or \
        all(not frame.people for frame in frames)
    assert [(f.height, f.width) for f in frames] == [image.shape[:2] for image in images]
    for frame in frames:
        assert len(frame.people) <= MAX_PEOPLE
        present = present_points(frame)
        assert (present[:, 2] >= VISIBILITY_THRESHOLD).all()
        assert det.within_margin(present[:, :2], (frame.height, frame.width)).all()
    # the pack reads what it writes: every frame is a valid POSE_KEYPOINT value
    for real_scores in (False, True):
        again = frames_from_pose_keypoint(pose_keypoint_from_frames(frames, real_scores))
        assert [len(f.people) for f in again] == [len(f.people) for f in frames]
    if any("NaN or infinite" in message for message in warnings_seen.messages):
        assert "/models/" in " ".join(warnings_seen.messages)


def test_a_detector_with_a_fixed_batch_over_one_is_refused_at_load(tmp_path):
    from posetransfer.pose.dwpose import load_dwpose

    from .planted_models import detector_model, planted_keypoints, pose_model

    _, _, sx, sy = planted_keypoints()
    pose = pose_model(tmp_path / "pose.onnx", sx, sy)
    four = detector_model(tmp_path / "yolox_b4.onnx", np.zeros((8400, 85), np.float32), batch=4)
    with pytest.raises(ModelSlotError, match=r"yolox_b4.onnx' takes a fixed batch of 4 images"):
        load_dwpose(pose, four)


def test_outputs_of_other_shapes_than_declared_and_non_finite_values_are_named(caplog):
    bins = (48, 64)

    def simcc(batch, values=0.5):
        return [np.full((batch, WHOLEBODY_POINTS, bins[0]), values, np.float32),
                np.full((batch, WHOLEBODY_POINTS, bins[1]), 0.5, np.float32)]

    declared = {"simcc_x": ["batch", WHOLEBODY_POINTS, "x"], "simcc_y": ["batch", WHOLEBODY_POINTS, "y"]}
    image = np.zeros((40, 30, 3), np.uint8)
    short = DWPose(_model("short.onnx", POSE_HW, None, declared, lambda batch: simcc(batch + 1)))
    with pytest.raises(ModelSlotError, match=r"pose model '/models/short.onnx' returned an output of shape \[2, 133, 48\]"
                                             r", but its 32x24 input needs \[1, 133, 48\]"):
        short(image)
    nan = DWPose(_model("nan.onnx", POSE_HW, None, declared, lambda batch: simcc(batch, np.nan)))
    with caplog.at_level(logging.WARNING):
        frame = nan(image)
    assert frame.people[0].body[:, 2].max() == 0  # nothing detected, and said so
    assert "pose model '/models/nan.onnx' returned NaN or infinite values; 133 keypoints" in caplog.text


# ------------------------------------------------------------------------------------------- the ONNX reader
@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory) -> dict[str, str]:
    from .planted_models import detector_model, planted_keypoints, pose_model

    folder = tmp_path_factory.mktemp("onnx")
    _, _, sx, sy = planted_keypoints(input_hw=POSE_HW)
    rows = np.zeros((len(det.anchor_grid(64, 64)[0]), 5 + COCO_CLASSES), np.float32)
    return {"pose": pose_model(folder / "pose.onnx", sx, sy, input_hw=POSE_HW),
            "detector": detector_model(folder / "detector.onnx", rows, input_hw=(64, 64))}


@SETTINGS
@given(slot=st.sampled_from(["pose", "detector"]), damage=st.sampled_from(["cut", "bytes", "random"]),
       position=st.floats(0, 1, exclude_max=True), replacement=st.binary(min_size=1, max_size=4))
def test_cut_or_altered_onnx_files_load_and_run_or_give_the_packs_error(tmp_path_factory, onnx_files, slot, damage,
                                                                         position, replacement):
    from posetransfer.pose.dwpose import load_dwpose

    data = bytearray(open(onnx_files[slot], "rb").read())
    if damage == "cut":
        data = data[:int(len(data) * position)]
    elif damage == "bytes":  # the graph's structure sits in the first and last few hundred bytes, the weights between
        start = int(400 * position) if len(replacement) % 2 else len(data) - 1 - int(400 * position)
        data[start:start + len(replacement)] = replacement
    else:
        data = bytearray(replacement * int(100 * position))
    path = tmp_path_factory.mktemp("fuzz") / f"fuzz_{slot}.onnx"
    path.write_bytes(bytes(data))
    files = {**onnx_files, slot: str(path)}
    try:
        frames = load_dwpose(files["pose"], files["detector"], provider="CPU").run_batch([np.zeros((40, 30, 3), np.uint8)])
    except PoseTransferError as error:
        assert str(path) in str(error)
        return
    assert len(frames) == 1
