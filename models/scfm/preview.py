"""Flow fields as colour-wheel images (hue = direction, saturation = length), for the warp preview."""
from __future__ import annotations

import math

import torch


def flow_to_color(flow: torch.Tensor, max_magnitude: float | None = None) -> torch.Tensor:
    """[B,2,H,W] pixel offsets (ch0 = x, ch1 = y) -> [B,3,H,W] RGB in 0..1.

    Hue follows the direction (0 deg = +x = red, 120 deg = +y (down) = green), saturation the length relative
    to `max_magnitude` (default: the largest length of each image); zero flow is white.
    """
    dx, dy = flow[:, 0], flow[:, 1]
    magnitude = torch.sqrt(dx * dx + dy * dy)
    if max_magnitude is None:
        scale = magnitude.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]
    else:
        scale = torch.full_like(magnitude[:, :1, :1], max(max_magnitude, 1e-6))
    saturation = (magnitude / scale).clamp(0, 1)
    hue = torch.remainder(torch.atan2(dy, dx) / (2 * math.pi), 1.0) * 6.0  # sextant 0..6
    # HSV -> RGB with V = 1: channel n is 1 - S * clamp(min(k, 4 - k), 0, 1), k = (n + hue) mod 6.
    channels = []
    for n in (5.0, 3.0, 1.0):  # red, green, blue
        k = torch.remainder(hue + n, 6.0)
        channels.append(1.0 - saturation * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels, dim=1)
