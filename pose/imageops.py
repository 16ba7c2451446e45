"""Image resampling in numpy with OpenCV's geometry (no OpenCV dependency).

`resize_linear` follows `cv2.resize(..., INTER_LINEAR)`: half-pixel centres, edge replication, no
antialiasing (within one grey level of OpenCV, whose uint8 path rounds in fixed point). `warp_affine`
follows `cv2.warpAffine(..., INTER_LINEAR, BORDER_CONSTANT 0)` for the pose model's crops.
"""
from __future__ import annotations

import numpy as np


def _axis_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left index, right index and right weight of each output sample along one axis."""
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    left = np.floor(pos)
    weight = (pos - left).astype(np.float32)
    left = left.astype(np.int64)
    weight[left < 0] = 0.0  # OpenCV replicates the border sample
    left = np.clip(left, 0, src - 1)
    right = np.minimum(left + 1, src - 1)
    return left, right, weight


def resize_linear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of uint8 (H,W[,C]) to (height,width[,C]); returns uint8."""
    if image.shape[:2] == (height, width):
        return image.copy()
    work = image.astype(np.float32)
    y0, y1, wy = _axis_taps(image.shape[0], height)
    x0, x1, wx = _axis_taps(image.shape[1], width)
    extra = (None,) * (image.ndim - 2)
    rows = work[y0] + (work[y1] - work[y0]) * wy[(slice(None), None, *extra)]
    out = rows[:, x0] + (rows[:, x1] - rows[:, x0]) * wx[(None, slice(None), *extra)]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def letterbox(image: np.ndarray, height: int, width: int, fill: int = 114) -> tuple[np.ndarray, float]:
    """YOLOX input: scale by r = min(height/h, width/w) to (int(h*r), int(w*r)) and paste at the TOP-LEFT of a
    `fill` canvas (so boxes map back by dividing by r, no offset). uint8 (H,W,3) -> (uint8 canvas, r)."""
    ratio = min(height / image.shape[0], width / image.shape[1])
    new_h, new_w = int(image.shape[0] * ratio), int(image.shape[1] * ratio)
    canvas = np.full((height, width, image.shape[2]), fill, dtype=np.uint8)
    canvas[:new_h, :new_w] = resize_linear(image, new_h, new_w)
    return canvas, ratio


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix mapping three `src` points onto three `dst` points (`cv2.getAffineTransform`, which
    solves in float64 from float32 points)."""
    src = np.asarray(src, dtype=np.float32).astype(np.float64)
    dst = np.asarray(dst, dtype=np.float32).astype(np.float64)
    system = np.zeros((6, 6))
    system[0::2, 0:2], system[0::2, 2] = src, 1.0
    system[1::2, 3:5], system[1::2, 5] = src, 1.0
    return np.linalg.solve(system, dst.reshape(6)).reshape(2, 3)


def warp_affine(image: np.ndarray, matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear warp of uint8 (H,W,C) into (height,width,C) float32: output pixel p samples the input at
    M^-1 p; samples outside the image read 0."""
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    sx = inverse[0, 0] * gx + inverse[0, 1] * gy + inverse[0, 2]
    sy = inverse[1, 0] * gx + inverse[1, 1] * gy + inverse[1, 2]
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - x0).astype(np.float32)[..., None], (sy - y0).astype(np.float32)[..., None]
    h, w = image.shape[:2]
    padded = np.zeros((h + 2, w + 2, image.shape[2]), dtype=np.float32)  # a zero ring = constant border
    padded[1:-1, 1:-1] = image
    x0c, y0c = np.clip(x0 + 1, 0, w + 1), np.clip(y0 + 1, 0, h + 1)
    x1c, y1c = np.clip(x0 + 2, 0, w + 1), np.clip(y0 + 2, 0, h + 1)
    top = padded[y0c, x0c] * (1 - fx) + padded[y0c, x1c] * fx
    bottom = padded[y1c, x0c] * (1 - fx) + padded[y1c, x1c] * fx
    return top * (1 - fy) + bottom * fy
