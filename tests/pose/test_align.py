"""Alignment keeps the target's joint angles while matching the source's limb lengths."""
import numpy as np
import pytest

from posetransfer.pose.align import align_frames, fit_to_canvas
from posetransfer.pose.keypoints import LIMBS, Person, PoseFrame


def _random_body(rng, scale, offset):
    body = np.zeros((18, 3))
    body[:, :2] = rng.uniform(0, 1, (18, 2)) * scale + offset
    body[:, 2] = 1.0
    return body


def _angles(body):
    return {(a, b): np.arctan2(*(body[b - 1, 1::-1] - body[a - 1, 1::-1])) for a, b in LIMBS}


def _lengths(body):
    return {(a, b): np.linalg.norm(body[b - 1, :2] - body[a - 1, :2]) for a, b in LIMBS}


def test_per_limb_keeps_angles_and_takes_source_lengths():
    rng = np.random.default_rng(0)
    source = PoseFrame(512, 512, [Person(body=_random_body(rng, 400, 50))])
    hand = np.concatenate([rng.uniform(0, 100, (21, 2)), np.ones((21, 1))], axis=1)
    target_body = _random_body(rng, 150, 20)
    target = PoseFrame(512, 512, [Person(body=target_body, left_hand=hand)])
    out = align_frames([target], source, "per-limb lengths")[0].people[0]
    for limb, angle in _angles(target_body).items():
        assert _angles(out.body)[limb] == pytest.approx(angle, abs=1e-9)
        assert _lengths(out.body)[limb] == pytest.approx(_lengths(source.people[0].body)[limb], rel=1e-9)
    # the hand moved rigidly with the left wrist, scaled by the global factor
    offsets_before = hand[:, :2] - target_body[7, :2]
    offsets_after = out.left_hand[:, :2] - out.body[7, :2]
    ratio = np.linalg.norm(offsets_after, axis=1) / np.linalg.norm(offsets_before, axis=1)
    np.testing.assert_allclose(ratio, ratio[0])


def test_scale_translate_uses_first_frame_for_the_sequence():
    rng = np.random.default_rng(1)
    source_body = _random_body(rng, 300, 100)
    source = PoseFrame(512, 512, [Person(body=source_body)])
    body = source_body.copy()
    body[:, :2] = source_body[:, :2] * 0.5 + 7  # a half-size copy of the source, shifted
    walked = body.copy()
    walked[:, 0] += 20  # the second frame moved right by 20 px
    frames = align_frames([PoseFrame(512, 512, [Person(body=body)]), PoseFrame(512, 512, [Person(body=walked)])],
                          source, "scale+translate")
    np.testing.assert_allclose(frames[0].people[0].body, source_body, atol=1e-9)
    np.testing.assert_allclose(frames[1].people[0].body[:, 0], source_body[:, 0] + 40, atol=1e-9)  # motion x2


def test_missing_joints_and_modes():
    source = PoseFrame(100, 100, [Person(body=_random_body(np.random.default_rng(2), 50, 10))])
    target_body = _random_body(np.random.default_rng(3), 50, 10)
    target_body[[4, 10], :] = 0  # right wrist and ankle missing
    out = align_frames([PoseFrame(100, 100, [Person(body=target_body)])], source, "per-limb lengths")[0]
    assert np.all(out.people[0].body[[4, 10]] == 0)
    same = PoseFrame(100, 100, [Person(body=target_body)])
    assert align_frames([same], source, "none") == [same]
    with pytest.raises(ValueError, match="no person in the source"):
        align_frames([same], PoseFrame(100, 100), "scale+translate")
    with pytest.raises(ValueError, match="alignment must be one of"):
        align_frames([same], source, "warp")


def test_fit_to_canvas_keeps_aspect():
    frame = PoseFrame(200, 100, [Person(body=np.array([[200.0, 100.0, 1.0]] + [[0, 0, 0]] * 17))])
    fitted = fit_to_canvas(frame, 100, 100)
    np.testing.assert_allclose(fitted.people[0].body[0], [100.0, 75.0, 1.0])
