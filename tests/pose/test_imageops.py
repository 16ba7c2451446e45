"""Resampling exactness: our resize and crop warp against OpenCV itself, bit for bit, over seeded random cases."""
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from posetransfer.pose.imageops import affine_from_points, invert_affine, letterbox, resize_linear, warp_affine


def _cases():
    path = Path(__file__).with_name("opencv_cases.py")
    spec = importlib.util.spec_from_file_location("pose_opencv_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# sha256[:16] of cv2.warpAffine(..., INTER_LINEAR) from opencv-python-headless 4.10.0.84 for warp_cases(),
# recorded once (that OpenCV is not installed here); OpenCV <= 4.10 warps in fixed point.
OPENCV4_WARP_DIGESTS = [
    "b486f75874bd7672", "4b2b70e6b58f7412", "4da4c5656928066d", "0a5f05ec4a250dca", "9ab1305675fa9e56",
    "c55a0ca9d66ba222", "8a7392b25f29acff", "53ef082b92b76027", "a251c7b271e71160", "44f016811082e6ec",
    "1e1044e4d5d010b2", "d2607e995da4bb3a", "00ae432c00b3a2fb", "383d65cbba8e819e", "2bde57daa64c980c",
    "4de60d55fe81a7a3", "a251c7b271e71160", "16ee43c3c30e2595", "aa479543c8f62915", "b5b356d6be3d6d5a",
    "6dd555819c2774f9", "eeffd04f95f6c6ad", "c6aabfb0ac4a0d91", "5e653aa17628db91", "c4a70ef14f65bc67",
    "88c165d876fdbb85", "e960e42fa7d4172a", "a6df077ba19cc980", "b0ab7b12420e14c6", "492b898d83482183",
    "ffd68985c91c0765", "1631d7a5072e5527", "cbec55cde9ee0db4", "786a7705d68b6a20", "b1a90f42016a36b4",
    "78f9fb12ff84d7cf", "e7470b2f23121ff3", "6bf7742887da14fb", "63d8a2a0434f8a31", "151ff79f29e96d21",
    "42090e61598ee006", "08b45a7d013d2040", "ee83e9b08365cc9d", "bb270d5b01806f81", "1b90d59bc42938d8",
    "4120eb670d60286d", "09a6fcef52add3de", "e63023bb55f8038f", "80fc3c6a64611930", "04b7ccbc35af0590",
]


def _digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def test_resize_is_bit_identical_to_opencv():
    cv2 = pytest.importorskip("cv2")
    for image, height, width in _cases().resize_cases():
        ours = resize_linear(image if image.shape[2] == 3 else image[..., 0], height, width)
        theirs = cv2.resize(image if image.shape[2] == 3 else image[..., 0], (width, height),
                            interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(ours, theirs, err_msg=f"{image.shape} -> {(height, width)}")


def test_resize_formula_by_hand():
    ramp = np.tile(np.arange(0, 200, 10, dtype=np.uint8), (4, 1))  # 4 x 20, value = 10 * x
    half = resize_linear(ramp, 4, 10)
    np.testing.assert_array_equal(half[0], 10 * (2 * np.arange(10)) + 5)  # mean of two neighbours
    double = resize_linear(ramp, 4, 40)
    assert double[0, 0] == 0 and double[0, 1] == 3 and double[0, -1] == 190  # edge replicated


def _opencv_warp_reference(cv2):
    """Which of our two warps this OpenCV should match, or None when it is neither (4.11-4.x, or no IPP)."""
    major, minor = (int(v) for v in cv2.__version__.split(".")[:2])
    if (major, minor) <= (4, 10):
        return "opencv4"
    if major >= 5 and cv2.ipp.useIPP():
        return "opencv5"
    return None


def test_warp_is_bit_identical_to_installed_opencv():
    cv2 = pytest.importorskip("cv2")
    reference = _opencv_warp_reference(cv2)
    if reference is None:
        pytest.skip(f"OpenCV {cv2.__version__} warps neither like 5.x with IPP nor like <= 4.10")
    for image, matrix, height, width in _cases().warp_cases():
        theirs = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR)
        ours = warp_affine(image, matrix, height, width, reference)
        np.testing.assert_array_equal(ours, theirs, err_msg=f"{image.shape} {matrix.tolist()} {(height, width)}")


def test_warp_matches_recorded_opencv4_outputs():
    digests = [_digest(warp_affine(image, matrix, height, width, "opencv4"))
               for image, matrix, height, width in _cases().warp_cases()]
    assert digests == OPENCV4_WARP_DIGESTS


def test_warp_is_exact_for_integer_shift_and_zero_outside():
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    matrix = affine_from_points([[5, 5], [5, 0], [10, 5]], [[0, 0], [0, -5], [5, 0]])  # shift by (-5, -5)
    for reference in ("opencv5", "opencv4"):
        out = warp_affine(image, matrix, 20, 30, reference)
        np.testing.assert_array_equal(out[:15, :25], image[5:, 5:])
        assert out.dtype == np.uint8 and np.all(out[15:] == 0) and np.all(out[:, 25:] == 0)
    with pytest.raises(ValueError, match="axis-aligned"):
        warp_affine(image, np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), 5, 5)
    with pytest.raises(ValueError, match="reference"):
        warp_affine(image, matrix, 5, 5, "opencv3")


def test_invert_affine_round_trips():
    matrix = np.array([[2.5, 0.0, -7.0], [0.0, 0.75, 3.0]])
    inverse = invert_affine(matrix)
    point = np.array([3.0, 4.0, 1.0])
    np.testing.assert_allclose(inverse @ np.append(matrix @ point, 1.0), point[:2])


def test_letterbox_pastes_top_left():
    image = np.full((100, 200, 3), 7, np.uint8)
    canvas, ratio = letterbox(image, 64, 64)
    assert ratio == pytest.approx(0.32) and canvas.shape == (64, 64, 3)
    assert np.all(canvas[:32] == 7) and np.all(canvas[32:] == 114)


def test_crop_input_normalises_exactly_like_the_reference_arithmetic():
    from posetransfer.pose import topdown

    image = np.random.default_rng(3).integers(0, 256, (200, 150, 3), dtype=np.uint8)
    crop = topdown.crop_for_box(np.array([20.0, 10.0, 120.0, 190.0]), 288, 384)
    patch = warp_affine(image, topdown.crop_matrix(crop, 288, 384), 384, 288)
    expected = ((patch - topdown.MEAN) / topdown.STD).astype(np.float32)  # the peer's float64 arithmetic
    np.testing.assert_array_equal(topdown.crop_input(image, crop, 288, 384), expected.transpose(2, 0, 1))


def test_affine_from_points_is_opencvs_solve_bit_for_bit():
    """`cv2.getAffineTransform` to the last bit (a LAPACK solve misses it on about 2 cases in 3)."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(21)
    for case in range(400):
        src, dst = (rng.uniform(-500, 2000, (3, 2)).astype(np.float32) for _ in range(2))
        if case % 3 == 0:
            src, dst = np.round(src), np.round(dst)
        np.testing.assert_array_equal(affine_from_points(src, dst), cv2.getAffineTransform(src, dst))
    assert not affine_from_points([[0, 0], [1, 1], [2, 2]], [[0, 0], [1, 0], [0, 1]]).any()  # collinear: zeros


def test_crop_matrices_are_the_peers_to_the_last_bit():
    """mmpose's get_warp_matrix as the peer runs it (rot 0): box -> centre and 1.25x scale fixed to 3:4, three
    float32 points (centre, centre - (0, w/2), the third at a right angle), cv2.getAffineTransform. Its last
    bits decide OpenCV 5's warp path, so they must be the same."""
    cv2 = pytest.importorskip("cv2")
    from posetransfer.pose import topdown

    rng = np.random.default_rng(22)
    for _ in range(300):
        x1, y1 = rng.uniform(0, 1500, 2)
        box = np.array([x1, y1, x1 + rng.uniform(1, 900), y1 + rng.uniform(1, 900)])
        center = (box[:2] + box[2:]) * 0.5
        w, h = (box[2:] - box[:2]) * 1.25
        scale = np.array([w, w / 0.75]) if w > h * 0.75 else np.array([h * 0.75, h])
        src, dst = np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32)
        src[0], src[1] = center, center + np.array([0.0, scale[0] * -0.5])
        dst[0], dst[1] = [144.0, 192.0], np.array([144.0, 192.0]) + np.array([0.0, -144.0])
        for points in (src, dst):
            direction = points[0] - points[1]
            points[2] = points[1] + np.r_[-direction[1], direction[0]]
        expected = cv2.getAffineTransform(src, dst)
        np.testing.assert_array_equal(topdown.crop_matrix(topdown.crop_for_box(box, 288, 384), 288, 384), expected)
