"""Image reading and the OpenCV resizes of the originals' metric scripts, without OpenCV.

The metric scripts read PNGs with imageio as float32 0..255 and resize them with `cv2.resize` *on float32*,
so nothing is rounded or clipped after the resize (bicubic overshoot stays). OpenCV's INTER_CUBIC (a = -0.75)
and INTER_LINEAR on float input use the same half-pixel source mapping, clamped borders and no antialiasing
as torch's `interpolate(..., align_corners=False, antialias=False)`; in float64 the two agree to float32
precision (tests/metrics compare against cv2 where it is installed).
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from ..models.images import read_image_file

INTERPOLATIONS = {"cubic": "bicubic", "linear": "bilinear"}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file -> float32 (H, W, 3) in 0..255 (what `imageio.imread(...).astype(np.float32)` gives for RGB),
    through the pack's one image reader (its errors name the file)."""
    return read_image_file(path, "image").astype(np.float32)


def resize(image: np.ndarray, size: tuple[int, int] | None, interpolation: str = "cubic") -> np.ndarray:
    """float (H, W, C) -> float32 (size[1], size[0], C) like `cv2.resize(image, size, interpolation=...)`.

    `size` is (width, height), OpenCV's order; None or the image's own size returns it unchanged (as OpenCV does).
    """
    if size is None or (image.shape[1], image.shape[0]) == tuple(size):
        return image.astype(np.float32, copy=False)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64)).movedim(-1, 0)[None]
    out = F.interpolate(tensor, size=(size[1], size[0]), mode=INTERPOLATIONS[interpolation], align_corners=False)
    return out[0].movedim(0, -1).numpy().astype(np.float32)
