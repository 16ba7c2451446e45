"""Skeleton renderers: PCDMs style, comfyui_controlnet_aux style, and SCFM's 20-channel pose map.

All three draw the ControlNet/OpenPose skeleton with OpenCV's rasterisation rules (`raster.py`), each with
the conventions of what its consumer was trained on (DWPOSE.md §7, SCFM.md §4). Frames are in pixels of
their own canvas; the renderers map them onto the requested output size (stretching per axis when the
aspect ratios differ — fit the frame first if that matters). Stick width never depends on the input size.
"""
from __future__ import annotations

import math

import numpy as np

from .imageops import resize_linear
from .keypoints import HAND_EDGES, LIMBS, Person, PoseFrame
from .raster import draw_line, ellipse_poly, fill_circle, fill_circles, fill_convex_poly

# ControlNet's 18 OpenPose colours (RGB); limb i and joint i use colour i.
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
          (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
          (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
STICK_WIDTH = 4
EPS = 0.01  # hand/face points at pixel 0 are treated as missing by every OpenPose drawer
PCDMS_DETECT_RESOLUTION = 512  # PCDMs drew its poses at this short side (rounded to multiples of 64)
STYLES = ("pcdms", "controlnet_aux")


def _hand_edge_color(edge: int) -> np.ndarray:
    """matplotlib's hsv_to_rgb([edge/20, 1, 1]) * 255, evaluated with its exact float steps."""
    h, s, v = edge / float(len(HAND_EDGES)), 1.0, 1.0
    i = int(h * 6.0)
    f = (h * 6.0) - i
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
    return np.array(rgb) * 255


def _limb_polygon(xs: np.ndarray, ys: np.ndarray, stick: int) -> np.ndarray:
    """The OpenPose limb: an ellipse between two points (x and y named as the original code computes them)."""
    mean_x, mean_y = np.mean(xs), np.mean(ys)
    length = ((ys[0] - ys[1]) ** 2 + (xs[0] - xs[1]) ** 2) ** 0.5
    angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
    return ellipse_poly((int(mean_x), int(mean_y)), (int(length / 2), stick), int(angle))


def _present(part: np.ndarray | None, index: int) -> bool:
    return part is not None and part[index, 2] > 0


# ------------------------------------------------------------------------------------------------ PCDMs
def pcdms_draw_size(height: int, width: int) -> tuple[int, int]:
    """(H, W) PCDMs draws at for an output of height x width: short side 512, both sides rounded to 64."""
    k = PCDMS_DETECT_RESOLUTION / min(height, width)
    return int(np.round(height * k / 64.0)) * 64, int(np.round(width * k / 64.0)) * 64


def render_pcdms(frame: PoseFrame, height: int, width: int) -> np.ndarray:
    """PCDMs' training style for ALL people of `frame` -> uint8 (height, width, 3) RGB on black.

    Drawn at the 512-class size (`pcdms_draw_size`) like PCDMs' `single_extract_pose.py`: every limb of every
    person (colour i, stick width 4), then the whole canvas x0.6 with uint8 truncation, then joints (radius 4),
    then hands (all left hands, then all right hands: 1-px lines, radius-1 blue dots); no face, no feet.
    Then resized bilinearly to the output size (the blur at 1024 is part of the style).
    """
    draw_h, draw_w = pcdms_draw_size(height, width)
    canvas = np.zeros((draw_h, draw_w, 3), dtype=np.uint8)
    # PCDMs normalised by the detection size, then multiplied back: keep that order for identical truncation.
    norm = np.array([frame.width, frame.height], dtype=np.float64)
    size = np.array([draw_w, draw_h], dtype=np.float64)
    people = [p.mapped(lambda xy: xy / norm) for p in frame.people]
    for limb, color in zip(LIMBS, COLORS):
        for person in people:
            a, b = limb[0] - 1, limb[1] - 1
            if _present(person.body, a) and _present(person.body, b):
                xs = person.body[[a, b], 0] * size[0]
                ys = person.body[[a, b], 1] * size[1]
                fill_convex_poly(canvas, _limb_polygon(xs, ys, STICK_WIDTH), color)
    canvas = (canvas * 0.6).astype(np.uint8)
    for joint, color in enumerate(COLORS):
        for person in people:
            if _present(person.body, joint):
                x, y = person.body[joint, :2]
                fill_circle(canvas, (int(x * size[0]), int(y * size[1])), 4, color)
    hands = [p.left_hand for p in people] + [p.right_hand for p in people]
    for hand in hands:
        if hand is not None:
            _draw_hand(canvas, hand, size, line=1, dot=1)
    return resize_linear(canvas, height, width)


def _draw_hand(canvas: np.ndarray, hand: np.ndarray, size: np.ndarray, line: int, dot: int) -> None:
    """Edges coloured around the HSV wheel, then blue dots; missing or pixel-0 points are skipped."""
    pixels = [(int(x * size[0]), int(y * size[1])) if s > 0 else None for x, y, s in hand]
    for edge, (i, j) in enumerate(HAND_EDGES):
        p, q = pixels[i], pixels[j]
        if p is not None and q is not None and min(*p, *q) > EPS:
            draw_line(canvas, p, q, _hand_edge_color(edge), thickness=line)
    dots = [p for p in pixels if p is not None and p[0] > EPS and p[1] > EPS]
    fill_circles(canvas, np.array(dots, dtype=np.int64).reshape(-1, 2), dot, (0, 0, 255))  # one colour: any order


# ------------------------------------------------------------------------------------ controlnet_aux
def _aux_stick(height: int, width: int, xinsr_stick_scaling: bool) -> int:
    if not xinsr_stick_scaling:
        return STICK_WIDTH
    side = max(height, width)  # xinsir's SDXL OpenPose ControlNet wants thicker sticks on large canvases
    return STICK_WIDTH * (1 if side < 500 else min(2 + side // 1000, 7))


def render_controlnet_aux(frame: PoseFrame, height: int, width: int, draw_body: bool = True,
                          draw_hands: bool = True, draw_face: bool = True,
                          xinsr_stick_scaling: bool = False) -> np.ndarray:
    """comfyui_controlnet_aux's DWPose drawing for all people -> uint8 (height, width, 3) RGB on black.

    Per person: limbs filled with int(colour x 0.6), joints radius 4 in full colour, then left and right hand
    (2-px lines, radius-4 blue dots), then the face (radius-3 white dots). Drawn directly at the output size:
    at the frame's own canvas size this is pixel-identical to the peer's render of the same POSE_KEYPOINT.
    """
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    if (width, height) == (frame.width, frame.height):
        scale = np.ones(2)  # the peer draws pixel coordinates as they are; don't risk a 1-ulp product
    else:
        scale = np.array([width / frame.width, height / frame.height])
    ones = np.ones(2)
    stick = _aux_stick(height, width, xinsr_stick_scaling)
    for person in (p.mapped(lambda xy: xy * scale) for p in frame.people):
        if draw_body:
            _aux_body(canvas, person, stick)
        if draw_hands:
            for hand in (person.left_hand, person.right_hand):
                if hand is not None:
                    _draw_hand(canvas, hand, ones, line=2, dot=4)
        if draw_face and person.face is not None:
            face = person.face[person.face[:, 2] > 0, :2].astype(np.int64)  # int() truncation, as the peer
            face = face[(face[:, 0] > EPS) & (face[:, 1] > EPS)]
            fill_circles(canvas, face, 3, (255, 255, 255))
    return canvas


def _aux_body(canvas: np.ndarray, person: Person, stick: int) -> None:
    body = person.body
    for (a, b), color in zip(LIMBS, COLORS):
        if _present(body, a - 1) and _present(body, b - 1):
            polygon = _limb_polygon(body[[a - 1, b - 1], 0], body[[a - 1, b - 1], 1], stick)
            fill_convex_poly(canvas, polygon, [int(float(c) * 0.6) for c in color])
    for joint, color in enumerate(COLORS):
        if _present(body, joint):
            fill_circle(canvas, (int(body[joint, 0]), int(body[joint, 1])), 4, color)


# ------------------------------------------------------------------------------------------------ SCFM
def _l1_distance(mask: np.ndarray) -> np.ndarray:
    """City-block distance of every pixel to the nearest True pixel (`cv2.distanceTransform(DIST_L1)` on the
    inverted mask); L1 is separable, and each 1-D pass is a running minimum of (d - i) + i."""
    big = np.float64(1e30)  # OpenCV leaves FLT_MAX where there is no zero pixel; either clips to 255 below
    dist = np.where(mask, 0.0, big)
    for axis in (0, 1):
        dist = np.moveaxis(dist, axis, 0)
        idx = np.arange(dist.shape[0], dtype=np.float64)[:, None]
        forward = np.minimum.accumulate(dist - idx, axis=0) + idx
        backward = (np.minimum.accumulate((dist + idx)[::-1], axis=0) - idx[::-1])[::-1]
        dist = np.moveaxis(np.minimum(forward, backward), 0, axis)
    return dist


def scfm_pose_map(body18_xy: np.ndarray, size: int = 256) -> np.ndarray:
    """SCFM's pose input: (18,2) OpenPose-18 pixels on the size x size model canvas (-1 = missing) ->
    float32 (20, size, size) in [0,1].

    Channels 0-2: joints first (radius 4), then each limb filled on a copy and blended 0.4 old + 0.6 new,
    with the colours written as BGR and the result read as RGB (SCFM's data loader). Channels 3-19: per limb,
    the L1 distance to its polygon / 3, clipped to 255, truncated to uint8, / 255 (1.0 when the limb is missing).
    """
    points = np.asarray(body18_xy, dtype=np.float64)
    if points.shape != (18, 2):
        raise ValueError(f"body18_xy must be (18,2) pixels with -1 for missing points, got {points.shape}")
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    for joint, color in enumerate(COLORS):
        x, y = points[joint]
        if x != -1 and y != -1:
            fill_circle(canvas, (int(x), int(y)), 4, color)
    distances = []
    for (a, b), color in zip(LIMBS, COLORS):
        xs, ys = points[[a - 1, b - 1], 0], points[[a - 1, b - 1], 1]
        if -1 in xs or -1 in ys:
            distances.append(np.ones((size, size), dtype=np.float32))
            continue
        polygon = _limb_polygon(xs, ys, STICK_WIDTH)
        painted = canvas.copy()
        fill_convex_poly(painted, polygon, color)
        blended = np.float32(0.4) * canvas.astype(np.float32) + np.float32(0.6) * painted.astype(np.float32)
        canvas = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        limb = np.zeros((size, size), dtype=np.uint8)
        fill_convex_poly(limb, polygon, 255)
        steps = np.clip(_l1_distance(limb > 0) / 3, 0, 255).astype(np.uint8)
        distances.append(steps.astype(np.float32) / 255.0)
    skeleton = canvas[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0
    return np.concatenate([skeleton, np.stack(distances)]).astype(np.float32)
