"""U-Net building blocks of SCFM (PIDM / BeatGANs lineage, SCFM.md §2.1); names follow the `ema` keys."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[B] (possibly fractional) timesteps -> [B, dim] float32 sinusoids, **cos first** as in models/nn.py."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with min(32, C) groups computed in float32 whatever the model dtype (GroupNorm32 of the original)."""

    def __init__(self, channels: int):
        super().__init__(min(32, channels), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class ResBlock(nn.Module):
    """GN -> SiLU -> conv3x3, time modulation h*(1+scale)+shift after the second GN, skip(x) + h.

    `emb_channels=None` builds the source-encoder variant, which never receives a time embedding (its
    `emb_layers` in the original are dead weights). `resample` is "down" (avg-pool 2), "up" (nearest x2) or "",
    applied to both paths between SiLU and the first conv. With a lateral, the input is cat[x, lateral].
    """

    def __init__(self, channels: int, out_channels: int, emb_channels: int | None, dropout: float,
                 resample: str = ""):
        super().__init__()
        self.resample = resample
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        if emb_channels is not None:
            self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        else:
            self.emb_layers = None
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, lateral: torch.Tensor | None = None) -> torch.Tensor:
        if lateral is not None:
            x = torch.cat([x, lateral], dim=1)
        norm, act, conv = self.in_layers
        h = conv(self._resample(act(norm(x))))
        x = self._resample(x)
        norm, act, dropout, conv = self.out_layers
        h = norm(h)
        if self.emb_layers is not None and emb is not None:
            scale, shift = self.emb_layers(emb).to(h.dtype)[..., None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return self.skip_connection(x) + conv(dropout(act(h)))
