"""GFLA's flow losses as SCFM trains its flow estimator (`external_function.py`, `diffusion.training_losses`).

- Sampling correctness (`PerceptualCorrectness`): warp the source's VGG19 features with each flow and compare
  them, position by position, with the target's: exp(-cos(warped, target) / best cos over all source
  positions), mean, minus exp(-1) (its value for a perfect flow). Weight 1.
- Affine regularisation (`MultiAffineRegularizationLoss`): in every k x k window of the sampling grid
  (pixel position + flow), the squared residual of the best affine fit, summed over the window, x and y.
  Weight 0.0025.

Flows come from `flow_net` coarsest first (S/32, S/16, S/8). The original pairs them, through
`sorted(attn_layer, reverse=True)` = [5, 4, 3], with VGG layers relu5_4, relu5_1, relu4_1 and window sizes
2, 2, 3. Its quirks are kept: a flow is nearest-resized to its VGG layer's size without rescaling its
pixel offsets (the S/32 flow drives the S/16 relu5_4 map), and the warp is the sites' Gaussian 4x4 resample.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .ops import resample2d

CORRECTNESS_LAYERS = ("relu5_4", "relu5_1", "relu4_1")  # per flow, coarsest first
REGULARISATION_WINDOWS = (2, 2, 3)
LAMBDA_CORRECTNESS = 1.0  # diffusion.py training_losses
LAMBDA_REGULARISATION = 0.0025
EPS = 1e-8  # PerceptualCorrectness.eps


def correctness_loss(target_features: dict[str, torch.Tensor], source_features: dict[str, torch.Tensor],
                     flows: list[torch.Tensor]) -> torch.Tensor:
    """Sum over flows of GFLA's sampling-correctness loss (a scalar; 0 for a flow that finds the best match).

    *_features: VGG19 ReLU outputs of target and source images (no gradient needed); flows [B,2,h,w] coarsest first.
    """
    total = flows[0].new_zeros(())
    for flow, layer in zip(flows, CORRECTNESS_LAYERS):
        total = total + _correctness(target_features[layer], source_features[layer], flow)
    return total


def _correctness(target: torch.Tensor, source: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = target.shape
    flow = F.interpolate(flow, [height, width])  # nearest; offsets deliberately not rescaled (the original's)
    target_all = target.reshape(batch, channels, -1)
    source_all = source.reshape(batch, channels, -1).transpose(1, 2)
    source_unit = source_all / (source_all.norm(dim=2, keepdim=True) + EPS)
    target_unit = target_all / (target_all.norm(dim=1, keepdim=True) + EPS)
    best = torch.bmm(source_unit, target_unit).amax(dim=1)  # [B, N]: best cosine any source position reaches
    sampled = resample2d(source, flow).reshape(batch, channels, -1)
    cosine = F.cosine_similarity(sampled, target_all)  # [B, N]
    return torch.exp(-cosine / (best + EPS)).mean() - math.exp(-1)


def regularisation_loss(flows: list[torch.Tensor]) -> torch.Tensor:
    """Sum over flows (coarsest first) of GFLA's affine regularisation: 0 for any locally affine flow."""
    total = flows[0].new_zeros(())
    for flow, window in zip(flows, REGULARISATION_WINDOWS):
        total = total + _affine_residual(flow, window)
    return total


def _affine_projection(window: int, like: torch.Tensor) -> torch.Tensor:
    """K^T K with K = A (A^T A)^-1 A^T - I, A = [row, col, 1] of the window's k*k cells; [k*k,1,k,k] conv weights.

    Built in float64 (as the original's numpy) and cast: the quadratic form g^T K^T K g is the squared residual.
    """
    cells = torch.arange(window, dtype=torch.float64)
    design = torch.stack([cells.repeat_interleave(window), cells.repeat(window),
                          torch.ones(window * window, dtype=torch.float64)], 1)
    residual = design @ torch.linalg.inv(design.T @ design) @ design.T - torch.eye(window * window, dtype=torch.float64)
    return (residual.T @ residual).view(window * window, 1, window, window).to(like)


def _affine_residual(flow: torch.Tensor, window: int) -> torch.Tensor:
    batch, _, height, width = flow.shape
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype).view(1, -1).expand(height, -1)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype).view(-1, 1).expand(-1, width)
    grid = flow + torch.stack([xs, ys])  # absolute sampling positions, ch0 = x
    weights = _affine_projection(window, flow)
    cells = (height - window + 1, width - window + 1)
    total = flow.new_zeros(())
    for axis in range(2):
        plane = grid[:, axis:axis + 1]
        # Same grouping as the original (conv with K^T K, then dot with the window's values), so the
        # rounding matches too; ||K g||^2 would be the same number in exact arithmetic.
        projected = F.conv2d(plane, weights)
        window_values = F.unfold(plane, window).view(batch, window * window, *cells)
        total = total + (projected * window_values).sum(1).mean()
    return total
