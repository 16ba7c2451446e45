"""OpenCV's own calls (pose/native.py) against the numpy kernels: the same pixels through every entry point.

The numpy kernels are held against OpenCV in test_imageops.py and test_render.py; here the dispatch is checked:
the same results through `resize_linear`, `warp_affine`, `Painter` and the whole DWPose path with either, the
cases OpenCV cannot take left to numpy, and a broken or missing cv2 never used."""
import sys
import types

import numpy as np
import pytest

from posetransfer.pose import native
from posetransfer.pose.dwpose import load_dwpose
from posetransfer.pose.imageops import resize_linear, warp_affine
from posetransfer.pose.raster import Painter, ellipse_polys
from posetransfer.pose.render import render_controlnet_aux, render_pcdms, scfm_pose_map

from . import opencv_cases
from .planted_models import detector_model, plant_box, planted_keypoints, pose_model


def _both(make):
    """`make()` with the numpy kernels, then with OpenCV's."""
    native.use_opencv(False)
    ours = make()
    assert native.use_opencv(True)
    return ours, make()


def _random_strokes(rng: np.random.Generator, canvas: np.ndarray, far: bool) -> Painter:
    """Limb-like ellipses, discs and lines of every thickness, partly or wholly off the canvas, in a shuffled
    drawing order (explicit ranks)."""
    height, width = canvas.shape[:2]
    reach = 10 ** 6 if far else max(height, width) * 2
    count = int(rng.integers(1, 12))
    ranks = rng.permutation(3 * count)
    colors = rng.integers(0, 256, (3 * count, 4))
    painter = Painter(canvas)
    points, counts = ellipse_polys(rng.integers(-width // 2, width * 3 // 2, (count, 2)),
                                   rng.integers(0, max(height, width), (count, 2)), rng.integers(0, 360, count))
    painter.polygons(points, counts, colors[:count], ranks=ranks[:count])
    painter.discs(rng.integers(-20, max(height, width) + 20, (count, 2)), int(rng.integers(-1, 8)),
                  colors[count:2 * count], ranks=ranks[count:2 * count])
    painter.lines(rng.integers(-reach, reach, (count, 2)), rng.integers(-reach, reach, (count, 2)),
                  colors[2 * count:], int(rng.integers(0, 7)), ranks=ranks[2 * count:])
    return painter


@pytest.mark.parametrize("channels", [0, 1, 3, 4])
def test_strokes_drawn_by_opencv_equal_the_numpy_rasteriser(opencv_kernels, channels):
    rng = np.random.default_rng(channels)
    for case in range(60):
        shape = tuple(int(v) for v in rng.integers(1, 160, 2)) + ((channels,) if channels else ())
        seed = int(rng.integers(1 << 30))
        ours, theirs = _both(lambda: _random_strokes(np.random.default_rng(seed), np.zeros(shape, np.uint8),
                                                     far=case % 4 == 0).paint())
        np.testing.assert_array_equal(ours, theirs, err_msg=f"case {case}, canvas {shape}")


def test_what_opencv_cannot_take_is_left_to_numpy(opencv_kernels):
    """Five channels, coordinates past OpenCV's int, and non-contiguous canvases still paint, as numpy does."""
    def paint(canvas, start, end):
        painter = Painter(canvas)
        painter.lines(np.array([start]), np.array([end]), (10, 20, 30, 40, 50), 3)
        painter.discs(np.array([[5, 5]]), 3, 200)
        return painter.paint()

    cases = [(np.zeros((20, 30, 5), np.uint8), (0, 0), (29, 19)),
             (np.zeros((20, 30, 3), np.uint8), (-2 ** 40, 10), (2 ** 40, 12)),
             (np.zeros((30, 20, 3), np.uint8).transpose(1, 0, 2), (0, 19), (29, 0))]
    for canvas, start, end in cases:
        ours, theirs = _both(lambda: paint(canvas.copy(), start, end))
        np.testing.assert_array_equal(ours, theirs)
        assert theirs.any()


def test_resize_and_warp_through_opencv_keep_shapes_and_pixels(opencv_kernels):
    import cv2

    cases = opencv_cases
    for image, height, width in cases.resize_cases():
        for planar in (image, image[..., :1], image[..., 0]):  # (H,W,3), (H,W,1) and (H,W)
            ours, theirs = _both(lambda: resize_linear(planar, height, width))
            assert theirs.shape == ours.shape == (height, width, *planar.shape[2:])
            np.testing.assert_array_equal(ours, theirs)
    major = int(cv2.__version__.split(".")[0])
    for image, matrix, height, width in cases.warp_cases():
        native.use_opencv(True)
        theirs = warp_affine(image, matrix, height, width)
        np.testing.assert_array_equal(theirs, cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR))
        # an explicit reference always takes the numpy reproduction
        assert warp_affine(image, matrix, height, width, "opencv4" if major >= 5 else "opencv5").shape == theirs.shape
        native.use_opencv(False)
        if major >= 5 and cv2.ipp.useIPP():  # the one the numpy default reproduces
            np.testing.assert_array_equal(warp_affine(image, matrix, height, width), theirs)


def test_the_whole_dwpose_path_with_opencv(opencv_kernels, tmp_path):
    """What the two models are fed, the keypoints and both renders, with either kernels. The crops are OpenCV's
    own warp of the peer's matrix; the numpy warp reproduces OpenCV 5's axis-aligned path, which the peer's
    matrices mostly miss by a 1e-17 off the diagonal (then OpenCV's IPP takes its general routine, not
    reproduced): within one grey level of it (README, DWPose: what to expect)."""
    import cv2

    from posetransfer.pose import topdown

    ratio = 640 / 768
    rows = np.zeros((8400, 85), np.float32)
    plant_box(rows, [v * ratio for v in (300, 100, 460, 500)], 0.9, level=2)
    plant_box(rows, [v * ratio for v in (40, 60, 200, 420)], 0.6, level=1)
    _, _, simcc_x, simcc_y = planted_keypoints()
    dw = load_dwpose(pose_model(tmp_path / "p.onnx", simcc_x, simcc_y, batch="b"),
                     detector_model(tmp_path / "d.onnx", rows, batch="b"), "CPU")
    fed, warps = [], []
    for model in (dw.detector, dw.pose):
        run = model.run
        model.run = lambda batch, outputs=None, run=run: fed.append(np.array(batch)) or run(batch, outputs)
    warp = topdown.warp_affine
    topdown.warp_affine = lambda image, matrix, *size: warps.append((image, matrix, warp(image, matrix, *size))) \
        or warps[-1][2]
    rng = np.random.default_rng(9)
    images = [rng.integers(0, 256, (512, 768, 3), dtype=np.uint8) for _ in range(2)]

    def extract():
        fed.clear()
        warps.clear()
        frames = dw.run_batch(images)
        renders = [(render_controlnet_aux(f, f.height, f.width), render_pcdms(f, 300, 450)) for f in frames]
        return list(fed), list(warps), frames, renders

    try:
        (fed_np, warps_np, frames_np, renders_np), (fed_cv, warps_cv, frames_cv, renders_cv) = _both(extract)
    finally:
        topdown.warp_affine = warp
    assert len(fed_np) == len(fed_cv) == 2 and fed_cv[1].shape[0] == 4  # one detector call, 4 crops at once
    np.testing.assert_array_equal(fed_np[0], fed_cv[0])
    assert len(warps_np) == len(warps_cv) == 4
    for (image, matrix, ours), (_, same_matrix, theirs) in zip(warps_np, warps_cv):
        np.testing.assert_array_equal(matrix, same_matrix)
        np.testing.assert_array_equal(theirs, cv2.warpAffine(image, matrix, (288, 384), flags=cv2.INTER_LINEAR))
        assert np.abs(ours.astype(int) - theirs).max() <= 1
    for a, b in zip(frames_np, frames_cv):
        assert len(a.people) == len(b.people) == 2
        for pa, pb in zip(a.people, b.people):
            np.testing.assert_array_equal(pa.body, pb.body)
    for a, b in zip(renders_np, renders_cv):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[0].any() and a[1].any()


def test_scfm_pose_maps_are_the_same_with_opencv(opencv_kernels):
    rng = np.random.default_rng(6)
    for _ in range(5):
        points = rng.uniform(-20, 276, (18, 2))
        points[rng.random(18) < 0.2] = -1  # missing joints
        ours, theirs = _both(lambda: scfm_pose_map(points))
        np.testing.assert_array_equal(ours, theirs)


def test_crop_normalisation_through_opencv_is_the_same_table(opencv_kernels, monkeypatch):
    from posetransfer.pose import topdown

    levels = np.random.default_rng(4).integers(0, 256, (384, 288, 3), dtype=np.uint8)
    monkeypatch.setattr(topdown, "warp_affine", lambda *args, **kwargs: levels)
    crop = topdown.crop_for_box(np.array([10.0, 20.0, 110.0, 220.0]), 288, 384)
    ours, theirs = _both(lambda: topdown.crop_input(levels, crop, 288, 384))
    expected = ((levels - topdown.MEAN) / topdown.STD).astype(np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(theirs, expected)


def test_opencv_is_used_only_when_it_is_whole_and_wanted(monkeypatch, caplog):
    real = pytest.importorskip("cv2")
    assert native.use_opencv(True) and native.kernels() == f"OpenCV {real.__version__} (installed)"
    monkeypatch.setenv(native.ENV_VAR, "0")
    assert not native.use_opencv(True) and native.kernels() == "numpy (OpenCV-exact)"
    monkeypatch.delenv(native.ENV_VAR)
    # two clashing wheels can leave an empty namespace package behind
    monkeypatch.setitem(sys.modules, "cv2", types.ModuleType("cv2"))
    with caplog.at_level("INFO", logger=native.__name__):
        assert not native.use_opencv(True)
    assert "lacks resize, warpAffine" in caplog.text
    monkeypatch.setitem(sys.modules, "cv2", None)  # not installed: ModuleNotFoundError, said nowhere
    caplog.clear()
    with caplog.at_level("INFO", logger=native.__name__):
        assert not native.use_opencv(True)
    assert caplog.text == ""
    assert resize_linear(np.full((4, 4, 3), 9, np.uint8), 2, 2).tolist() == [[[9] * 3] * 2] * 2
