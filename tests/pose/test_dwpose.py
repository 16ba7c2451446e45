"""The whole extraction path on planted ONNX models: letterbox -> YOLOX decode -> NMS -> crop -> SimCC."""
import numpy as np
import pytest

from posetransfer.pose.dwpose import NoPersonError, load_dwpose
from posetransfer.pose.keypoints import OPENPOSE_FROM_MMPOSE

from .planted_models import detector_model, plant_box, planted_keypoints, pose_model

WIDTH, HEIGHT = 768, 512
RATIO = 640 / 768


def _expected(box, crop_xy):
    x1, y1, x2, y2 = box
    center = np.array([x1 + x2, y1 + y2]) / 2
    w, h = (x2 - x1) * 1.25, (y2 - y1) * 1.25
    scale = np.array([w, w / 0.75]) if w > 0.75 * h else np.array([0.75 * h, h])
    return crop_xy / np.array([288, 384]) * scale + center - scale / 2


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("dwpose")
    rows = np.zeros((8400, 85), np.float32)
    person_a = (300, 100, 460, 500)
    person_b = (40, 60, 200, 420)
    plant_box(rows, [v * RATIO for v in person_a], 0.9, level=2)
    plant_box(rows, [v * RATIO + 3 for v in person_a], 0.8, level=1)  # IoU > 0.45 with A: suppressed
    plant_box(rows, [v * RATIO for v in person_b], 0.6, level=1)
    plant_box(rows, [v * RATIO for v in (500, 50, 700, 300)], 0.95, cls=16, level=1)  # a dog: filtered
    plant_box(rows, [v * RATIO for v in (600, 300, 700, 480)], 0.25, level=0)  # below 0.3: dropped
    crop_xy, scores, sx, sy = planted_keypoints()
    empty = np.zeros((8400, 85), np.float32)
    return {
        "det": detector_model(root / "yolox_l.onnx", rows),
        "det_empty": detector_model(root / "empty.onnx", empty),
        "pose1": pose_model(root / "dw-ll_ucoco_384.onnx", sx, sy, batch=1),
        "pose_dyn": pose_model(root / "dynamic.onnx", sx, sy, batch="batch"),
        "pose5": pose_model(root / "bs5.onnx", sx, sy, batch=5),
        "boxes": [person_a, person_b], "crop_xy": crop_xy, "scores": scores,
    }


def _image():
    return np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def test_detector_recovers_planted_boxes(models):
    dw = load_dwpose(models["pose1"], models["det"], provider="CPU")
    boxes = dw.detect_boxes(_image())
    np.testing.assert_allclose(boxes, np.array(models["boxes"], np.float32), atol=2e-3)
    assert dw.detector.input_hw == (640, 640) and dw.pose.input_hw == (384, 288) and dw.pose.batch == 1
    assert dw.pose.providers == ["CPUExecutionProvider"]
    assert any("CPUExecutionProvider" in line for line in dw.log_lines)


@pytest.mark.parametrize("pose_key", ["pose1", "pose_dyn", "pose5"])
def test_keypoints_of_two_people_match_formula(models, pose_key):
    dw = load_dwpose(models[pose_key], models["det"], provider="auto")
    image = _image()
    boxes = dw.detect_boxes(image)
    points, scores = dw.keypoints(image, boxes)
    assert points.shape == (2, 133, 2)
    for person, box in enumerate(boxes):
        np.testing.assert_allclose(points[person], _expected(box.astype(np.float64), models["crop_xy"]), atol=1e-9)
        np.testing.assert_allclose(scores[person], models["scores"], rtol=1e-6)


def test_frame_conversion_to_openpose(models):
    dw = load_dwpose(models["pose_dyn"], models["det"])
    frame = dw(_image())
    assert (frame.width, frame.height) == (WIDTH, HEIGHT) and len(frame.people) == 2
    box = dw.detect_boxes(_image())[0].astype(np.float64)
    expected = _expected(box, models["crop_xy"])
    body = frame.people[0].body
    for openpose, coco in OPENPOSE_FROM_MMPOSE.items():
        if openpose != 1:
            np.testing.assert_allclose(body[openpose, :2], expected[coco], atol=1e-9)
    np.testing.assert_allclose(body[1, :2], expected[[5, 6]].mean(0), atol=1e-9)  # neck
    assert body[1, 2] == 1.0
    # keypoint 20 (a left-foot point) scored 0.2 < 0.3: dropped, the rest of the feet kept
    feet = frame.people[0].feet
    assert feet[20 - 17, 2] == 0 and np.all(feet[[0, 1, 2, 4, 5], 2] > 0)
    hand = frame.people[0].left_hand
    np.testing.assert_allclose(hand[:, :2], expected[91:112], atol=1e-9)
    assert frame.people[0].face.shape == (70, 3)


def test_zero_detections_modes(models):
    dw = load_dwpose(models["pose1"], models["det_empty"])
    assert dw(_image(), "empty").people == []
    with pytest.raises(NoPersonError, match="No person"):
        dw.run_batch([_image()], "error")
    whole = dw(_image(), "whole image")
    expected = _expected(np.array([0, 0, WIDTH, HEIGHT], float), models["crop_xy"])
    np.testing.assert_allclose(whole.people[0].left_hand[:, :2], expected[91:112], atol=1e-9)


def test_no_detector_uses_whole_image(models):
    dw = load_dwpose(models["pose1"], None)
    assert len(dw(_image()).people) == 1
    points, scores = dw.keypoints(_image(), np.zeros((0, 4)))
    assert points.shape == (0, 133, 2) and scores.shape == (0, 133)


def test_batch_progress_ticks_and_interrupts(models):
    dw = load_dwpose(models["pose1"], models["det"])
    ticks = []
    frames = dw.run_batch([_image()] * 3, progress=lambda i, n: ticks.append((i, n)))
    assert len(frames) == 3 and ticks == [(1, 3), (2, 3), (3, 3)]

    def interrupt(i, n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dw.run_batch([_image()] * 3, progress=interrupt)


def test_bad_model_and_provider_errors(models, tmp_path):
    from posetransfer.pose.dwpose import ModelSlotError

    with pytest.raises(RuntimeError, match="not available"):
        load_dwpose(models["pose1"], provider="CoreML")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(ModelSlotError, match=r"Could not open the DWPose pose model '.*broken.onnx' .*download it again"):
        load_dwpose(str(broken))
    with pytest.raises(ModelSlotError, match=r"DWPose detector model not found: '.*absent.onnx'"):
        load_dwpose(models["pose1"], str(tmp_path / "absent.onnx"))


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 3, 3), (1, 900, 3), (900, 1, 3)])
def test_tiny_and_extreme_images_run(models, shape):
    dw = load_dwpose(models["pose1"], models["det"])
    frame = dw(np.zeros(shape, np.uint8))
    assert (frame.height, frame.width) == shape[:2]
    assert all(np.isfinite(p.body).all() for p in frame.people)


def test_provider_fallback_is_reported_from_the_session(models, monkeypatch):
    import onnxruntime

    from posetransfer.pose import dwpose as dwpose_module

    class FallbackSession(onnxruntime.InferenceSession):
        def __init__(self, path, sess_options=None, providers=None):
            assert providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
            super().__init__(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    class FakeOrt:
        SessionOptions = onnxruntime.SessionOptions
        InferenceSession = FallbackSession

        @staticmethod
        def get_available_providers():
            return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(dwpose_module, "_onnxruntime", lambda: FakeOrt)
    dw = load_dwpose(models["pose1"], models["det"], provider="auto")
    assert dw.pose.providers == ["CPUExecutionProvider"]
    model_lines = dw.log_lines[:2]  # then the kernels line (pose/native.py)
    assert all("asked for CUDAExecutionProvider" in line for line in model_lines) and len(dw.log_lines) == 3
    assert dw.log_lines[2] == "DWPose resizing, crops and drawing: numpy (OpenCV-exact)"


def test_missing_onnxruntime_names_the_package(monkeypatch):
    import builtins

    from posetransfer.pose import dwpose as dwpose_module

    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        dwpose_module._onnxruntime()


def test_float64_inputs_are_cast_and_outputs_read_by_name(models):
    dw = load_dwpose(models["pose_dyn"], None)
    simcc_x, simcc_y = dw.pose.run(np.zeros((2, 3, 384, 288)), ("simcc_x", "simcc_y"))  # float64 in
    assert simcc_x.shape == (2, 133, 576) and simcc_y.shape == (2, 133, 768)
    swapped_y, swapped_x = dw.pose.run(np.zeros((1, 3, 384, 288)), ("simcc_y", "simcc_x"))
    assert swapped_y.shape == (1, 133, 768)


def test_wrong_image_layout_is_refused(models):
    dw = load_dwpose(models["pose1"], models["det"])
    with pytest.raises(ValueError, match="uint8 RGB"):
        dw(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        dw(np.zeros((8, 8, 3), np.float32))


def test_256x192_model_input_size_is_read_from_the_session(models, tmp_path):
    crop_xy, scores, sx, sy = planted_keypoints(seed=4, input_hw=(256, 192))
    path = pose_model(tmp_path / "dw-ll_ucoco.onnx", sx, sy, batch=1, input_hw=(256, 192))
    dw = load_dwpose(path, models["det"])
    assert dw.pose.input_hw == (256, 192)
    box = dw.detect_boxes(_image())[0].astype(np.float64)
    points, _ = dw.keypoints(_image(), box[None])
    x1, y1, x2, y2 = box
    w, h = (x2 - x1) * 1.25, (y2 - y1) * 1.25
    scale = np.array([w, w / 0.75]) if w > 0.75 * h else np.array([0.75 * h, h])
    expected = crop_xy / np.array([192, 256]) * scale + np.array([x1 + x2, y1 + y2]) / 2 - scale / 2
    np.testing.assert_allclose(points[0], expected, atol=1e-9)


# ------------------------------------------------------------------ identity, batching, slots, junk boxes
def test_extraction_is_identical_to_the_code_before_batching(tmp_path):
    """POSE_KEYPOINT digest recorded with the pre-batching, pre-OpenCV-exact pipeline (commit f10b369) on these
    planted models (whose outputs do not depend on pixels, so exactness changes nothing here)."""
    import hashlib
    import json

    from posetransfer.pose.formats import pose_keypoint_from_frames

    rows = np.zeros((8400, 85), np.float32)
    plant_box(rows, [v * RATIO for v in (300, 100, 460, 500)], 0.9, level=2)
    plant_box(rows, [v * RATIO + 3 for v in (300, 100, 460, 500)], 0.8, level=1)
    plant_box(rows, [v * RATIO for v in (40, 60, 200, 420)], 0.6, level=1)
    plant_box(rows, [v * RATIO for v in (700, 300, 800, 480)], 0.5, level=0)  # crosses the right edge
    _, _, sx, sy = planted_keypoints()
    dw = load_dwpose(pose_model(tmp_path / "p.onnx", sx, sy), detector_model(tmp_path / "d.onnx", rows), "CPU")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (512, 768, 3), dtype=np.uint8) for _ in range(3)]
    value = pose_keypoint_from_frames(dw.run_batch(images), real_scores=True)
    # keys sorted: the frame's key order now follows the peer's, the values are what they were
    assert hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16] == "1c137404c53e9cc6"


def test_batched_runs_equal_frame_by_frame_runs(models, tmp_path):
    rows = np.zeros((8400, 85), np.float32)
    plant_box(rows, [v * RATIO for v in (300, 100, 460, 500)], 0.9, level=2)
    plant_box(rows, [v * RATIO for v in (40, 60, 200, 420)], 0.6, level=1)
    dynamic_det = detector_model(tmp_path / "det_dyn.onnx", rows, batch="batch")
    _, _, sx, sy = planted_keypoints()
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(512, 768, 3)] * 3 + [(300, 200, 3)] * 2]
    for pose_key in ("pose1", "pose_dyn", "pose5"):
        dw = load_dwpose(models[pose_key], dynamic_det)
        assert dw.detector.batch is None
        batched = dw.run_batch(images, frames_per_chunk=4)
        single = [dw(image) for image in images]
        for a, b in zip(batched, single):
            assert (a.width, a.height, len(a.people)) == (b.width, b.height, len(b.people)) and len(a.people) == 2
            for pa, pb in zip(a.people, b.people):
                for part_a, part_b in zip(pa.parts().values(), pb.parts().values()):
                    np.testing.assert_array_equal(part_a, part_b)


def test_pose_calls_take_all_crops_of_a_chunk(models, monkeypatch):
    dw = load_dwpose(models["pose_dyn"], models["det"])
    calls = []
    real_run = dw.pose.run
    monkeypatch.setattr(dw.pose, "run", lambda batch, outputs=None: calls.append(len(batch)) or real_run(batch, outputs))
    dw.run_batch([_image()] * 5, frames_per_chunk=16)
    assert calls == [10]  # 5 frames x 2 people, one call


def test_batch_buffers_are_reused_without_stale_values(models, tmp_path):
    """The detector batch and the crop batch keep their memory between calls; a smaller call after a larger
    one, and a fixed-batch model's zero padding, must not see what the earlier call left there."""
    rows = np.zeros((8400, 85), np.float32)
    plant_box(rows, [v * RATIO for v in (300, 100, 460, 500)], 0.9, level=2)
    plant_box(rows, [v * RATIO for v in (40, 60, 200, 420)], 0.6, level=1)
    dynamic_det = detector_model(tmp_path / "det_dyn.onnx", rows, batch="batch")
    for pose_key in ("pose_dyn", "pose5"):
        dw = load_dwpose(models[pose_key], dynamic_det)
        fed = []
        real_run = dw.pose.run
        dw.pose.run = lambda batch, outputs=None: fed.append(np.array(batch)) or real_run(batch, outputs)
        rng = np.random.default_rng(8)
        big = [rng.integers(0, 256, (512, 768, 3), dtype=np.uint8) for _ in range(6)]
        small = [rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)]
        dw.run_batch(big)
        detector_memory = dw._buffers["detector"]
        fed.clear()
        frames = dw.run_batch(small)
        assert dw._buffers["detector"] is detector_memory  # reused, not reallocated
        fresh = load_dwpose(models[pose_key], dynamic_det)
        fresh_fed = []
        fresh_run = fresh.pose.run
        fresh.pose.run = lambda batch, outputs=None: fresh_fed.append(np.array(batch)) or fresh_run(batch, outputs)
        expected = fresh.run_batch(small)
        assert len(fed) == len(fresh_fed) == 1
        np.testing.assert_array_equal(fed[0], fresh_fed[0])  # the crops fed, not only the (planted) keypoints
        for a, b in zip(frames, expected):
            for pa, pb in zip(a.people, b.people):
                np.testing.assert_array_equal(pa.body, pb.body)
        if pose_key == "pose5":  # 2 crops padded to 5: the padding is zeros, not the earlier call's crops
            assert len(fed[0]) == 5 and not fed[0][2:].any() and fed[0][:2].any()


def test_swapped_files_are_refused_naming_both(models):
    from posetransfer.pose.dwpose import ModelSlotError

    with pytest.raises(ModelSlotError, match="swapped") as err:
        load_dwpose(models["det"], models["pose1"])
    assert "yolox_l.onnx" in str(err.value) and "dw-ll_ucoco_384.onnx" in str(err.value)


def test_wrong_files_are_refused_per_slot(models, tmp_path):
    from posetransfer.pose.dwpose import ModelSlotError

    for detector in (None, models["det"]):  # with a detector it stacked thousands of crops until memory ran out
        with pytest.raises(ModelSlotError, match=r"pose model '.*yolox_l.onnx' is a person detector"):
            load_dwpose(models["det"], detector)
    with pytest.raises(ModelSlotError, match=r"detector '.*bs5.onnx' is a DWPose pose model"):
        load_dwpose(models["pose1"], models["pose5"])
    six = detector_model(tmp_path / "six.onnx", np.zeros((8400, 6), np.float32))
    with pytest.raises(ModelSlotError, match=r"six.onnx'.*6 columns.*85"):
        load_dwpose(models["pose1"], six)
    _, _, sx, sy = planted_keypoints()
    narrow = pose_model(tmp_path / "narrow.onnx", sx[:, :500], sy)  # simcc_x 500 bins for a 288-wide input
    with pytest.raises(ModelSlotError, match=r"narrow.onnx'.*500 x-bins.*576"):
        load_dwpose(narrow, models["det"])


def test_junk_boxes_are_clipped_dropped_and_capped(models, tmp_path, caplog):
    from posetransfer.pose import detector as det
    from posetransfer.pose.dwpose import MAX_PEOPLE

    boxes = np.array([[np.nan, 0, 5, 5], [-1e8, -1e8, 1e8, 1e8], [10, 10, 10.5, 300], [5, 5, 100, 200],
                      [-3, -2, 120, 90], [450, 10, 500, 60], [np.inf, 0, np.inf, 5]], np.float32)
    scores = np.zeros((len(boxes), 80), np.float32)
    scores[:, 0] = [0.99, 0.9, 0.8, 0.7, 0.6, 0.95, 0.97]
    kept, kept_scores = det.select_person_boxes(boxes, scores, (100, 200))
    # NaN, infinite, narrower than 1 px and wholly beyond the margin (x from 450 in a 200 px wide image): dropped
    # before NMS, so the NaN box with the best score suppresses nobody
    np.testing.assert_array_equal(kept_scores, np.float32([0.9, 0.7, 0.6]))
    np.testing.assert_array_equal(kept[0], [-200, -100, 400, 200])  # clipped to the image grown by its size
    np.testing.assert_array_equal(kept[1:], boxes[[3, 4]])  # boxes within the margin stay exactly as given
    np.testing.assert_array_equal(det.select_person_boxes(boxes, scores, (100, 200), limit=2)[0], kept[:2])
    # a detector emitting thousands of confident boxes, some huge: no crash, capped with a message
    rows = np.zeros((8400, 85), np.float32)
    rng = np.random.default_rng(0)
    rows[:, :2] = rng.uniform(0, 1, (8400, 2))
    rows[:, 2:4] = rng.uniform(-3, 3, (8400, 2))
    rows[::7, 2:4] = 40.0  # exp(40) * stride: ~1e18 px wide
    rows[:, 4], rows[:, 5] = 1.0, rng.uniform(0.31, 1.0, 8400)
    junk = detector_model(tmp_path / "junk.onnx", rows)
    dw = load_dwpose(models["pose_dyn"], junk)
    with caplog.at_level("WARNING"):
        frame = dw(_image())
    assert 0 < len(frame.people) <= MAX_PEOPLE
    assert f"max_people = {MAX_PEOPLE}" in caplog.text


def test_thousands_of_disjoint_confident_boxes_stop_at_the_people_cap():
    """8400 boxes that suppress nothing took 1.2 s per frame through the whole NMS; the cap stops it early."""
    import time

    from posetransfer.pose import detector as det

    index = np.arange(8400)
    corners = np.stack([index % 100 * 10.0, index // 100 * 10.0], axis=1)
    boxes = np.concatenate([corners, corners + 5], axis=1).astype(np.float32)
    scores = np.zeros((8400, 80), np.float32)
    scores[:, 0] = np.random.default_rng(0).uniform(0.4, 1.0, 8400)
    start = time.perf_counter()
    kept, kept_scores = det.select_person_boxes(boxes, scores, (1000, 1000), limit=65)
    assert time.perf_counter() - start < 0.3
    np.testing.assert_array_equal(kept_scores, np.sort(scores[:, 0])[::-1][:65])


def test_cuda_diagnosis_names_the_cause():
    from posetransfer.pose.dwpose import cuda_diagnosis

    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    both = cuda_diagnosis(["CPUExecutionProvider"], {"onnxruntime", "onnxruntime-gpu"}, lambda name: True)
    assert "Both 'onnxruntime' (CPU) and 'onnxruntime-gpu'" in both
    cpu_only = cuda_diagnosis(["AzureExecutionProvider", "CPUExecutionProvider"], {"onnxruntime"}, lambda n: True)
    assert "CPU-only build" in cpu_only and "onnxruntime-gpu" in cpu_only
    no_libs = cuda_diagnosis(gpu, {"onnxruntime-gpu"}, lambda name: "cudart" in name)
    assert "libcublasLt.so.12" in no_libs and "libcudnn.so.9" in no_libs and "libcudart" not in no_libs
    driver = cuda_diagnosis(gpu, {"onnxruntime-gpu"}, lambda name: True)
    assert "driver" in driver


def test_asking_for_cuda_on_a_cpu_wheel_says_why(models, monkeypatch):
    from posetransfer.pose import dwpose as dwpose_module

    monkeypatch.setattr(dwpose_module, "_installed_distributions", lambda: {"onnxruntime"})
    with pytest.raises(RuntimeError, match="CPU-only build"):
        load_dwpose(models["pose1"], provider="CUDA")


def test_io_binding_path_gives_the_same_outputs(models):
    dw = load_dwpose(models["pose_dyn"], models["det"])
    plain = dw(_image())
    dw.pose.io_binding = dw.detector.io_binding = True  # what a CUDA session uses; onnxruntime runs it on CPU too
    bound = dw(_image())
    for a, b in zip(plain.people, bound.people):
        np.testing.assert_array_equal(a.body, b.body)


@pytest.mark.parametrize("channels", ["BGR", "RGB"])
def test_detector_input_is_the_letterbox_in_the_chosen_channel_order(channels):
    """The BGR flip is applied after the resize (cheaper); the result equals letterboxing the flipped image."""
    from types import SimpleNamespace

    from posetransfer.pose.dwpose import DWPose
    from posetransfer.pose.imageops import letterbox

    image = np.random.default_rng(3).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    model = DWPose(pose=None, detector=SimpleNamespace(input_hw=(64, 80)), detector_channels=channels)
    fed, ratio = model._detector_input(image)
    canvas, expected_ratio = letterbox(image[..., ::-1] if channels == "BGR" else image, 64, 80, 114)
    np.testing.assert_array_equal(fed, canvas.transpose(2, 0, 1).astype(np.float32))
    assert fed.flags.c_contiguous and fed.dtype == np.float32 and ratio == expected_ratio
