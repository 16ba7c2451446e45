"""OpenCV-compatible drawing primitives in numpy (ARCHITECTURE decision 8: no OpenCV dependency).

Every pose renderer in this field draws with `cv2.ellipse2Poly` + `cv2.fillConvexPoly`, `cv2.circle(..., -1)`
and `cv2.line`; the models were trained on exactly those pixels. These functions reproduce OpenCV's integer
rasterisation rules (8-connected outlines, scanline fill with round-half-up edge ends, the midpoint circle,
thick lines clipped to the canvas grown by their thickness, then a polygon on a 1/65536 pixel grid plus round
caps) so our renders match pixel for pixel; tests compare against opencv-python 5.0 whenever `cv2` is installed.
Canvases are uint8 arrays (H,W,C) or (H,W); colours are sequences of C numbers rounded like `cv::Scalar`.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np

XY_SHIFT = 16  # OpenCV's sub-pixel grid for thick lines
XY_ONE = 1 << XY_SHIFT

# OpenCV tabulates sin at whole degrees with 7 decimals (float32); using math.sin would move polygon
# vertices across rounding boundaries.
_SIN_TABLE = np.round(np.sin(np.deg2rad(np.arange(451))), 7).astype(np.float32).astype(np.float64)


def _color(canvas: np.ndarray, color: Sequence[float] | float) -> np.ndarray:
    """A colour as the canvas dtype, rounded half-to-even and saturated like `cv::Scalar` -> uchar."""
    values = np.atleast_1d(np.asarray(color, dtype=np.float64))
    channels = 1 if canvas.ndim == 2 else canvas.shape[2]
    values = np.resize(values, channels) if values.size < channels else values[:channels]
    return np.clip(np.rint(values), 0, 255).astype(canvas.dtype)


def ellipse_poly(center: tuple[int, int], axes: tuple[int, int], angle: int, delta: int = 1) -> np.ndarray:
    """`cv2.ellipse2Poly(center, axes, angle, 0, 360, delta)`: int32 (N,2) vertices of a full ellipse."""
    angle = int(angle) % 360
    cos_a, sin_a = _SIN_TABLE[450 - angle], _SIN_TABLE[angle]
    degrees = np.minimum(np.arange(0, 360 + delta, delta), 360)
    x = axes[0] * _SIN_TABLE[450 - degrees]
    y = axes[1] * _SIN_TABLE[degrees]
    px = np.rint(center[0] + x * cos_a - y * sin_a).astype(np.int64)
    py = np.rint(center[1] + x * sin_a + y * cos_a).astype(np.int64)
    points = np.stack([px, py], axis=1)
    keep = np.ones(len(points), dtype=bool)
    keep[1:] = np.any(points[1:] != points[:-1], axis=1)  # consecutive duplicates only, as OpenCV
    points = points[keep]
    if len(points) == 1:
        points = np.array([center, center], dtype=np.int64)
    return points.astype(np.int32)


def _put(canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray, color: np.ndarray) -> None:
    inside = (xs >= 0) & (xs < canvas.shape[1]) & (ys >= 0) & (ys < canvas.shape[0])
    canvas[ys[inside], xs[inside]] = color


def _hline(canvas: np.ndarray, y: int, x1: int, x2: int, color: np.ndarray) -> None:
    if 0 <= y < canvas.shape[0] and x2 >= 0 and x1 < canvas.shape[1]:
        canvas[y, max(x1, 0):min(x2, canvas.shape[1] - 1) + 1] = color


def _line_points(p0: tuple[int, int], p1: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of OpenCV's 8-connected line iterator (drawn left to right, Bresenham error term)."""
    (x0, y0), (x1, y1) = p0, p1
    if x1 < x0:
        x0, y0, x1, y1 = x1, y1, x0, y0
    dx, dy = x1 - x0, y1 - y0
    step_y = 1 if dy >= 0 else -1
    dy = abs(dy)
    steep = dy > dx
    major, minor = (dy, dx) if steep else (dx, dy)
    # OpenCV's iterator starts with err = major - 2*minor and moves on the minor axis whenever err < 0;
    # the number of such moves after k steps has this closed form (checked against the iterator).
    k = np.arange(major + 1, dtype=np.int64)
    minor_moves = (2 * minor * k + major - 1) // (2 * major) if major else k
    if steep:
        return x0 + minor_moves, y0 + step_y * k
    return x0 + k, y0 + step_y * minor_moves


def _clip_line(width: int, height: int, p0: list[int], p1: list[int]) -> bool:
    """OpenCV's `clipLine`: move end points onto the canvas border; False if the line misses it."""
    right, bottom = width - 1, height - 1

    def code(p: list[int], with_y: bool = True) -> int:
        return (p[0] < 0) + (p[0] > right) * 2 + with_y * ((p[1] < 0) * 4 + (p[1] > bottom) * 8)

    c0, c1 = code(p0), code(p1)
    if (c0 & c1) == 0 and (c0 | c1) != 0:
        # each correction uses the other end as already moved, and truncates like a C cast
        if c0 & 12:
            a = 0 if c0 < 8 else bottom
            p0[0] += int((a - p0[1]) * (p1[0] - p0[0]) / (p1[1] - p0[1]))
            p0[1] = a
            c0 = code(p0, False)
        if c1 & 12:
            a = 0 if c1 < 8 else bottom
            p1[0] += int((a - p1[1]) * (p1[0] - p0[0]) / (p1[1] - p0[1]))
            p1[1] = a
            c1 = code(p1, False)
        if (c0 & c1) == 0 and (c0 | c1) != 0:
            if c0:
                a = 0 if c0 == 1 else right
                p0[1] += int((a - p0[0]) * (p1[1] - p0[1]) / (p1[0] - p0[0]))
                p0[0] = a
                c0 = 0
            if c1:
                a = 0 if c1 == 1 else right
                p1[1] += int((a - p1[0]) * (p1[1] - p0[1]) / (p1[0] - p0[0]))
                p1[0] = a
                c1 = 0
    return (c0 | c1) == 0


def _thin_line(canvas: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], col: np.ndarray) -> None:
    a, b = [int(p0[0]), int(p0[1])], [int(p1[0]), int(p1[1])]
    if not _clip_line(canvas.shape[1], canvas.shape[0], a, b):
        return
    xs, ys = _line_points((a[0], a[1]), (b[0], b[1]))
    _put(canvas, xs, ys, col)


def draw_line(canvas: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], color: Sequence[float],
              thickness: int = 1) -> None:
    """`cv2.line(canvas, p0, p1, color, thickness)` with the default 8-connected line type."""
    col = _color(canvas, color)
    p0, p1 = (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1]))
    if thickness <= 1:
        _thin_line(canvas, p0, p1, col)
        return
    # OpenCV first clips the line to the canvas grown by `thickness` on every side (found by comparison
    # with cv2 5.0: far-away end points would otherwise tilt the polygon's rounded edges differently).
    a, b = [p0[0] + thickness, p0[1] + thickness], [p1[0] + thickness, p1[1] + thickness]
    height, width = canvas.shape[:2]
    if _clip_line(width + 2 * thickness, height + 2 * thickness, a, b):
        _thick_line(canvas, (a[0] - thickness, a[1] - thickness), (b[0] - thickness, b[1] - thickness), col, thickness)


def _thick_line(canvas: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], col: np.ndarray,
                thickness: int) -> None:
    a = (p0[0] << XY_SHIFT, p0[1] << XY_SHIFT)
    b = (p1[0] << XY_SHIFT, p1[1] << XY_SHIFT)
    dx, dy = float(p0[0] - p1[0]), float(p1[1] - p0[1])
    length_sq = dx * dx + dy * dy
    half = thickness << (XY_SHIFT - 1)
    if length_sq > np.finfo(np.float64).eps:
        r = (half + (thickness & 1) * XY_ONE * 0.5) / math.sqrt(length_sq)
        ox, oy = int(np.rint(dy * r)), int(np.rint(dx * r))
        quad = [(a[0] + ox, a[1] + oy), (a[0] - ox, a[1] - oy), (b[0] - ox, b[1] - oy), (b[0] + ox, b[1] + oy)]
        _fill_convex(canvas, np.array(quad, dtype=np.int64), col, XY_SHIFT)
    radius = (half + (XY_ONE >> 1)) >> XY_SHIFT
    for point in (p0, p1):  # round caps
        _circle(canvas, point, radius, col)


def _line_fixed(canvas: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], col: np.ndarray) -> None:
    """The 8-connected outline OpenCV's polygon fill draws between points on the 1/65536 pixel grid."""
    a, b = list(p0), list(p1)
    if not _clip_line(canvas.shape[1] << XY_SHIFT, canvas.shape[0] << XY_SHIFT, a, b):
        return
    steep = abs(b[0] - a[0]) <= abs(b[1] - a[1])
    if steep:  # walk along the major axis: swap x and y, and swap back at the end
        a, b = a[::-1], b[::-1]
    if b[0] < a[0]:
        a, b = b, a
    (x0, y0), (x1, y1) = a, b
    step = _trunc_div((y1 - y0) << XY_SHIFT, (x1 - x0) | 1)
    k = np.arange(((x1 - x0) >> XY_SHIFT) + 1, dtype=np.int64)
    half = XY_ONE >> 1
    major = np.concatenate([[(x1 + half) >> XY_SHIFT], ((x0 + half) >> XY_SHIFT) + k])
    minor = np.concatenate([[(y1 + half) >> XY_SHIFT], (y0 + half + step * k) >> XY_SHIFT])
    xs, ys = (minor, major) if steep else (major, minor)
    _put(canvas, xs, ys, col)


def _clip_lines(width: int, height: int, p0: np.ndarray, p1: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_clip_line` for many lines at once (same steps and truncations): clipped (N,2) ends and which lines
    touch the canvas."""
    right, bottom = width - 1, height - 1
    x0, y0 = p0[:, 0].astype(np.int64), p0[:, 1].astype(np.int64)
    x1, y1 = p1[:, 0].astype(np.int64), p1[:, 1].astype(np.int64)

    def code(x, y, with_y=True):
        c = (x < 0).astype(np.int64) + (x > right) * 2
        return c + ((y < 0) * 4 + (y > bottom) * 8) if with_y else c

    def moved(a, p, q_num, q_den):  # trunc((a - p) * q_num / q_den), as the scalar code's int(float)
        return np.trunc((a - p) * q_num / np.where(q_den == 0, 1, q_den)).astype(np.int64)

    c0, c1 = code(x0, y0), code(x1, y1)
    partial = ((c0 & c1) == 0) & ((c0 | c1) != 0)
    first = partial & ((c0 & 12) != 0)
    a = np.where(c0 < 8, 0, bottom)
    x0 = np.where(first, x0 + moved(a, y0, x1 - x0, y1 - y0), x0)
    y0 = np.where(first, a, y0)
    c0 = np.where(first, code(x0, y0, False), c0)
    second = partial & ((c1 & 12) != 0)
    a = np.where(c1 < 8, 0, bottom)
    x1 = np.where(second, x1 + moved(a, y1, x1 - x0, y1 - y0), x1)
    y1 = np.where(second, a, y1)
    c1 = np.where(second, code(x1, y1, False), c1)
    still = partial & ((c0 & c1) == 0) & ((c0 | c1) != 0)
    third = still & (c0 != 0)
    a = np.where(c0 == 1, 0, right)
    y0 = np.where(third, y0 + moved(a, x0, y1 - y0, x1 - x0), y0)
    x0 = np.where(third, a, x0)
    c0 = np.where(third, 0, c0)
    fourth = still & (c1 != 0)
    a = np.where(c1 == 1, 0, right)
    y1 = np.where(fourth, y1 + moved(a, x1, y1 - y0, x1 - x0), y1)
    x1 = np.where(fourth, a, x1)
    c1 = np.where(fourth, 0, c1)
    return np.stack([x0, y0], axis=1), np.stack([x1, y1], axis=1), (c0 | c1) == 0


def _outline(canvas: np.ndarray, pts: np.ndarray, col: np.ndarray, shift: int) -> None:
    """The polygon's 8-connected outline (drawn first by OpenCV, so thin slivers still show), every edge
    clipped and rasterised together."""
    prev = np.roll(pts, 1, axis=0)
    if shift:
        for p, q in zip(prev, pts):
            _line_fixed(canvas, (int(p[0]) << (XY_SHIFT - shift), int(p[1]) << (XY_SHIFT - shift)),
                        (int(q[0]) << (XY_SHIFT - shift), int(q[1]) << (XY_SHIFT - shift)), col)
        return
    height, width = canvas.shape[:2]
    a, b, visible = _clip_lines(width, height, prev, pts)
    if not visible.any():
        return
    a, b = a[visible], b[visible]
    swap = b[:, 0] < a[:, 0]  # drawn left to right, as `_line_points`
    a, b = np.where(swap[:, None], b, a), np.where(swap[:, None], a, b)
    dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    step_y = np.where(dy >= 0, 1, -1)
    dy = np.abs(dy)
    steep = dy > dx
    major, minor = np.where(steep, dy, dx), np.where(steep, dx, dy)
    counts = major + 1
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    major_r, minor_r = np.repeat(major, counts), np.repeat(minor, counts)
    moves = np.where(major_r > 0, (2 * minor_r * k + major_r - 1) // np.maximum(2 * major_r, 1), k)
    steep_r, step_r = np.repeat(steep, counts), np.repeat(step_y, counts)
    xs = np.repeat(a[:, 0], counts) + np.where(steep_r, moves, k)
    ys = np.repeat(a[:, 1], counts) + step_r * np.where(steep_r, k, moves)
    canvas[ys, xs] = col


def _fill_convex(canvas: np.ndarray, pts: np.ndarray, col: np.ndarray, shift: int) -> None:
    """OpenCV's `FillConvexPoly` (8-connected outline, then a two-edge scanline fill).

    OpenCV walks two edge chains down from the top vertex, row by row. The chains change only at vertices, so
    the walk is simulated per vertex and the rows between two vertex events are filled in one step: x of an
    edge is x_start + dx * (rows since it started), exactly as the row loop accumulates it.
    """
    n = len(pts)
    delta = (1 << shift) >> 1
    _outline(canvas, pts, col, shift)
    xs_all, ys_all = pts[:, 0].astype(np.int64), pts[:, 1].astype(np.int64)
    ymin, ymax = (int(ys_all.min()) + delta) >> shift, (int(ys_all.max()) + delta) >> shift
    xmin, xmax = (int(xs_all.min()) + delta) >> shift, (int(xs_all.max()) + delta) >> shift
    height, width = canvas.shape[:2]
    if n < 3 or xmax < 0 or ymax < 0 or xmin >= width or ymin >= height:
        return
    ymax = min(ymax, height - 1)
    imin = int(np.argmin(ys_all))  # first vertex with the smallest y
    if _fill_monotone(canvas, xs_all << (XY_SHIFT - shift), (ys_all + delta) >> shift, imin, height, col):
        return
    xs_list, ys_list = xs_all.tolist(), ys_all.tolist()
    edges = [[imin, 1, -XY_ONE, 0, ymin], [imin, n - 1, -XY_ONE, 0, ymin]]  # idx, step, x, dx, end row
    remaining = n
    half = XY_ONE >> 1
    y = ymin
    events = []  # (first row, end row, x and dx of both edges): rows between two vertex events
    while True:
        for edge in edges:
            if y < edge[4]:
                continue
            idx0 = edge[0]
            idx = (idx0 + edge[1]) % n
            while True:
                remaining -= 1
                if remaining < 0:
                    break
                ty = (ys_list[idx] + delta) >> shift
                if ty > y:
                    xs = xs_list[idx0] << (XY_SHIFT - shift)
                    xe = xs_list[idx] << (XY_SHIFT - shift)
                    edge[4] = ty
                    edge[3] = _trunc_div((xe - xs) * 2 + (ty - y), 2 * (ty - y))
                    edge[2] = xs
                    edge[0] = idx
                    break
                idx0 = idx
                idx = (idx + edge[1]) % n
        if remaining < 0:
            break
        stop = min(edges[0][4], edges[1][4], ymax + 1)
        events.append((y, stop, edges[0][2], edges[0][3], edges[1][2], edges[1][3]))
        edges[0][2] += edges[0][3] * (stop - y)
        edges[1][2] += edges[1][3] * (stop - y)
        y = stop
        if y > ymax:
            break
    if not events:
        return
    first, end, x0, dx0, x1, dx1 = (np.array(v, dtype=np.int64) for v in zip(*events))
    counts = end - first
    step = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = np.repeat(first, counts) + step
    a = np.repeat(x0, counts) + np.repeat(dx0, counts) * step
    b = np.repeat(x1, counts) + np.repeat(dx1, counts) * step
    _fill_spans(canvas, rows, (np.minimum(a, b) + half) >> XY_SHIFT, (np.maximum(a, b) + half) >> XY_SHIFT, col)


def _chain_levels(order: np.ndarray, xs: np.ndarray, rows: np.ndarray, top: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One edge chain of OpenCV's walk in closed form: the distinct rounded rows r_k it passes, the x it
    starts from on each (the LAST vertex on that row, where the walk restarts) and its per-row step to the
    FIRST vertex of the next row, dx = trunc(((x1 - x0) * 2 + dr) / (2 * dr)). None if the chain is not
    monotone down to the bottom row `top` (then the walk itself is used)."""
    chain_rows = rows[order]
    end = int(np.argmax(chain_rows == top))  # first vertex on the bottom row
    chain_rows, chain = chain_rows[:end + 1], order[:end + 1]
    if np.any(np.diff(chain_rows) < 0):
        return None
    change = np.flatnonzero(np.diff(chain_rows) > 0)  # last vertex of each row before a step down
    if len(change) == 0:
        return None
    starts, ends = chain[change], chain[change + 1]
    levels, next_levels = chain_rows[change], chain_rows[change + 1]
    span = next_levels - levels
    numerator = (xs[ends] - xs[starts]) * 2 + span
    step = np.abs(numerator) // (2 * span) * np.sign(numerator)  # C division truncates toward zero
    return levels, xs[starts], step


def _fill_monotone(canvas: np.ndarray, xs: np.ndarray, rows: np.ndarray, imin: int, height: int,
                   col: np.ndarray) -> bool:
    """The scanline fill of `_fill_convex` for polygons whose two chains run monotonically from the top
    vertex to the bottom row (every convex polygon, e.g. OpenCV's ellipses and thick-line quads): each row's
    span from a vectorised lookup instead of the vertex-by-vertex walk. False when it does not apply."""
    n = len(xs)
    top, bottom = int(rows[imin]), int(rows.max())
    if bottom <= top:
        return True  # OpenCV's walk runs out of edges on the first row: outline only
    chains = []
    for direction in (1, -1):
        found = _chain_levels((imin + direction * np.arange(n)) % n, xs, rows, bottom)
        if found is None:
            return False
        chains.append(found)
    y = np.arange(top, min(bottom, height), dtype=np.int64)
    if len(y) == 0:
        return True
    edge_x = []
    for levels, starts, steps in chains:
        k = np.searchsorted(levels, y, side="right") - 1
        edge_x.append(starts[k] + steps[k] * (y - levels[k]))
    half = XY_ONE >> 1
    _fill_spans(canvas, y, (np.minimum(*edge_x) + half) >> XY_SHIFT, (np.maximum(*edge_x) + half) >> XY_SHIFT, col)
    return True


def _fill_spans(canvas: np.ndarray, rows: np.ndarray, left: np.ndarray, right: np.ndarray, col: np.ndarray) -> None:
    """Horizontal spans [left, right] on `rows`, clipped to the canvas, in one flat-index assignment."""
    height, width = canvas.shape[:2]
    left, right = np.maximum(left, 0), np.minimum(right, width - 1)
    keep = (rows >= 0) & (rows < height) & (right >= left)
    if not keep.any():
        return
    rows, left, right = rows[keep], left[keep], right[keep]
    counts = right - left + 1
    step = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    flat = canvas.reshape(height * width, -1) if canvas.ndim == 3 else canvas.reshape(-1)
    flat[np.repeat(rows * width + left, counts) + step] = col


def _trunc_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def fill_convex_poly(canvas: np.ndarray, polygon: np.ndarray, color: Sequence[float]) -> None:
    """`cv2.fillConvexPoly(canvas, polygon, color)` for integer vertices (N,2)."""
    _fill_convex(canvas, np.asarray(polygon, dtype=np.int64).reshape(-1, 2), _color(canvas, color), 0)


@lru_cache(maxsize=64)
def _disc_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) of every pixel of OpenCV's filled midpoint circle of `radius` (spans of its octants)."""
    spans = {}
    err, dx, dy, plus, minus = 0, radius, 0, 1, (radius << 1) - 1
    while dx >= dy:
        for row, half in ((-dy, dx), (dy, dx), (-dx, dy), (dx, dy)):
            spans[row] = max(spans.get(row, -1), half)
        dy += 1
        err += plus
        plus += 2
        if err > 0:
            err -= minus
            dx -= 1
            minus -= 2
    rows = [(row, col) for row, half in spans.items() for col in range(-half, half + 1)]
    offsets = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return offsets[:, 0], offsets[:, 1]


def _circle(canvas: np.ndarray, center: tuple[int, int], radius: int, col: np.ndarray) -> None:
    if radius < 0:
        return
    dys, dxs = _disc_offsets(int(radius))
    _put(canvas, center[0] + dxs, center[1] + dys, col)


def fill_circles(canvas: np.ndarray, centers: np.ndarray, radius: int, color: Sequence[float]) -> None:
    """Many `cv2.circle(canvas, c, radius, color, -1)` of one colour in one assignment (same pixels: discs of
    one colour may overlap in any order)."""
    centers = np.asarray(centers, dtype=np.int64).reshape(-1, 2)
    if len(centers) == 0 or radius < 0:
        return
    dys, dxs = _disc_offsets(int(radius))
    _put(canvas, (centers[:, :1] + dxs).ravel(), (centers[:, 1:] + dys).ravel(), _color(canvas, color))


def fill_circle(canvas: np.ndarray, center: tuple[int, int], radius: int, color: Sequence[float]) -> None:
    """`cv2.circle(canvas, center, radius, color, thickness=-1)`."""
    _circle(canvas, (int(center[0]), int(center[1])), int(radius), _color(canvas, color))
