"""Image resampling that reproduces OpenCV bit for bit (no OpenCV dependency).

The peer (comfyui_controlnet_aux) letterboxes with `cv2.resize(..., INTER_LINEAR)` and crops with
`cv2.warpAffine(..., INTER_LINEAR)`. A float resize differs from OpenCV's by one grey level on many pixels,
which moves boxes by up to half a pixel and keypoints by a SimCC bin, so both are reproduced exactly:

- `resize_linear`: OpenCV's fixed-point uint8 path (identical in 4.x and 5.x, with or without IPP):
  per axis the source position (d + 0.5) * src/dst - 0.5 in float32, weights rounded to 11 bits
  (x clamped to the edge with weight 0, y taps clamped to the edge rows), a horizontal pass into int32,
  then ((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16) + 2) >> 2.
- `warp_affine`: two reproductions, chosen by `WARP_REFERENCES`:
  "opencv5": opencv-python 5.x on x86 (its IPP path): source position in float64, its fraction as float32,
  then fma(a, p01 - p00, p00) per row and fma(b, v1 - v0, v0) in float32, rounded half to even;
  "opencv4": OpenCV <= 4.10's fixed-point path: coordinates on a 1/1024 grid rounded to 1/32 pixel and
  15-bit bilinear weights from a 32 x 32 table. Constant border 0 in both. Only axis-aligned (rotation-free)
  maps are supported, which is what pose crops are.

Where `cv2` is installed, both run as OpenCV's own calls instead (`native.py`): the same pixels, faster.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .native import opencv

WARP_REFERENCES = ("opencv5", "opencv4")
WARP_REFERENCE = "opencv5"  # what `pip install opencv-python` gives today on x86 (5.1 with IPP)
_COEF_BITS = 11  # INTER_RESIZE_COEF_BITS
_COEF_SCALE = 1 << _COEF_BITS


def _resize_taps(dst: int, src: int, clamp_x: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Left/right source indices and 11-bit weights of OpenCV's linear resize along one axis."""
    scale = 1.0 / (dst / src)  # OpenCV's scale_x = 1 / inv_scale_x with inv_scale_x = dst / src, float64
    pos = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    left = np.floor(pos)
    frac = (pos - left).astype(np.float32)
    left = left.astype(np.int64)
    if clamp_x:  # columns: out-of-range taps collapse onto the edge pixel with weight 0
        low = left < 0
        frac[low], left[low] = 0, 0
        high = left >= src - 1
        frac[high], left[high] = 0, src - 1
        right = np.minimum(left + 1, src - 1)
    else:  # rows: both taps clamped, weights kept
        right = np.clip(left + 1, 0, src - 1)
        left = np.clip(left, 0, src - 1)
    w1 = np.rint(frac * np.float32(_COEF_SCALE)).astype(np.int32)
    w0 = np.rint((np.float32(1) - frac) * np.float32(_COEF_SCALE)).astype(np.int32)
    return left, right, w0, w1


def _native(image: np.ndarray):
    """`cv2` when it is installed and takes this image (up to 4 channels), else None."""
    return opencv() if image.ndim == 2 or image.shape[2] <= 4 else None


def _flat_columns(columns: np.ndarray, channels: int) -> np.ndarray:
    """Pixel column indices -> element indices of a (rows, width*channels) view."""
    return (columns[:, None] * channels + np.arange(channels)).ravel()


def resize_linear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)` for uint8 (H,W[,C]), bit for bit."""
    if image.shape[:2] == (height, width):
        return image.copy()
    cv2 = _native(image)
    if cv2 is not None:
        out = cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_LINEAR)
        return out.reshape(height, width, *image.shape[2:])  # OpenCV drops a single channel's axis
    planar = image[..., None] if image.ndim == 2 else image
    src_h, src_w, channels = planar.shape
    x0, x1, a0, a1 = _resize_taps(width, src_w, clamp_x=True)
    y0, y1, b0, b1 = _resize_taps(height, src_h, clamp_x=False)
    rows, inverse = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    # Horizontal pass on the rows that are read, in int32 on 2-D (rows, width*C) views (np.take on flat
    # columns of whole rows is far cheaper than 3-D fancy indexing; uint8 * int32 weights gives int32 without
    # a conversion pass), already >> 4 as OpenCV's vertical pass takes it.
    source = planar.reshape(src_h, -1)
    if len(rows) < src_h:
        source = source[rows]
    horizontal = np.take(source, _flat_columns(x0, channels), axis=1) * np.repeat(a0, channels)
    horizontal += np.take(source, _flat_columns(x1, channels), axis=1) * np.repeat(a1, channels)
    horizontal >>= 4
    top = horizontal[inverse[:height]]
    top *= b0[:, None]
    top >>= 16
    bottom = horizontal[inverse[height:]]
    bottom *= b1[:, None]
    bottom >>= 16
    top += bottom
    top += 2
    top >>= 2
    out = top.astype(np.uint8).reshape(height, width, channels)
    return out[..., 0] if image.ndim == 2 else out


def letterbox(image: np.ndarray, height: int, width: int, fill: int = 114) -> tuple[np.ndarray, float]:
    """YOLOX input: scale by r = min(height/h, width/w) to (int(h*r), int(w*r)) and paste at the TOP-LEFT of a
    `fill` canvas (so boxes map back by dividing by r, no offset). uint8 (H,W,3) -> (uint8 canvas, r)."""
    ratio = min(height / image.shape[0], width / image.shape[1])
    # at least one pixel: a 1 x 5000 strip would otherwise vanish (OpenCV would refuse it)
    new_h, new_w = max(1, int(image.shape[0] * ratio)), max(1, int(image.shape[1] * ratio))
    canvas = np.empty((height, width, image.shape[2]), dtype=np.uint8)
    canvas[:new_h, :new_w] = resize_linear(image, new_h, new_w)
    canvas[new_h:], canvas[:new_h, new_w:] = fill, fill  # the margins only (none for a square frame)
    return canvas, ratio


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix mapping three `src` points onto three `dst` points: `cv2.getAffineTransform` bit for bit.

    OpenCV solves its 6x6 system with its own small-matrix LU (`hal::LU64f`: partial pivoting, elimination
    with the negated reciprocal of the pivot, back substitution by division), step for step here in float64.
    A LAPACK solve differs in the last bits, and those matter: where they leave ~1e-17 off the diagonal of a
    crop (most crops) OpenCV 5.x warps by another path."""
    src = np.asarray(src, dtype=np.float32).astype(np.float64).reshape(3, 2)
    dst = np.asarray(dst, dtype=np.float32).astype(np.float64).reshape(3, 2)
    a = [[0.0] * 6 for _ in range(6)]
    b = [0.0] * 6
    for i in range(3):
        x, y = float(src[i, 0]), float(src[i, 1])
        a[2 * i][0:3] = [x, y, 1.0]
        a[2 * i + 1][3:6] = [x, y, 1.0]
        b[2 * i], b[2 * i + 1] = float(dst[i, 0]), float(dst[i, 1])
    for i in range(6):
        pivot = max(range(i, 6), key=lambda r: (abs(a[r][i]), -r))  # the first of equal magnitudes
        if abs(a[pivot][i]) < np.finfo(np.float64).eps * 100:
            return np.zeros((2, 3))  # OpenCV's answer for collinear points
        a[i], a[pivot] = a[pivot], a[i]
        b[i], b[pivot] = b[pivot], b[i]
        d = -1.0 / a[i][i]
        for j in range(i + 1, 6):
            alpha = a[j][i] * d
            for k in range(i + 1, 6):
                a[j][k] += alpha * a[i][k]
            b[j] += alpha * b[i]
    for i in range(5, -1, -1):
        s = b[i]
        for k in range(i + 1, 6):
            s -= a[i][k] * b[k]
        b[i] = s / a[i][i]
    return np.array(b).reshape(2, 3)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """`cv2.invertAffineTransform` with OpenCV's operation order (the warp uses the inverse map)."""
    m = np.asarray(matrix, dtype=np.float64).ravel().copy()
    det = m[0] * m[4] - m[1] * m[3]
    det = 1.0 / det if det != 0 else 0.0
    a11, a22 = m[4] * det, m[0] * det
    m[0], m[4] = a11, a22
    m[1] *= -det
    m[3] *= -det
    b1 = -m[0] * m[2] - m[1] * m[5]
    b2 = -m[3] * m[2] - m[4] * m[5]
    m[2], m[5] = b1, b2
    return m.reshape(2, 3)


def _gather(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """image[rows][:, cols] with constant-0 border, as float64 (len(rows), len(cols) * C) on a flat view."""
    h, w, channels = image.shape
    inside_r = (rows >= 0) & (rows < h)
    inside_c = (cols >= 0) & (cols < w)
    source = image[np.clip(rows, 0, h - 1)].reshape(len(rows), -1)
    out = np.take(source, _flat_columns(np.clip(cols, 0, w - 1), channels), axis=1).astype(np.float64)
    if not inside_r.all():
        out[~inside_r] = 0
    if not inside_c.all():
        out[:, ~np.repeat(inside_c, channels)] = 0
    return out


def _warp_opencv5(image: np.ndarray, inv: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w, channels = image.shape
    xs = inv[0, 0] * np.arange(width, dtype=np.float64) + inv[0, 2]
    ys = inv[1, 1] * np.arange(height, dtype=np.float64) + inv[1, 2]
    ix, iy = np.floor(xs), np.floor(ys)
    ax = np.repeat((xs - ix).astype(np.float32).astype(np.float64), channels)
    ay = (ys - iy).astype(np.float32).astype(np.float64)[:, None]
    ix, iy = ix.astype(np.int64), iy.astype(np.int64)
    # The per-row interpolation depends only on the source row, so it is done once per source row read
    # (a zoomed-in crop reads each row for several output rows). Those rows are copied into a frame one
    # column wider on each side, left 0 with the rows outside the image (the constant border), so every
    # tap is a plain gather.
    rows, inverse = np.unique(np.concatenate([iy, iy + 1]), return_inverse=True)
    source = np.zeros((len(rows), (w + 2) * channels), dtype=np.uint8)
    inside = (rows >= 0) & (rows < h)
    source[inside, channels:(w + 1) * channels] = image[rows[inside]].reshape(int(inside.sum()), w * channels)
    columns = np.clip(np.concatenate([ix, ix + 1]), -1, w) + 1
    left = np.take(source, _flat_columns(columns[:width], channels), axis=1).astype(np.float64)
    along = np.take(source, _flat_columns(columns[width:], channels), axis=1) - left
    along *= ax
    along += left
    # float64 holds a * (p01 - p00) + p00 exactly, so one rounding to float32 is OpenCV's fused multiply-add
    along = along.astype(np.float32)
    v0 = along[inverse[:height]]
    value = (along[inverse[height:]] - v0).astype(np.float64)  # the float32 difference, as OpenCV's
    value *= ay
    value += v0
    return np.clip(np.rint(value.astype(np.float32)), 0, 255).astype(np.uint8).reshape(height, width, channels)


@lru_cache(maxsize=1)
def _bilinear_table() -> np.ndarray:
    """OpenCV's (32*32, 4) int 15-bit bilinear weights [w00, w01, w10, w11] for every 1/32-pixel fraction."""
    frac = np.arange(32, dtype=np.float32) * np.float32(1.0 / 32)
    taps = np.stack([np.float32(1) - frac, frac], axis=1).astype(np.float32)
    table = np.zeros((32, 32, 4), dtype=np.int64)
    for i in range(32):  # y fraction
        for j in range(32):  # x fraction
            weights = np.rint((taps[i][:, None] * taps[j][None, :]).astype(np.float32).ravel()
                              * np.float32(32768)).astype(np.int64)
            diff = int(weights.sum()) - 32768
            if diff:  # OpenCV moves the rounding error onto the smallest (or largest) weight
                low = high = 0
                for k in range(4):
                    if weights[k] < weights[low]:
                        low = k
                    elif weights[k] > weights[high]:
                        high = k
                weights[high if diff < 0 else low] -= diff
            table[i, j] = weights
    return table.reshape(1024, 4)


def _warp_opencv4(image: np.ndarray, inv: np.ndarray, height: int, width: int) -> np.ndarray:
    channels = image.shape[2]
    # X = (round((M01*y + M02) * 1024) + 16 + round(M00*x*1024)) >> 5: 1/32-pixel positions (here M01 = M10 = 0)
    x_fixed = (np.rint(inv[0, 2] * 1024).astype(np.int64) + 16
               + np.rint(inv[0, 0] * np.arange(width) * 1024).astype(np.int64)) >> 5
    y_fixed = (np.rint((inv[1, 1] * np.arange(height) + inv[1, 2]) * 1024).astype(np.int64) + 16) >> 5
    ix, iy = x_fixed >> 5, y_fixed >> 5
    weights = _bilinear_table()[((y_fixed & 31) * 32)[:, None] + (x_fixed & 31)[None, :]]  # (h, w, 4)
    weights = np.repeat(weights, channels, axis=1)  # (h, w*C, 4)
    span = width * channels
    top = _gather(image, iy, np.concatenate([ix, ix + 1])).astype(np.int64)
    bottom = _gather(image, iy + 1, np.concatenate([ix, ix + 1])).astype(np.int64)
    acc = top[:, :span] * weights[..., 0] + top[:, span:] * weights[..., 1]
    acc += bottom[:, :span] * weights[..., 2] + bottom[:, span:] * weights[..., 3]
    return np.clip((acc + (1 << 14)) >> 15, 0, 255).astype(np.uint8).reshape(height, width, channels)


def warp_affine(image: np.ndarray, matrix: np.ndarray, height: int, width: int,
                reference: str | None = None) -> np.ndarray:
    """`cv2.warpAffine(image, matrix, (width, height), flags=INTER_LINEAR)` (constant border 0) for uint8
    (H,W,C) and an axis-aligned 2x3 `matrix` (scale and shift; pose crops have rotation 0), bit for bit with
    `reference` ("opencv5" or "opencv4"; default: the installed OpenCV's own call, else `WARP_REFERENCE`).
    Returns uint8 (height, width, C)."""
    if reference is not None and reference not in WARP_REFERENCES:
        raise ValueError(f"reference must be one of {WARP_REFERENCES}, got {reference!r}")
    matrix = np.array(matrix, dtype=np.float64)
    # getAffineTransform leaves ~1e-16 off the diagonal of a rotation-free crop; it could only matter for a
    # coordinate within 1e-13 px of a rounding boundary, so it is dropped
    tiny = 1e-12 * max(abs(matrix[0, 0]), abs(matrix[1, 1]), 1.0)
    if abs(matrix[0, 1]) > tiny or abs(matrix[1, 0]) > tiny or not np.isfinite(matrix).all():
        raise ValueError(f"warp_affine handles finite axis-aligned (rotation-free) matrices only, got {matrix.tolist()}")
    cv2 = _native(image) if reference is None else None
    if cv2 is not None:  # given the matrix as it is, as the peer gives it
        out = cv2.warpAffine(np.ascontiguousarray(image), matrix, (width, height), flags=cv2.INTER_LINEAR)
        return out.reshape(height, width, *image.shape[2:])
    matrix[0, 1] = matrix[1, 0] = 0.0
    inv = invert_affine(matrix)
    planar = image[..., None] if image.ndim == 2 else image
    warp = _warp_opencv5 if (reference or WARP_REFERENCE) == "opencv5" else _warp_opencv4
    out = warp(planar, inv, height, width)
    return out[..., 0] if image.ndim == 2 else out
