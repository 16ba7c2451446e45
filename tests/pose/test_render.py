"""Renderer pixels at known points, and pixel identity with OpenCV where it is installed."""
import numpy as np
import pytest

from posetransfer.pose import raster
from posetransfer.pose.formats import frames_from_pose_keypoint
from posetransfer.pose.keypoints import Person, PoseFrame
from posetransfer.pose.render import pcdms_draw_size, render_controlnet_aux, render_pcdms, scfm_pose_map

from .fixtures import aux_fixture


def _body(points):
    body = np.zeros((18, 3))
    for index, (x, y) in points.items():
        body[index] = [x, y, 1.0]
    return body


def test_midpoint_circle_shapes():
    disc = np.zeros((11, 11), np.uint8)
    raster.fill_circle(disc, (5, 5), 4, 1)
    # OpenCV's radius-4 disc: spans of half-width 4, 3, 3, 2, 0 from the centre row outwards
    assert [int(disc[5 + dy].sum()) for dy in range(5)] == [9, 7, 7, 5, 1]
    plus = np.zeros((3, 3), np.uint8)
    raster.fill_circle(plus, (1, 1), 1, 1)
    np.testing.assert_array_equal(plus, [[0, 1, 0], [1, 1, 1], [0, 1, 0]])


def test_bresenham_line_and_ellipse_vertices():
    canvas = np.zeros((6, 8), np.uint8)
    raster.draw_line(canvas, (1, 2), (6, 4), 1)
    assert [tuple(p) for p in np.argwhere(canvas)] == [(2, 1), (2, 2), (3, 3), (3, 4), (4, 5), (4, 6)]
    poly = raster.ellipse_poly((10, 10), (7, 4), 0)
    # duplicates of consecutive rounded vertices are dropped; the ellipse passes through (cx+7, cy), (cx, cy+4)
    assert tuple(poly[0]) == (17, 10) and (10, 14) in {tuple(p) for p in poly} and 20 < len(poly) < 361


def test_pcdms_style_pixels():
    frame = PoseFrame(512, 512, [Person(body=_body({1: (100, 100), 2: (200, 100)}),
                                        left_hand=np.array([[300.0, 300.0, 1.0]] + [[0, 0, 0]] * 20),
                                        face=np.tile([[400.0, 400.0, 1.0]], (70, 1)))])
    image = render_pcdms(frame, 512, 512)
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    assert tuple(image[100, 150]) == (153, 0, 0)  # limb 2-3 (1-based) colour (255,0,0) x 0.6
    assert tuple(image[100, 100]) == (255, 85, 0) and tuple(image[100, 200]) == (255, 170, 0)  # joints
    assert tuple(image[96, 100]) == (255, 85, 0) and not image[95, 100].any()  # joint radius 4
    assert tuple(image[300, 300]) == (0, 0, 255) and tuple(image[299, 300]) == (0, 0, 255)  # r1 dot
    assert not image[298, 300].any()
    assert not image[400, 400].any()  # no face in PCDMs' style


def test_pcdms_draws_at_512_class_then_resizes():
    assert pcdms_draw_size(1024, 1024) == (512, 512) and pcdms_draw_size(1024, 768) == (704, 512)
    frame = PoseFrame(100, 100, [Person(body=_body({1: (50, 50)}))])
    big = render_pcdms(frame, 1024, 1024)
    small = render_pcdms(frame, 512, 512)
    # the 9-px joint disc at 512 becomes ~18 px at 1024: stick width follows the PCDMs geometry
    assert (small[256].any(axis=1)).sum() == 9 and 16 <= (big[512].any(axis=1)).sum() <= 20


def test_aux_style_pixels_and_output_size():
    frame = PoseFrame(200, 100, [Person(body=_body({1: (20, 20), 2: (60, 20)}),
                                        face=np.tile([[150.0, 50.0, 1.0]], (70, 1)))])
    image = render_controlnet_aux(frame, 100, 200)
    assert tuple(image[20, 40]) == (153, 0, 0) and tuple(image[20, 20]) == (255, 85, 0)
    assert tuple(image[50, 150]) == (255, 255, 255) and tuple(image[53, 150]) == (255, 255, 255)
    assert not image[54, 150].any()  # face dots radius 3
    doubled = render_controlnet_aux(frame, 200, 400)
    assert tuple(doubled[40, 40]) == (255, 85, 0) and not doubled[45, 40].any()  # radius stays 4


def test_scfm_map_channels():
    points = -np.ones((18, 2))
    points[1], points[2] = (100, 100), (140, 100)
    pose = scfm_pose_map(points)
    assert pose.shape == (20, 256, 256) and pose.dtype == np.float32
    # joint 2 colour (255,170,0) written as BGR, then limb 2-3 (255,0,0) blended 0.4/0.6, then read as RGB
    np.testing.assert_allclose(pose[:3, 100, 140], np.array([0, 0.4 * 170, 255]) / 255, rtol=1e-6)
    limb = pose[3]  # limb 2-3 distance map: 0 on the limb, floor(d / 3) / 255 at L1 distance d
    assert limb[100, 120] == 0 and limb[100 - 4 - 30, 120] == pytest.approx(10 / 255)
    np.testing.assert_array_equal(pose[4], 1.0)  # a missing limb saturates
    with pytest.raises(ValueError, match=r"\(18,2\)"):
        scfm_pose_map(np.zeros((17, 2)))


def test_against_opencv_when_installed():
    cv2 = pytest.importorskip("cv2")
    from .cv2_oracle import aux_render, scfm_map
    value = aux_fixture()
    frame = frames_from_pose_keypoint(value)[0]
    people = []
    for person in value[0]["people"]:
        def pts(flat):
            return None if flat is None else [(x, y) if c >= 1 else None for x, y, c in np.reshape(flat, (-1, 3))]
        people.append({"body": pts(person["pose_keypoints_2d"]), "face": pts(person["face_keypoints_2d"]),
                       "hands": [pts(person["hand_left_keypoints_2d"]), pts(person["hand_right_keypoints_2d"])]})
    expected = aux_render(cv2, people, 256, 320)
    np.testing.assert_array_equal(render_controlnet_aux(frame, 256, 320), expected)
    rng = np.random.default_rng(5)
    points = rng.uniform(0, 255, (18, 2))
    points[[3, 9]] = -1
    np.testing.assert_array_equal(scfm_pose_map(points), scfm_map(cv2, points))


def test_primitives_match_opencv_including_off_canvas():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(7)
    for _ in range(150):
        p = tuple(int(v) for v in rng.integers(-20, 60, 2))
        q = tuple(int(v) for v in rng.integers(-20, 60, 2))
        for thickness in (1, 2):
            ours, theirs = np.zeros((40, 48, 3), np.uint8), np.zeros((40, 48, 3), np.uint8)
            raster.draw_line(ours, p, q, (12, 200, 255), thickness)
            cv2.line(theirs, p, q, (12, 200, 255), thickness=thickness)
            np.testing.assert_array_equal(ours, theirs, err_msg=f"line {p}->{q} thickness {thickness}")
        axes, angle = (int(rng.integers(0, 30)), int(rng.integers(0, 6))), int(rng.integers(-180, 360))
        poly = cv2.ellipse2Poly(p, axes, angle, 0, 360, 1)
        np.testing.assert_array_equal(raster.ellipse_poly(p, axes, angle), poly)
        ours, theirs = np.zeros((40, 48, 3), np.uint8), np.zeros((40, 48, 3), np.uint8)
        raster.fill_convex_poly(ours, poly, (1, 2, 3))
        cv2.fillConvexPoly(theirs, poly, (1, 2, 3))
        radius = int(rng.integers(0, 6))
        raster.fill_circle(ours, q, radius, (7, 8, 9))
        cv2.circle(theirs, q, radius, (7, 8, 9), thickness=-1)
        np.testing.assert_array_equal(ours, theirs, err_msg=f"polygon {p} {axes} {angle}, circle {q} r{radius}")


def test_random_crowds_match_opencv_pixel_for_pixel():
    """Several people with random (partly off-canvas, partly missing) points: the vectorised drawing equals
    OpenCV's drawing of the same keypoints."""
    cv2 = pytest.importorskip("cv2")
    from .cv2_oracle import aux_render

    rng = np.random.default_rng(21)
    for trial in range(6):
        height, width = (int(v) for v in rng.integers(60, 400, 2))
        people, persons = [], []
        for _ in range(int(rng.integers(1, 5))):
            def part(count, spread=1.15):
                xy = rng.uniform(-0.15, spread, (count, 2)) * [width, height]
                present = rng.uniform(size=count) > 0.2
                return [tuple(p) if keep else None for p, keep in zip(xy, present)]
            body, face = part(18), part(70) if rng.uniform() > 0.3 else None
            hands = [part(21), part(21) if rng.uniform() > 0.5 else None]
            people.append({"body": body, "face": face, "hands": hands})

            def array(points):
                return None if points is None else np.array([[*p, 1.0] if p else [0, 0, 0] for p in points], float)
            persons.append(Person(body=array(body), left_hand=array(hands[0]), right_hand=array(hands[1]),
                                  face=array(face)))
        ours = render_controlnet_aux(PoseFrame(width, height, persons), height, width)
        np.testing.assert_array_equal(ours, aux_render(cv2, people, height, width), err_msg=f"trial {trial}")


def test_any_polygon_and_far_lines_match_opencv():
    """Vertex lists in any order (non-convex ones take OpenCV's own walk), end points up to 1e6 px away and
    thick lines: the batched rasteriser equals OpenCV pixel for pixel."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(11)
    for case in range(400):
        height, width = (int(v) for v in rng.integers(5, 80, 2))
        span = (30, 300, 10 ** 6)[case % 3]
        p, q = (tuple(int(v) for v in rng.integers(-span, span, 2)) for _ in range(2))
        thickness = int(rng.integers(1, 7))
        ours, theirs = np.zeros((height, width, 3), np.uint8), np.zeros((height, width, 3), np.uint8)
        raster.draw_line(ours, p, q, (10, 200, 255), thickness)
        cv2.line(theirs, p, q, (10, 200, 255), thickness=thickness)
        np.testing.assert_array_equal(ours, theirs, err_msg=f"line {p}->{q} thickness {thickness}")
        polygon = rng.integers(-span // 8 - 5, span // 8 + 60, (int(rng.integers(1, 9)), 2)).astype(np.int32)
        ours, theirs = np.zeros((height, width), np.uint8), np.zeros((height, width), np.uint8)
        raster.fill_convex_poly(ours, polygon, 200)
        cv2.fillConvexPoly(theirs, polygon, 200)
        np.testing.assert_array_equal(ours, theirs, err_msg=f"polygon {polygon.tolist()}")


def test_painter_ranks_give_the_drawing_order():
    """Strokes added out of order with explicit ranks paint as if drawn in rank order (later wins)."""
    canvas = np.zeros((20, 20, 3), np.uint8)
    painter = raster.Painter(canvas)
    painter.discs(np.array([[10, 10]]), 5, (0, 255, 0), ranks=np.array([2]))
    painter.discs(np.array([[10, 10], [3, 3]]), 3, np.array([(255, 0, 0), (0, 0, 255)]), ranks=np.array([1, 3]))
    painter.paint()
    expected = np.zeros((20, 20, 3), np.uint8)
    for center, radius, color in (((10, 10), 3, (255, 0, 0)), ((10, 10), 5, (0, 255, 0)), ((3, 3), 3, (0, 0, 255))):
        raster.fill_circle(expected, center, radius, color)
    np.testing.assert_array_equal(canvas, expected)
    assert tuple(canvas[10, 10]) == (0, 255, 0)  # rank 2 over rank 1, although added first
