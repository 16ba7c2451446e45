"""OpenCV's integer rasterisation rules for many primitives at once (the kernels behind `raster.py`).

Every function takes arrays of primitives and returns the pixels they cover as (ys, xs, owner), `owner` being
the index of the primitive each pixel belongs to, so a whole frame of limbs, lines and dots is rasterised in
a few dozen numpy calls instead of thousands. The rules are OpenCV's (imgproc/drawing.cpp, checked pixel
for pixel against opencv-python in tests/pose/test_render.py):

- `clip_lines`: `clipLine`, with its double arithmetic and truncating casts.
- `int_lines`: the 8-connected line iterator used for 1-px lines and integer polygon outlines.
- `fixed_lines`: the outline of polygons given on the 1/65536-pixel grid (thick lines).
- `convex_spans`: `FillConvexPoly`'s two-edge scanline fill, in closed form per edge chain.
- `disc_offsets`: the filled midpoint circle.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

XY_SHIFT = 16  # OpenCV's sub-pixel grid for thick lines
XY_ONE = 1 << XY_SHIFT
_HALF = XY_ONE >> 1

Pixels = tuple[np.ndarray, np.ndarray, np.ndarray]  # ys, xs, owner


def segment_index(counts: np.ndarray) -> np.ndarray:
    """For segments of the given lengths laid end to end: each element's index within its segment."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def _trunc_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C integer division (truncates toward zero)."""
    return np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))


def clip_lines(width: int, height: int, p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's `clipLine` for (N,2) end points: each end moved onto the border along the line, in double
    arithmetic truncated like a C cast, the second correction using the first as already made. Returns the
    clipped ends and which lines touch the canvas."""
    right, bottom = width - 1, height - 1
    x0, y0 = p0[:, 0].astype(np.int64), p0[:, 1].astype(np.int64)
    x1, y1 = p1[:, 0].astype(np.int64), p1[:, 1].astype(np.int64)

    def code(x, y, with_y=True):
        c = (x < 0).astype(np.int64) + (x > right) * 2
        return c + ((y < 0) * 4 + (y > bottom) * 8) if with_y else c

    def moved(a, p, num, den):  # (int64)((double)(a - p) * num / den)
        return np.trunc((a - p).astype(np.float64) * num / np.where(den == 0, 1, den)).astype(np.int64)

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


def int_lines(width: int, height: int, p0: np.ndarray, p1: np.ndarray) -> Pixels:
    """8-connected 1-px lines between integer (N,2) end points, clipped to the canvas, drawn left to right
    with OpenCV's Bresenham error term (it moves on the minor axis whenever err = major - 2*minor*k < 0,
    which after k steps has happened (2*minor*k + major - 1) // (2*major) times)."""
    a, b, visible = clip_lines(width, height, p0, p1)
    owner = np.flatnonzero(visible)
    a, b = a[owner], b[owner]
    swap = b[:, 0] < a[:, 0]
    a, b = np.where(swap[:, None], b, a), np.where(swap[:, None], a, b)
    dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    step_y = np.where(dy >= 0, 1, -1)
    dy = np.abs(dy)
    steep = dy > dx
    major, minor = np.where(steep, dy, dx), np.where(steep, dx, dy)
    counts = major + 1
    k = segment_index(counts)
    major_r, minor_r = np.repeat(major, counts), np.repeat(minor, counts)
    moves = np.where(major_r > 0, (2 * minor_r * k + major_r - 1) // np.maximum(2 * major_r, 1), k)
    steep_r = np.repeat(steep, counts)
    xs = np.repeat(a[:, 0], counts) + np.where(steep_r, moves, k)
    ys = np.repeat(a[:, 1], counts) + np.repeat(step_y, counts) * np.where(steep_r, k, moves)
    return ys, xs, np.repeat(owner, counts)


def fixed_lines(width: int, height: int, p0: np.ndarray, p1: np.ndarray) -> Pixels:
    """The outline OpenCV's polygon fill draws between points on the 1/65536 pixel grid: clipped to the
    canvas on that grid, walked along the major axis one pixel at a time from the rounded start, plus the
    rounded end point first."""
    a, b, visible = clip_lines(width << XY_SHIFT, height << XY_SHIFT, p0, p1)
    owner = np.flatnonzero(visible)
    a, b = a[owner], b[owner]
    steep = np.abs(b[:, 0] - a[:, 0]) <= np.abs(b[:, 1] - a[:, 1])
    a, b = np.where(steep[:, None], a[:, ::-1], a), np.where(steep[:, None], b[:, ::-1], b)
    swap = b[:, 0] < a[:, 0]
    a, b = np.where(swap[:, None], b, a), np.where(swap[:, None], a, b)
    (x0, y0), (x1, y1) = a.T, b.T
    step = _trunc_div((y1 - y0) << XY_SHIFT, (x1 - x0) | 1)
    counts = ((x1 - x0) >> XY_SHIFT) + 2  # the end point, then one pixel per whole step from the start
    k = segment_index(counts) - 1
    start = k < 0
    k = np.maximum(k, 0)
    major = np.where(start, np.repeat((x1 + _HALF) >> XY_SHIFT, counts), np.repeat((x0 + _HALF) >> XY_SHIFT, counts) + k)
    minor = np.where(start, np.repeat((y1 + _HALF) >> XY_SHIFT, counts),
                     (np.repeat(y0 + _HALF, counts) + np.repeat(step, counts) * k) >> XY_SHIFT)
    steep_r = np.repeat(steep, counts)
    return np.where(steep_r, major, minor), np.where(steep_r, minor, major), np.repeat(owner, counts)


def _first_per_segment(mask: np.ndarray, index: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per segment, the smallest `index` where `mask` holds (a large number where it never does)."""
    return np.minimum.reduceat(np.where(mask, index, np.iinfo(np.int64).max), starts)


def convex_spans(xs: np.ndarray, ys: np.ndarray, rows: np.ndarray, counts: np.ndarray, height: int
                 ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """`FillConvexPoly`'s scanline fill for polygons whose two edge chains run monotonically from the top
    vertex (the first with the smallest y) down to the bottom row: every convex polygon, e.g. OpenCV's
    ellipses and thick-line quads.

    xs: vertex x on the 1/65536 grid, ys: vertex y as given (the top vertex is the first smallest of these),
    rows: their rounded rows, counts: vertices per polygon (>= 3). OpenCV walks both chains row by row, restarting each edge at
    the LAST vertex of a row and stepping by dx = trunc(((x1 - x0) * 2 + dr) / (2 * dr)) towards the FIRST
    vertex of the next row; here each chain's (row, x, dx) breakpoints are found at once and every row looks
    its edges up. Returns the spans (row, left, right, polygon) of rows top .. bottom-1 within [0, height),
    and the indices of polygons whose chains are not monotone (their rows are not in the spans: the caller
    walks them)."""
    count = len(counts)
    starts = np.cumsum(counts) - counts
    local = segment_index(counts)
    n = np.repeat(counts, counts)
    imin = _first_per_segment(ys == np.repeat(np.minimum.reduceat(ys, starts), counts), local, starts)
    top, bottom = rows[starts + imin], np.maximum.reduceat(rows, starts)
    chains, broken = [], np.zeros(count, dtype=bool)
    polygon = np.repeat(np.arange(count), counts)
    for direction in (1, -1):
        order = np.repeat(starts, counts) + (np.repeat(imin, counts) + direction * local) % n
        chain_rows = rows[order]
        end = np.repeat(_first_per_segment(chain_rows == np.repeat(bottom, counts), local, starts), counts)
        pair = local < end  # (j, j+1) both on the chain down to its first vertex on the bottom row
        next_order, next_rows = np.roll(order, -1), np.roll(chain_rows, -1)
        broken |= np.logical_or.reduceat(pair & (next_rows < chain_rows), starts)
        change = np.flatnonzero(pair & (next_rows > chain_rows))  # last vertex of a row before a step down
        levels, span = chain_rows[change], next_rows[change] - chain_rows[change]
        x_start = xs[order[change]]
        step = _trunc_div((xs[next_order[change]] - x_start) * 2 + span, 2 * span)
        chains.append((polygon[change], levels, x_start, step))
    first_row, last_row = np.maximum(top, 0), np.minimum(bottom, height)
    fill = ~broken & (last_row > first_row)
    row_counts = np.where(fill, last_row - first_row, 0)
    owner = np.repeat(np.arange(count), row_counts)
    y = np.repeat(first_row, row_counts) + segment_index(row_counts)
    low = int(rows.min())
    stride = int(rows.max()) - low + 2
    edge_x = []
    for chain_polygon, levels, x_start, step in chains:
        keys = chain_polygon * stride + (levels - low)  # sorted: by polygon, then by row down the chain
        k = np.searchsorted(keys, owner * stride + (y - low), side="right") - 1
        edge_x.append(x_start[k] + step[k] * (y - levels[k]))
    left = (np.minimum(*edge_x) + _HALF) >> XY_SHIFT
    right = (np.maximum(*edge_x) + _HALF) >> XY_SHIFT
    return (y, left, right, owner), np.flatnonzero(broken & (bottom > top))


def walk_spans(xs: np.ndarray, ys: np.ndarray, rows: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`FillConvexPoly`'s own row-by-row walk for one polygon (any vertex order): (row, left, right) spans.
    Used for polygons `convex_spans` cannot take (e.g. self-intersecting input to `fill_convex_poly`).
    The chains change only at vertices, so the walk is simulated per vertex and the rows between two vertex
    events are produced in one step: x of an edge is x_start + dx * (rows since it started)."""
    n = len(xs)
    xs_list, ys_list = xs.tolist(), rows.tolist()
    imin = int(np.argmin(ys))
    ymin, ymax = ys_list[imin], min(int(rows.max()), height - 1)
    edges = [[imin, 1, -XY_ONE, 0, ymin], [imin, n - 1, -XY_ONE, 0, ymin]]  # idx, step, x, dx, end row
    remaining = n
    y = ymin
    events = []  # (first row, end row, x and dx of both edges)
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
                ty = ys_list[idx]
                if ty > y:
                    edge[4] = ty
                    edge[3] = int(_trunc_div(np.int64((xs_list[idx] - xs_list[idx0]) * 2 + (ty - y)),
                                             np.int64(2 * (ty - y))))
                    edge[2] = xs_list[idx0]
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
    first, end, x0, dx0, x1, dx1 = (np.array(v, dtype=np.int64).reshape(-1) for v in zip(*events or [[]] * 6))
    visible = np.maximum(first, 0)  # rows above the canvas are walked (x accumulates) but not produced
    counts = np.maximum(end - visible, 0)
    step = np.repeat(visible - first, counts) + segment_index(counts)
    a = np.repeat(x0, counts) + np.repeat(dx0, counts) * step
    b = np.repeat(x1, counts) + np.repeat(dx1, counts) * step
    return np.repeat(first, counts) + step, (np.minimum(a, b) + _HALF) >> XY_SHIFT, (np.maximum(a, b) + _HALF) >> XY_SHIFT


@lru_cache(maxsize=64)
def disc_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
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
    offsets = np.array([(row, col) for row, half in spans.items() for col in range(-half, half + 1)],
                       dtype=np.int64).reshape(-1, 2)
    return offsets[:, 0], offsets[:, 1]
