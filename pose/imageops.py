"""Image resampling with OpenCV's geometry (no OpenCV dependency).

`resize_linear` follows `cv2.resize(..., INTER_LINEAR)`: half-pixel centres, edge replication, no
antialiasing (within one grey level of OpenCV, whose uint8 path rounds in fixed point); it runs on torch's
uint8 kernel, several times faster than numpy on a 1024 px frame. `warp_affine` follows
`cv2.warpAffine(..., INTER_LINEAR, BORDER_CONSTANT 0)` for the pose model's crops, in numpy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _taps(positions: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """2-tap linear interpolation along one axis at float sample `positions` (pixel-index coordinates):
    indices and weights of the left and right taps; taps outside the image weigh 0 (OpenCV's constant border)."""
    left = np.floor(positions)
    frac = (positions - left).astype(np.float32)
    left = left.astype(np.int64)
    right = left + 1
    w_left = (1.0 - frac) * ((left >= 0) & (left < size))
    w_right = frac * ((right >= 0) & (right < size))
    return np.clip(left, 0, size - 1), np.clip(right, 0, size - 1), w_left.astype(np.float32), w_right.astype(np.float32)


def _resample(image: np.ndarray, y_taps: tuple, x_taps: tuple) -> np.ndarray:
    """Separable 2-tap resampling of uint8 (H,W,C) -> float32 (h,w,C).

    Rows first (row gathers are contiguous copies), then columns gathered as whole pixels through a
    C-float "void" view, which avoids both a transpose and per-channel fancy indexing.
    """
    y0, y1, wy0, wy1 = y_taps
    x0, x1, wx0, wx1 = x_taps
    height, channels = len(y0), image.shape[2]
    first, last = int(min(x0.min(), x1.min())), int(max(x0.max(), x1.max()))
    image, x0, x1 = image[:, first:last + 1], x0 - first, x1 - first  # only the columns a crop reads
    # 2-D (rows, width*channels) views keep numpy's inner loops long (a trailing axis of 3 is slow)
    rows = image[y0].reshape(height, -1).astype(np.float32)
    rows *= wy0[:, None]
    lower = image[y1].reshape(height, -1).astype(np.float32)
    lower *= wy1[:, None]
    rows += lower
    pixels = rows.view(np.dtype((np.void, 4 * channels)))

    def column(index: np.ndarray, weight: np.ndarray) -> np.ndarray:
        taps = np.take(pixels, index, axis=1).view(np.float32)
        taps *= np.repeat(weight, channels)[None]
        return taps

    out = column(x0, wx0)
    out += column(x1, wx1)
    return out.reshape(height, len(x0), channels)


def resize_linear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of uint8 (H,W[,C]) to (height,width[,C]); returns uint8."""
    if image.shape[:2] == (height, width):
        return image.copy()
    planar = image[..., None] if image.ndim == 2 else image
    pixels = torch.from_numpy(np.ascontiguousarray(planar)).permute(2, 0, 1)[None]
    resized = F.interpolate(pixels.contiguous(memory_format=torch.channels_last), size=(height, width),
                            mode="bilinear", align_corners=False, antialias=False)
    out = resized[0].permute(1, 2, 0).contiguous().numpy()
    return out[..., 0] if image.ndim == 2 else out


def letterbox(image: np.ndarray, height: int, width: int, fill: int = 114) -> tuple[np.ndarray, float]:
    """YOLOX input: scale by r = min(height/h, width/w) to (int(h*r), int(w*r)) and paste at the TOP-LEFT of a
    `fill` canvas (so boxes map back by dividing by r, no offset). uint8 (H,W,3) -> (uint8 canvas, r).
    The resize is ours (within one grey level of OpenCV's), so boxes do not depend on which packages are installed."""
    ratio = min(height / image.shape[0], width / image.shape[1])
    # at least one pixel: a 1 x 5000 strip would otherwise vanish (OpenCV would refuse it)
    new_h, new_w = max(1, int(image.shape[0] * ratio)), max(1, int(image.shape[1] * ratio))
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
    """Bilinear warp of uint8 (H,W,C) into float32 (height,width,C) for an axis-aligned 2x3 `matrix` (scale and
    shift, as pose crops are: rotation 0): output pixel p samples the input at M^-1 p; outside reads 0."""
    if abs(matrix[0, 1]) > 1e-12 or abs(matrix[1, 0]) > 1e-12:
        raise ValueError("warp_affine handles axis-aligned (rotation-free) matrices only")
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))
    x_pos = inverse[0, 0] * np.arange(width, dtype=np.float64) + inverse[0, 2]
    y_pos = inverse[1, 1] * np.arange(height, dtype=np.float64) + inverse[1, 2]
    h, w = image.shape[:2]
    return _resample(image, _taps(y_pos, h), _taps(x_pos, w))
