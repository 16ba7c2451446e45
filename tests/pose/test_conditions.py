"""Poses as the models take them: the PCDMs prior's coordinates, PCDMs renders and SCFM maps from frames."""
import numpy as np
import pytest
import torch

from posetransfer.pose.conditions import pcdms_renders, pose_coordinates, scfm_body_points, scfm_pose_maps
from posetransfer.pose.formats import frames_from_pose_keypoint
from posetransfer.pose.render import render_pcdms, scfm_pose_map


# ------------------------------------------------------------------------------------- pose coordinates
def _frame(points, width=200, height=400, extra_people=()):
    flat = []
    for p in points:
        flat += [p[0], p[1], 1.0] if p is not None else [0.0, 0.0, 0.0]
    return {"people": [{"pose_keypoints_2d": flat}, *extra_people], "canvas_width": width, "canvas_height": height}


def coords(frames, *args, **kw):
    return pose_coordinates(frames_from_pose_keypoint(frames), *args, **kw)


def test_pose_coordinates_conventions():
    points = [(100.0, 200.0), None] + [(50.0, 100.0)] * 16
    frame = _frame(points)
    frac = coords([frame])
    assert frac.shape == (1, 36) and frac.dtype == torch.float32
    assert frac[0, :4].tolist() == [0.5, 0.5, 0.0, 0.0] and frac[0, 4:6].tolist() == [0.25, 0.25]
    assert coords([frame], "centred")[0, :6].tolist() == [0.0, 0.0, 0.0, 0.0, -0.5, -0.5]
    assert coords([frame], "pixels_256")[0, :4].tolist() == [128.0, 128.0, 0.0, 0.0]
    assert coords([frame], "deepfashion_176x256")[0, :4].tolist() == [88.0, 128.0, -1.0, -1.0]
    normalised = _frame([(0.5, 0.5), None] + [(0.25, 0.25)] * 16, width=1, height=1)
    torch.testing.assert_close(coords([normalised]), frac)


def test_pose_coordinates_picks_largest_person_and_errors():
    small = {"pose_keypoints_2d": [10.0, 10.0, 1.0, 12.0, 12.0, 1.0] + [0.0] * 48}
    frame = _frame([(20.0, 40.0), (180.0, 360.0)] + [None] * 16, extra_people=[small])
    assert coords([frame])[0, :4].tolist() == pytest.approx([0.1, 0.1, 0.9, 0.9])
    with pytest.raises(ValueError, match="frame 1 has no person"):
        coords([frame, {"people": [], "canvas_width": 8, "canvas_height": 8}], name="target_pose")
    with pytest.raises(ValueError, match="convention"):
        coords([frame], "openpose")


# ------------------------------------------------------------------------------------- renders and SCFM maps
BODY = [[32, 10], [32, 18], [26, 18], [24, 28], [23, 36], [38, 18], [40, 28], [41, 36], [28, 38],
        [28, 48], [28, 58], [36, 38], [36, 48], [36, 58], [30, 8], [34, 8], None, None]


def test_pcdms_renders_stack_the_renderer_per_frame():
    frames = frames_from_pose_keypoint([_frame(BODY, 64, 80), _frame(BODY[::-1], 64, 80)])
    renders = pcdms_renders(frames, 40, 32)
    assert renders.shape == (2, 40, 32, 3) and renders.dtype == np.uint8
    assert np.array_equal(renders[1], render_pcdms(frames[1], 40, 32)) and renders[0].any()


def test_scfm_body_points_and_maps():
    (frame,) = frames_from_pose_keypoint([_frame(BODY, 64, 64)])
    points = scfm_body_points(frame, "target_pose")
    assert points.shape == (18, 2) and points[0].tolist() == [32, 10] and (points[16:] == -1).all()
    maps = scfm_pose_maps([points, points * 0.5], 64)
    assert maps.shape == (2, 20, 64, 64) and maps.dtype == torch.float32
    assert torch.equal(maps[0], torch.from_numpy(scfm_pose_map(points, size=64)))
    (empty,) = frames_from_pose_keypoint([{"people": [], "canvas_width": 8, "canvas_height": 8}])
    with pytest.raises(ValueError, match="target_pose: no person"):
        scfm_body_points(empty, "target_pose")
