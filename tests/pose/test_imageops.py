"""Resampling geometry: OpenCV's half-pixel bilinear resize, top-left letterbox, axis-aligned crop warp."""
import numpy as np
import pytest

from posetransfer.pose.imageops import affine_from_points, letterbox, resize_linear, warp_affine


def test_resize_matches_linear_formula():
    ramp = np.tile(np.arange(0, 200, 10, dtype=np.uint8), (4, 1))  # 4 x 20, value = 10 * x
    half = resize_linear(ramp, 4, 10)
    # output x samples input 2x + 0.5: the mean of two neighbours
    np.testing.assert_array_equal(half[0], np.floor(10 * (2 * np.arange(10) + 0.5) + 0.5).astype(np.uint8))
    double = resize_linear(ramp, 4, 40)
    assert double[0, 0] == 0 and double[0, 1] == 3  # x=1 samples 0.25 -> 2.5 rounds up; x=0 replicates the edge
    assert double[0, -1] == 190


def test_letterbox_pastes_top_left():
    image = np.full((100, 200, 3), 7, np.uint8)
    canvas, ratio = letterbox(image, 64, 64)
    assert ratio == pytest.approx(0.32) and canvas.shape == (64, 64, 3)
    assert np.all(canvas[:32] == 7) and np.all(canvas[32:] == 114)


def test_letterbox_paths_agree_within_one_level():
    pytest.importorskip("cv2")
    image = np.random.default_rng(2).integers(0, 256, (300, 410, 3), dtype=np.uint8)
    ours = letterbox(image, 640, 640)[0].astype(int)
    theirs = letterbox(image, 640, 640)[0].astype(int)  # OpenCV's resize
    assert np.abs(ours - theirs).max() <= 1


def test_warp_is_exact_for_integer_shift_and_zero_outside():
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    matrix = affine_from_points([[5, 5], [5, 0], [10, 5]], [[0, 0], [0, -5], [5, 0]])  # shift by (-5, -5)
    out = warp_affine(image, matrix, 20, 30)
    np.testing.assert_array_equal(out[:15, :25], image[5:, 5:])
    assert np.all(out[15:] == 0) and np.all(out[:, 25:] == 0)
    with pytest.raises(ValueError, match="axis-aligned"):
        warp_affine(image, np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), 5, 5)


def test_resize_within_one_level_of_opencv():
    cv2 = pytest.importorskip("cv2")
    image = np.random.default_rng(1).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    for size in ((64, 80), (200, 301)):
        ours = resize_linear(image, *size).astype(int)
        theirs = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR).astype(int)
        assert np.abs(ours - theirs).max() <= 1


def test_crop_input_normalises_exactly_like_the_reference_arithmetic():
    from posetransfer.pose import topdown

    image = np.random.default_rng(3).integers(0, 256, (200, 150, 3), dtype=np.uint8)
    crop = topdown.crop_for_box(np.array([20.0, 10.0, 120.0, 190.0]), 288, 384)
    patch = warp_affine(image, topdown.crop_matrix(crop, 288, 384), 384, 288)
    expected = ((np.clip(np.floor(patch + 0.5), 0, 255) - topdown.MEAN) / topdown.STD).astype(np.float32)
    np.testing.assert_array_equal(topdown.crop_input(image, crop, 288, 384), expected.transpose(2, 0, 1))
