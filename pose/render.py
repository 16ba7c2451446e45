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
from .raster import Painter, ellipse_polys, fill_convex_poly

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


_HAND_EDGES = np.array(HAND_EDGES)
_HAND_EDGE_COLORS = np.array([_hand_edge_color(edge) for edge in range(len(HAND_EDGES))])


def _limb_ellipses(ends: list[tuple[np.ndarray, np.ndarray]], stick: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenPose limbs, each an ellipse between two points given as (xs, ys) pairs (x and y named as the original
    code computes them) -> `ellipse_polys` vertices and counts."""
    params = []
    for xs, ys in ends:
        x0, x1, y0, y1 = float(xs[0]), float(xs[1]), float(ys[0]), float(ys[1])
        length = ((y0 - y1) ** 2 + (x0 - x1) ** 2) ** 0.5
        angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
        params.append((int((x0 + x1) / 2), int((y0 + y1) / 2), int(length / 2), stick, int(angle)))
    table = np.array(params, dtype=np.int64).reshape(-1, 5)
    return ellipse_polys(table[:, :2], table[:, 2:4], table[:, 4])


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
    limbs, colors = [], []
    for limb, color in zip(LIMBS, COLORS):
        for person in people:
            a, b = limb[0] - 1, limb[1] - 1
            if _present(person.body, a) and _present(person.body, b):
                limbs.append((person.body[[a, b], 0] * size[0], person.body[[a, b], 1] * size[1]))
                colors.append(color)
    painter = Painter(canvas)
    painter.polygons(*_limb_ellipses(limbs, STICK_WIDTH), np.array(colors).reshape(-1, 3))
    canvas = (painter.paint() * 0.6).astype(np.uint8)
    painter = Painter(canvas)
    joints = [((int(p.body[j, 0] * size[0]), int(p.body[j, 1] * size[1])), color)
              for j, color in enumerate(COLORS) for p in people if _present(p.body, j)]
    painter.discs(np.array([c for c, _ in joints]), 4, np.array([k for _, k in joints]).reshape(-1, 3))
    for hand in [p.left_hand for p in people] + [p.right_hand for p in people]:
        if hand is not None:
            _draw_hand(painter, hand, size, line=1, dot=1)
    return resize_linear(painter.paint(), height, width)


def _hand_strokes(hand: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A hand's points in pixels (int() truncation, as the original), the edges drawn (both ends present and
    off pixel 0) and the points dotted."""
    present = hand[:, 2] > 0
    pixels = (hand[:, :2] * size).astype(np.int64)
    shown = present[_HAND_EDGES].all(axis=1) & (pixels[_HAND_EDGES].reshape(len(_HAND_EDGES), 4) > EPS).all(axis=1)
    return pixels, np.flatnonzero(shown), np.flatnonzero(present & (pixels > EPS).all(axis=1))


def _draw_hand(painter: Painter, hand: np.ndarray, size: np.ndarray, line: int, dot: int) -> None:
    """Edges coloured around the HSV wheel, then blue dots; missing or pixel-0 points are skipped."""
    pixels, edges, dots = _hand_strokes(hand, size)
    painter.lines(pixels[_HAND_EDGES[edges, 0]], pixels[_HAND_EDGES[edges, 1]], _HAND_EDGE_COLORS[edges], line)
    painter.discs(pixels[dots], dot, (0, 0, 255))


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
    people = frame.people
    if (width, height) != (frame.width, frame.height):  # at its own size the peer draws the pixels as they are
        scale = np.array([width / frame.width, height / frame.height])
        people = [p.mapped(lambda xy: xy * scale) for p in people]
    stick = _aux_stick(height, width, xinsr_stick_scaling)
    strokes = _AuxStrokes()
    for index, person in enumerate(people):
        strokes.add_person(index * _AUX_RANKS_PER_PERSON, person, draw_body, draw_hands, draw_face)
    return strokes.paint(Painter(canvas), stick)


# The peer draws person by person: body limbs, joints, left hand (edges, dots), right hand, face. Each kind
# of stroke is rasterised for all people at once, ranked in that order.
_AUX_BODY, _AUX_JOINTS, _AUX_HANDS, _AUX_FACE = 0, 20, 40, 140  # a hand takes 50 ranks (20 edges, 21 dots)
_AUX_RANKS_PER_PERSON = 256
_LIMB_ENDS = np.array(LIMBS) - 1  # (17, 2) body point indices of each limb's ends
_AUX_LIMB_COLORS = np.array([[int(float(c) * 0.6) for c in color] for color in COLORS[:len(LIMBS)]])


class _AuxStrokes:
    """The strokes of all people of a frame, gathered by kind, each with its rank in the drawing order."""

    def __init__(self) -> None:
        self.limbs: list[tuple[np.ndarray, np.ndarray]] = []
        self.limb_colors: list[list[int]] = []
        self.joints: list[np.ndarray] = []
        self.joint_colors: list[tuple[int, int, int]] = []
        self.edges: list[np.ndarray] = []
        self.edge_colors: list[np.ndarray] = []
        self.dots: list[np.ndarray] = []
        self.face: list[np.ndarray] = []
        self.ranks: dict[str, list[np.ndarray]] = {"limbs": [], "joints": [], "edges": [], "dots": [], "face": []}

    def add_person(self, base: int, person: Person, body: bool, hands: bool, face: bool) -> None:
        points = person.body
        if body:
            shown = points[:, 2] > 0
            limbs = np.flatnonzero(shown[_LIMB_ENDS].all(axis=1))
            self.limbs += [(points[_LIMB_ENDS[limb], 0], points[_LIMB_ENDS[limb], 1]) for limb in limbs]
            self.limb_colors += _AUX_LIMB_COLORS[limbs].tolist()
            self.ranks["limbs"].append(base + _AUX_BODY + limbs)
            joints = np.flatnonzero(shown[:len(COLORS)])
            self.joints.append(points[joints, :2].astype(np.int64))
            self.joint_colors += [COLORS[j] for j in joints]
            self.ranks["joints"].append(base + _AUX_JOINTS + joints)
        for side, hand in enumerate((person.left_hand, person.right_hand)):
            if hands and hand is not None:
                pixels, edges, dots = _hand_strokes(hand, np.ones(2))
                start = base + _AUX_HANDS + 50 * side
                self.edges.append(np.concatenate([pixels[_HAND_EDGES[edges, 0]], pixels[_HAND_EDGES[edges, 1]]], 1))
                self.edge_colors.append(_HAND_EDGE_COLORS[edges])
                self.ranks["edges"].append(start + edges)
                self.dots.append(pixels[dots])
                self.ranks["dots"].append(start + len(_HAND_EDGES) + dots)
        if face and person.face is not None:
            present = np.flatnonzero(person.face[:, 2] > 0)
            pixels = person.face[present, :2].astype(np.int64)  # int() truncation, as the peer
            shown = (pixels[:, 0] > EPS) & (pixels[:, 1] > EPS)
            self.face.append(pixels[shown])
            self.ranks["face"].append(base + _AUX_FACE + present[shown])

    def paint(self, painter: Painter, stick: int) -> np.ndarray:
        def joined(parts: list[np.ndarray], width: int) -> np.ndarray:
            return np.concatenate(parts).reshape(-1, width) if parts else np.zeros((0, width), dtype=np.int64)

        def ranks(kind: str) -> np.ndarray:
            return joined(self.ranks[kind], 1).reshape(-1)

        painter.polygons(*_limb_ellipses(self.limbs, stick), np.array(self.limb_colors).reshape(-1, 3),
                         ranks=ranks("limbs"))
        painter.discs(joined(self.joints, 2), 4, np.array(self.joint_colors).reshape(-1, 3), ranks=ranks("joints"))
        edges = joined(self.edges, 4)
        painter.lines(edges[:, :2], edges[:, 2:], joined(self.edge_colors, 3), 2, ranks=ranks("edges"))
        painter.discs(joined(self.dots, 2), 4, (0, 0, 255), ranks=ranks("dots"))
        painter.discs(joined(self.face, 2), 3, (255, 255, 255), ranks=ranks("face"))
        return painter.paint()


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
    joints = [j for j in range(len(COLORS)) if points[j, 0] != -1 and points[j, 1] != -1]
    painter = Painter(np.zeros((size, size, 3), dtype=np.uint8))
    painter.discs(points[joints].astype(np.int64), 4, np.array([COLORS[j] for j in joints]).reshape(-1, 3))
    canvas = painter.paint()
    distances = []
    for (a, b), color in zip(LIMBS, COLORS):
        xs, ys = points[[a - 1, b - 1], 0], points[[a - 1, b - 1], 1]
        if -1 in xs or -1 in ys:
            distances.append(np.ones((size, size), dtype=np.float32))
            continue
        polygon, _ = _limb_ellipses([(xs, ys)], STICK_WIDTH)
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
