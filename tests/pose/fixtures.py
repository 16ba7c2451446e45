"""Shared pose test data (no pytest fixtures: plain builders importable from other test folders)."""
import numpy as np


def _flat(points):
    return [v for x, y in points for v in ((float(x), float(y), 1.0) if x or y else (0.0, 0.0, 0.0))]


def aux_fixture():
    """A frame exactly as comfyui_controlnet_aux's DWPose node emits it: absolute pixels, c = 1.0 / 0,0,0,
    null face and hands when disabled or not found, canvas = input size."""
    rng = np.random.default_rng(3)
    body = rng.uniform(5, 250, (18, 2)).round(3)
    body[[16, 17]] = 0  # ears not found
    hand = rng.uniform(5, 250, (21, 2)).round(3)
    face = rng.uniform(5, 250, (70, 2)).round(3)
    return [{
        "people": [
            {"pose_keypoints_2d": _flat(body), "face_keypoints_2d": _flat(face),
             "hand_left_keypoints_2d": _flat(hand), "hand_right_keypoints_2d": None},
            {"pose_keypoints_2d": [0.0] * 54, "face_keypoints_2d": None,
             "hand_left_keypoints_2d": None, "hand_right_keypoints_2d": None},
        ],
        "canvas_height": 256, "canvas_width": 320,
    }]


def present_points(frame) -> np.ndarray:
    """(N,3) x, y, score of the present points of every part of every person of `frame`, once every stored value
    (present or not) was checked finite."""
    points = [np.zeros((0, 3))]
    for person in frame.people:
        for part in person.parts().values():
            if part is not None:
                assert np.isfinite(part).all()
                points.append(part[part[:, 2] > 0])
    return np.concatenate(points)
