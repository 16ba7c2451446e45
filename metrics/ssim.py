"""SSIM and PSNR exactly as scikit-image computes them (the originals call `skimage.metrics`).

`structural_similarity` filters the two images and their products with a window, builds the SSIM map, crops
the (win_size - 1) / 2 border and averages; with several channels it averages the per-channel values. The
cropped border is exactly where the filter reads past the image, so a "valid" convolution gives the same map
without choosing a padding mode.

The papers' SSIM (PCDMs `caculate_metrics_*.py` and SCFM/PIDM `utils/metrics.py`, reported as SSIM) is
`ssim_256`: images scaled to 0..255, Gaussian window sigma 1.2 (radius int(3.5 * 1.2 + 0.5) = 4, so 9 x 9),
population covariance, and data_range = max - min of the *generated* image.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

K1, K2 = 0.01, 0.03
TRUNCATE = 3.5  # scikit-image's Gaussian truncation
PAPER_SIGMA = 1.2


def gaussian_window(sigma: float) -> torch.Tensor:
    """scipy.ndimage's 1-D Gaussian kernel: radius int(truncate * sigma + 0.5), normalised to sum 1."""
    radius = int(TRUNCATE * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _box_sum(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Sums of every `size` consecutive values along `dim` ("valid" positions only)."""
    running = F.pad(x.cumsum(dim), (1, 0) if dim == -1 else (0, 0, 1, 0))
    length = running.shape[dim]
    return running.narrow(dim, size, length - size) - running.narrow(dim, 0, length - size)


def structural_similarity(image: np.ndarray, reference: np.ndarray, data_range: float, *,
                          sigma: float | None = PAPER_SIGMA, win_size: int = 7,
                          sample_covariance: bool = False) -> float:
    """Mean SSIM of two (H, W[, C]) arrays; channels are averaged. `sigma` set: Gaussian window (win_size is
    then 2 * int(3.5 * sigma + 0.5) + 1); `sigma=None`: uniform `win_size` window. Computed in float64."""
    if image.shape != reference.shape:
        raise ValueError(f"SSIM needs images of one size, got {image.shape} and {reference.shape}")
    if data_range <= 0:
        return 1.0 if np.array_equal(image, reference) else 0.0  # a flat image: SSIM is undefined
    a = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64))
    b = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float64))
    if a.dim() == 2:
        a, b = a[..., None], b[..., None]
    a, b = a.movedim(-1, 0)[:, None], b.movedim(-1, 0)[:, None]  # (C, 1, H, W): channels as a batch
    if sigma is not None:
        line = gaussian_window(sigma)
        win_size = line.numel()
        rows, columns = line.view(1, 1, -1, 1), line.view(1, 1, 1, -1)

        def filt(x: torch.Tensor) -> torch.Tensor:  # the window is separable: two 1-D passes
            return F.conv2d(F.conv2d(x, rows), columns)
    else:
        def filt(x: torch.Tensor) -> torch.Tensor:  # box mean from running sums: cost independent of the window
            return _box_sum(_box_sum(x, win_size, -1), win_size, -2) / win_size ** 2
    if min(a.shape[-2:]) < win_size:
        raise ValueError(f"SSIM window {win_size} is larger than the image {tuple(a.shape[-2:])}")

    count = win_size ** 2
    cov_norm = count / (count - 1) if sample_covariance else 1.0
    ux, uy = filt(a), filt(b)
    vx = cov_norm * (filt(a * a) - ux * ux)
    vy = cov_norm * (filt(b * b) - uy * uy)
    vxy = cov_norm * (filt(a * b) - ux * uy)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return float(ssim_map.mean(dim=(1, 2, 3)).mean())


def paper_ssim(result: np.ndarray, ground_truth: np.ndarray) -> float:
    """The papers' SSIM of float (H, W, 3) images in 0..1: `ssim_256` of their metric scripts."""
    result_255, truth_255 = result * 255.0, ground_truth * 255.0
    return structural_similarity(truth_255, result_255, float(result_255.max() - result_255.min()),
                                 sigma=PAPER_SIGMA, sample_covariance=False)


def window51_ssim(result: np.ndarray, ground_truth: np.ndarray) -> float:
    """The scripts' other SSIM (GFLA's `ssim`): 0..1 images, uniform 51 x 51 window, sample covariance.
    NaN for images smaller than the window (skimage would raise)."""
    if min(result.shape[:2]) < 51:
        return math.nan
    return structural_similarity(ground_truth, result, 1.0, sigma=None, win_size=51, sample_covariance=True)


def psnr(result: np.ndarray, ground_truth: np.ndarray, data_range: float = 1.0) -> float:
    """skimage's peak_signal_noise_ratio in dB (inf for identical images)."""
    mse = float(np.mean((np.asarray(result, np.float64) - np.asarray(ground_truth, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)
