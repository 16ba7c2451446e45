"""OpenCV-compatible drawing primitives in numpy (ARCHITECTURE decision 8: no OpenCV dependency).

Every pose renderer in this field draws with `cv2.ellipse2Poly` + `cv2.fillConvexPoly`, `cv2.circle(..., -1)`
and `cv2.line`; the models were trained on exactly those pixels. These functions reproduce OpenCV's integer
rasterisation rules (8-connected outlines, scanline fill with round-half-up edge ends, the midpoint circle,
thick lines clipped to the canvas grown by their thickness, then a polygon on a 1/65536 pixel grid plus round
caps) so our renders match pixel for pixel; tests compare against opencv-python 5.x whenever `cv2` is installed.
Where `cv2` is installed, `Painter` draws with OpenCV's own calls instead (`native.py`).
Canvases are uint8 arrays (H,W,C) or (H,W); colours are sequences of C numbers rounded like `cv::Scalar`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .native import opencv
from .scanline import (XY_ONE, XY_SHIFT, clip_lines, convex_spans, disc_offsets, fixed_lines, int_lines,
                       segment_index, walk_spans)

# OpenCV tabulates sin at whole degrees with 7 decimals (float32); using math.sin would move polygon
# vertices across rounding boundaries.
_SIN_TABLE = np.round(np.sin(np.deg2rad(np.arange(451))), 7).astype(np.float32).astype(np.float64)


def _color(canvas: np.ndarray, color: Sequence[float] | float) -> np.ndarray:
    """A colour as the canvas dtype, rounded half-to-even and saturated like `cv::Scalar` -> uchar."""
    values = np.atleast_1d(np.asarray(color, dtype=np.float64))
    channels = 1 if canvas.ndim == 2 else canvas.shape[2]
    values = np.resize(values, channels) if values.size < channels else values[:channels]
    return np.clip(np.rint(values), 0, 255).astype(canvas.dtype)


@dataclass
class _Strokes:
    """Strokes of one kind added together: their geometry as the Painter method took it, ranks and colours."""

    kind: str  # "polygons", "discs" or "lines"
    geometry: tuple
    ranks: np.ndarray
    colors: np.ndarray  # (count, channels) in the canvas dtype


# OpenCV takes coordinates as int; far beyond any canvas the numpy kernels (int64) handle them instead
_OPENCV_COORDINATES = 1 << 30
_OPENCV_THICKNESS = 32767  # cv::MAX_THICKNESS


def _opencv_draws(canvas: np.ndarray, batches: list[_Strokes]) -> bool:
    if canvas.dtype != np.uint8 or (canvas.ndim == 3 and canvas.shape[2] > 4):
        return False
    if any(batch.kind == "lines" and batch.geometry[2] > _OPENCV_THICKNESS for batch in batches):
        return False
    return all(np.abs(array).max(initial=0) < _OPENCV_COORDINATES
               for batch in batches for array in batch.geometry[:2] if isinstance(array, np.ndarray))


def _draw_opencv(cv2, canvas: np.ndarray, batches: list[_Strokes]) -> None:
    """The strokes drawn with OpenCV's own calls, one by one in rank order."""
    calls: list[tuple] = []
    ranks = []
    for batch in batches:
        colors = batch.colors.tolist()
        if batch.kind == "polygons":
            points, counts, shift = batch.geometry
            polygons = np.split(points.astype(np.int32), np.cumsum(counts)[:-1])
            calls += [(cv2.fillConvexPoly, (polygon, color, 8, shift)) for polygon, color in zip(polygons, colors)]
        elif batch.kind == "discs":
            centers, radius = batch.geometry
            if radius < 0:  # draws nothing (OpenCV would refuse it)
                continue
            calls += [(cv2.circle, ((x, y), radius, color, -1)) for (x, y), color in zip(centers.tolist(), colors)]
        else:
            starts, ends, thickness = batch.geometry
            thickness = max(thickness, 1)  # below 1 a thin line, as in the numpy kernels
            calls += [(cv2.line, ((x0, y0), (x1, y1), color, thickness))
                      for (x0, y0), (x1, y1), color in zip(starts.tolist(), ends.tolist(), colors)]
        ranks.append(batch.ranks)
    for stroke in np.argsort(np.concatenate(ranks), kind="stable") if ranks else ():
        draw, arguments = calls[stroke]
        draw(canvas, *arguments)


def ellipse_polys(centers: np.ndarray, axes: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`ellipse_poly` (delta 1) for many ellipses at once: int64 (M,2) vertices laid end to end, and the
    number of vertices of each ellipse."""
    centers = np.asarray(centers, dtype=np.int64).reshape(-1, 2)
    axes = np.asarray(axes, dtype=np.int64).reshape(-1, 2)
    angles = np.asarray(angles, dtype=np.int64).reshape(-1) % 360
    cos_a, sin_a = _SIN_TABLE[450 - angles][:, None], _SIN_TABLE[angles][:, None]
    degrees = np.arange(361)
    x = axes[:, :1] * _SIN_TABLE[450 - degrees]
    y = axes[:, 1:] * _SIN_TABLE[degrees]
    px = np.rint(centers[:, :1] + x * cos_a - y * sin_a).astype(np.int64)
    py = np.rint(centers[:, 1:] + x * sin_a + y * cos_a).astype(np.int64)
    keep = np.ones(px.shape, dtype=bool)
    keep[:, 1:] = (px[:, 1:] != px[:, :-1]) | (py[:, 1:] != py[:, :-1])  # consecutive duplicates only, as OpenCV
    counts = keep.sum(axis=1)
    points = np.stack([px[keep], py[keep]], axis=1)
    single = np.flatnonzero(counts == 1)  # a point ellipse: OpenCV returns its centre twice
    if len(single):
        points = np.insert(points, np.cumsum(counts)[single], centers[single], axis=0)
        counts[single] = 2
    return points, counts


def ellipse_poly(center: tuple[int, int], axes: tuple[int, int], angle: int) -> np.ndarray:
    """`cv2.ellipse2Poly(center, axes, angle, 0, 360, 1)`: int32 (N,2) vertices of a full ellipse."""
    points, _ = ellipse_polys(np.array([center]), np.array([axes]), np.array([int(angle)]))
    return points.astype(np.int32)


class Painter:
    """Strokes gathered, then painted at once: where strokes overlap, the one drawn later wins, exactly as
    drawing them one after another with OpenCV.

    Each stroke has a rank, its place in the drawing order: by default strokes rank in the order they are
    added; a caller that adds strokes of many kinds at once (all limbs of all people, then all joints, ...)
    gives explicit `ranks` so that the painted result is that of the true order (person by person).
    Where `cv2` is installed (`native.py`) the strokes are drawn with its own calls in rank order; otherwise
    every stroke is rasterised in a few vectorised passes and the last one is kept per pixel."""

    def __init__(self, canvas: np.ndarray) -> None:
        self.canvas = canvas
        self.height, self.width = canvas.shape[:2]
        self._batches: list[_Strokes] = []
        self._next_rank = 0

    def _colors_for(self, colors: np.ndarray | Sequence[float] | float, count: int) -> np.ndarray:
        values = np.asarray(colors, dtype=np.float64)
        if values.ndim < 2:  # one colour for every stroke
            return np.repeat(_color(self.canvas, values)[None], count, axis=0)
        channels = 1 if self.canvas.ndim == 2 else self.canvas.shape[2]
        if values.shape[1] >= channels:  # as `_color`, for all strokes at once
            return np.clip(np.rint(values[:, :channels]), 0, 255).astype(self.canvas.dtype)
        return np.stack([_color(self.canvas, c) for c in values]).reshape(-1, channels)

    def _add(self, kind: str, geometry: tuple, count: int, colors, ranks: np.ndarray | None) -> None:
        ranks = np.arange(self._next_rank, self._next_rank + count) if ranks is None \
            else np.asarray(ranks, dtype=np.int64).reshape(count)
        if count:
            self._next_rank = max(self._next_rank, int(ranks.max()) + 1)
            self._batches.append(_Strokes(kind, geometry, ranks, self._colors_for(colors, count)))

    def polygons(self, points: np.ndarray, counts: np.ndarray, colors, shift: int = 0,
                 ranks: np.ndarray | None = None) -> None:
        """`cv2.fillConvexPoly` for each polygon: (M,2) integer vertices laid end to end (on a 1/2**shift
        grid), `counts` per polygon: the 8-connected outline, then the scanline fill."""
        counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        points = np.asarray(points, dtype=np.int64).reshape(-1, 2)
        self._add("polygons", (points, counts, shift), len(counts), colors, ranks)

    def discs(self, centers: np.ndarray, radius: int, colors, ranks: np.ndarray | None = None) -> None:
        """`cv2.circle(canvas, c, radius, colour, -1)` for each (N,2) integer centre."""
        centers = np.asarray(centers, dtype=np.int64).reshape(-1, 2)
        self._add("discs", (centers, int(radius)), len(centers), colors, ranks)

    def lines(self, starts: np.ndarray, ends: np.ndarray, colors, thickness: int = 1,
              ranks: np.ndarray | None = None) -> None:
        """`cv2.line(canvas, p, q, colour, thickness)` (8-connected) for each pair of (N,2) integer points."""
        starts = np.asarray(starts, dtype=np.int64).reshape(-1, 2)
        ends = np.asarray(ends, dtype=np.int64).reshape(-1, 2)
        self._add("lines", (starts, ends, int(thickness)), len(starts), colors, ranks)

    def paint(self) -> np.ndarray:
        """Paint every stroke added so far onto the canvas (and forget them); returns the canvas."""
        batches, self._batches = self._batches, []
        if not batches:
            return self.canvas
        target = self.canvas if self.canvas.flags.c_contiguous else np.ascontiguousarray(self.canvas)
        cv2 = opencv() if _opencv_draws(target, batches) else None
        if cv2 is not None:
            _draw_opencv(cv2, target, batches)
        else:
            self._rasterise(target, batches)
        if target is not self.canvas:
            self.canvas[...] = target
        return self.canvas

    def _rasterise(self, target: np.ndarray, batches: list[_Strokes]) -> None:
        pixels = [self._pixels(batch) for batch in batches]
        flat = np.concatenate([p[0] for p in pixels])
        ranks = np.concatenate([batch.ranks[owner] for batch, (_, owner) in zip(batches, pixels)])
        stroke_ranks = np.concatenate([batch.ranks for batch in batches])
        colors = np.concatenate([batch.colors for batch in batches])
        # per pixel the last stroke that covers it (np.maximum.at is defined for repeated indices, unlike a
        # plain fancy assignment)
        winner = np.full(self.height * self.width, -1, dtype=np.int32)
        np.maximum.at(winner, flat, ranks.astype(np.int32))
        painted = np.flatnonzero(winner >= 0)
        winners = winner[painted]
        by_rank = np.zeros((self._next_rank, colors.shape[1]), dtype=colors.dtype)
        by_rank[stroke_ranks] = colors
        channels = target.reshape(-1)  # written one channel at a time: 1-D gathers and writes of single
        for channel in range(by_rank.shape[1]):  # elements are much cheaper than of 3-byte rows
            channels[painted * by_rank.shape[1] + channel] = by_rank[:, channel][winners]

    def _pixels(self, batch: _Strokes) -> tuple[np.ndarray, np.ndarray]:
        if batch.kind == "polygons":
            return self._polygon_pixels(*batch.geometry)
        if batch.kind == "discs":
            return self._disc_pixels(*batch.geometry)
        starts, ends, thickness = batch.geometry
        if thickness <= 1:
            ys, xs, owner = int_lines(self.width, self.height, starts, ends)
            return ys * self.width + xs, owner
        return self._thick_line_pixels(starts, ends, thickness)

    # ------------------------------------------------------------------------------------------ kernels
    # Each returns (flat pixel indices on the canvas, index of the stroke each belongs to).
    def _on_canvas(self, ys: np.ndarray, xs: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = (xs >= 0) & (xs < self.width) & (ys >= 0) & (ys < self.height)
        if not inside.all():
            ys, xs, owner = ys[inside], xs[inside], owner[inside]
        return ys * self.width + xs, owner

    def _polygon_pixels(self, points: np.ndarray, counts: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
        if len(points) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        owner = np.repeat(np.arange(len(counts)), counts)
        local = segment_index(counts)
        previous = points[np.repeat(np.cumsum(counts) - counts, counts) + (local - 1) % np.repeat(counts, counts)]
        if shift:  # the outline OpenCV draws first, so thin slivers still show
            grid = XY_SHIFT - shift
            # (clipped on the 1/65536 grid: an end rounded to the next pixel can lie just off the canvas)
            ys, xs, edge = fixed_lines(self.width, self.height, previous << grid, points << grid)
            parts = [self._on_canvas(ys, xs, owner[edge])]
        else:
            ys, xs, edge = int_lines(self.width, self.height, previous, points)
            parts = [(ys * self.width + xs, owner[edge])]
        delta = (1 << shift) >> 1
        xs, ys = points[:, 0] << (XY_SHIFT - shift), points[:, 1]
        rows = (ys + delta) >> shift
        fillable = np.flatnonzero(counts >= 3)
        if len(fillable):
            keep = np.repeat(counts >= 3, counts)
            (y, left, right, which), walk = convex_spans(xs[keep], ys[keep], rows[keep], counts[fillable],
                                                         self.height)
            parts.append(self._span_pixels(y, left, right, fillable[which]))
            for polygon in fillable[walk]:
                vertex = owner == polygon
                y, left, right = walk_spans(xs[vertex], ys[vertex], rows[vertex], self.height)
                parts.append(self._span_pixels(y, left, right, np.full(len(y), polygon)))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _span_pixels(self, rows: np.ndarray, left: np.ndarray, right: np.ndarray, owner: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        left, right = np.maximum(left, 0), np.minimum(right, self.width - 1)
        keep = (rows >= 0) & (rows < self.height) & (right >= left)
        start, owner = (rows * self.width + left)[keep], owner[keep]
        counts = (right - left + 1)[keep]
        return np.repeat(start, counts) + segment_index(counts), np.repeat(owner, counts)

    def _disc_pixels(self, centers: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        if radius < 0 or len(centers) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        dys, dxs = disc_offsets(int(radius))
        return self._on_canvas((centers[:, 1:] + dys).ravel(), (centers[:, :1] + dxs).ravel(),
                               np.repeat(np.arange(len(centers)), len(dys)))

    def _thick_line_pixels(self, starts: np.ndarray, ends: np.ndarray, thickness: int
                           ) -> tuple[np.ndarray, np.ndarray]:
        # OpenCV first clips the line to the canvas grown by `thickness` on every side (found by comparison
        # with cv2 5.0: far-away end points would otherwise tilt the polygon's rounded edges differently).
        a, b, visible = clip_lines(self.width + 2 * thickness, self.height + 2 * thickness,
                                   starts + thickness, ends + thickness)
        lines = np.flatnonzero(visible)
        p0, p1 = a[lines] - thickness, b[lines] - thickness
        dx = (p0[:, 0] - p1[:, 0]).astype(np.float64)
        dy = (p1[:, 1] - p0[:, 1]).astype(np.float64)
        length_sq = dx * dx + dy * dy
        half = thickness << (XY_SHIFT - 1)
        long = length_sq > np.finfo(np.float64).eps
        r = (half + (thickness & 1) * XY_ONE * 0.5) / np.sqrt(np.where(long, length_sq, 1.0))
        offset = np.stack([np.rint(dy * r), np.rint(dx * r)], axis=1).astype(np.int64)[long]
        fa, fb = (p0[long] << XY_SHIFT), (p1[long] << XY_SHIFT)
        quads = np.stack([fa + offset, fa - offset, fb - offset, fb + offset], axis=1).reshape(-1, 2)
        flat, owner = self._polygon_pixels(quads, np.full(int(long.sum()), 4), XY_SHIFT)
        caps, cap_owner = self._disc_pixels(np.concatenate([p0, p1]), (half + (XY_ONE >> 1)) >> XY_SHIFT)
        return np.concatenate([flat, caps]), np.concatenate([lines[long][owner], np.tile(lines, 2)[cap_owner]])


def draw_line(canvas: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], color: Sequence[float],
              thickness: int = 1) -> None:
    """`cv2.line(canvas, p0, p1, color, thickness)` with the default 8-connected line type."""
    painter = Painter(canvas)
    painter.lines(np.array([p0]), np.array([p1]), color, thickness)
    painter.paint()


def fill_convex_poly(canvas: np.ndarray, polygon: np.ndarray, color: Sequence[float]) -> None:
    """`cv2.fillConvexPoly(canvas, polygon, color)` for integer vertices (N,2)."""
    polygon = np.asarray(polygon, dtype=np.int64).reshape(-1, 2)
    painter = Painter(canvas)
    painter.polygons(polygon, np.array([len(polygon)]), color)
    painter.paint()


def fill_circle(canvas: np.ndarray, center: tuple[int, int], radius: int, color: Sequence[float]) -> None:
    """`cv2.circle(canvas, center, radius, color, thickness=-1)`."""
    painter = Painter(canvas)
    painter.discs(np.array([center]), radius, color)
    painter.paint()
