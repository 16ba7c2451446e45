"""Reference renders drawn with OpenCV itself (optional dev dependency), written from DWPOSE.md §7 and
SCFM.md §4, used only to check our numpy rasteriser pixel for pixel when `cv2` is importable."""
from __future__ import annotations

import math

import numpy as np

from posetransfer.pose.keypoints import HAND_EDGES, LIMBS
from posetransfer.pose.render import COLORS


def _limb(cv2, canvas, p, q, color, stick=4):
    mx, my = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
    length = math.hypot(p[1] - q[1], p[0] - q[0])
    angle = math.degrees(math.atan2(p[1] - q[1], p[0] - q[0]))
    poly = cv2.ellipse2Poly((int(mx), int(my)), (int(length / 2), stick), int(angle), 0, 360, 1)
    cv2.fillConvexPoly(canvas, poly, color)
    return poly


def _hsv(edge):
    import colorsys
    return [c * 255 for c in colorsys.hsv_to_rgb(edge / 20.0, 1.0, 1.0)]


def aux_render(cv2, people, height, width):
    """people: list of dicts with 'body' (18 x (x,y) or None), 'hands' [list of 21 or None], 'face'."""
    canvas = np.zeros((height, width, 3), np.uint8)
    for person in people:
        body = person["body"]
        for (a, b), color in zip(LIMBS, COLORS):
            if body[a - 1] is not None and body[b - 1] is not None:
                _limb(cv2, canvas, body[a - 1], body[b - 1], [int(c * 0.6) for c in color])
        for point, color in zip(body, COLORS):
            if point is not None:
                cv2.circle(canvas, (int(point[0]), int(point[1])), 4, color, -1)
        for hand in person["hands"]:
            if hand is None:
                continue
            for edge, (i, j) in enumerate(HAND_EDGES):
                if hand[i] is None or hand[j] is None:
                    continue
                p, q = [int(v) for v in hand[i]], [int(v) for v in hand[j]]
                if min(p + q) > 0.01:
                    cv2.line(canvas, tuple(p), tuple(q), _hsv(edge), thickness=2)
            for point in hand:
                if point is not None and int(point[0]) > 0.01 and int(point[1]) > 0.01:
                    cv2.circle(canvas, (int(point[0]), int(point[1])), 4, (0, 0, 255), -1)
        for point in person["face"] or []:
            if point is not None and int(point[0]) > 0.01 and int(point[1]) > 0.01:
                cv2.circle(canvas, (int(point[0]), int(point[1])), 3, (255, 255, 255), -1)
    return canvas


def scfm_map(cv2, points, size=256):
    canvas = np.zeros((size, size, 3), np.uint8)
    for (x, y), color in zip(points, COLORS):
        if x != -1 and y != -1:
            cv2.circle(canvas, (int(x), int(y)), 4, color, -1)
    maps = []
    for (a, b), color in zip(LIMBS, COLORS):
        p, q = points[a - 1], points[b - 1]
        if -1 in (p[0], p[1], q[0], q[1]):
            maps.append(np.ones((size, size), np.float32))
            continue
        copy = canvas.copy()
        poly = _limb(cv2, copy, p, q, color)
        canvas = cv2.addWeighted(canvas, 0.4, copy, 0.6, 0)
        mask = np.zeros((size, size), np.uint8)
        cv2.fillConvexPoly(mask, poly, 255)
        dist = cv2.distanceTransform(255 - mask, cv2.DIST_L1, 3)
        maps.append(np.clip(dist / 3, 0, 255).astype(np.uint8) / 255.0)
    rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).transpose(2, 0, 1) / 255.0
    return np.concatenate([rgb, np.stack(maps)]).astype(np.float32)
