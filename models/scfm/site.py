"""The SCFM site (SCFM.md §2.5): self-calibrate a flow, then warp source-encoder features into the U-Net.

In the original each site is an `AttentionBlock` whose only child is `target` (a PoseTargetNet) and which
carries three GFLA attention heads of which it uses one: here a site owns only the head of its level (the
others are dead weights the loader drops). At level 5 the head has k = 1, where the softmax over a single
channel is identically 1, so that site is a plain bilinear warp and its head weights are dead as well.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .config import ATTENTION_KERNEL, CORRELATION_DISPLACEMENT

NEGATIVE_SLOPE = 0.1
ATTENTION_HIDDEN = 128  # ExtractorAttn hidden width, fixed in base_function.py
DISP_WIDTHS = (128, 128, 64, 64, 32, 32)  # dispMain, target_net.py
CONF_WIDTHS = (128, 64, 32)  # confFeat, target_net.py


def _conv_stack(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(NEGATIVE_SLOPE)]
        in_channels = width
    return nn.Sequential(*layers)


class ExtractorAttn(nn.Module):
    """GFLA local attention: a softmax-weighted k x k block of flowed source features per target position."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.fully_connect_layer = nn.Sequential(
            nn.Conv2d(2 * channels, ATTENTION_HIDDEN, kernel_size, stride=kernel_size),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Conv2d(ATTENTION_HIDDEN, kernel_size * kernel_size, 1),
            nn.Softmax(dim=1),
        )

    def forward(self, source: torch.Tensor, target: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        block_source = ops.block_extractor(source, flow, k)
        block_target = ops.block_extractor(target, torch.zeros_like(flow), k)
        # Order matters: the original concatenates target blocks first.
        weights = self.fully_connect_layer(torch.cat([block_target, block_source], dim=1))
        return F.avg_pool2d(ops.local_attn_reshape(weights, k) * block_source, k, k)


class PoseTarget(nn.Module):
    """Flow self-calibration plus warping (PoseTargetNet with use_encoder=False, use_flowdisp=True)."""

    def __init__(self, channels: int, level: int):
        super().__init__()
        self.max_displacement = CORRELATION_DISPLACEMENT[level]
        self.kernel_size = ATTENTION_KERNEL[level]
        corr_channels = (2 * (self.max_displacement // 2) + 1) ** 2
        self.dispMain = _conv_stack(channels + 3, DISP_WIDTHS)  # noqa: N815 - checkpoint key
        self.confNet = nn.Sequential(nn.Conv2d(DISP_WIDTHS[-1], 1, 3, padding=1), nn.Sigmoid())  # noqa: N815
        self.confFeat = _conv_stack(corr_channels + 1, CONF_WIDTHS)  # noqa: N815
        self.dispNet = nn.Sequential(nn.Conv2d(CONF_WIDTHS[-1], 2, 5, padding=2))  # noqa: N815
        if self.kernel_size > 1:
            # Registered under the original head index (attn0 for k=3, attn1 for k=2) so keys match.
            setattr(self, f"attn{3 - self.kernel_size}", ExtractorAttn(channels, self.kernel_size))

    def calibrate(self, hidden: torch.Tensor, feature: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Resample the flow by a displacement predicted from the warp residual and h's auto-correlation."""
        residual = (hidden - ops.resample2d(feature, flow)).pow(2).sum(1, keepdim=True).sqrt().detach()
        centred = flow - flow.flatten(2).mean(2)[..., None, None]
        main = self.dispMain(torch.cat([residual, centred, hidden], dim=1))
        confidence = self.confNet(main)
        auto = F.leaky_relu(ops.correlation(hidden, hidden, self.max_displacement), NEGATIVE_SLOPE)
        displacement = self.dispNet(self.confFeat(torch.cat([auto, confidence], dim=1)))
        return ops.resample2d(flow, displacement)

    def forward(self, hidden: torch.Tensor, feature: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """hidden, feature [B,C,r,r]; flow [B,2,r,r]; mask [B,1,r,r] -> h*(1-m) + warped*m."""
        flow = self.calibrate(hidden, feature, flow)
        if self.kernel_size > 1:
            warped = getattr(self, f"attn{3 - self.kernel_size}")(feature, hidden, flow)
        else:
            warped = ops.block_extractor(feature, flow, 1)
        return hidden * (1 - mask) + warped * mask


class FlowSite(nn.Module):
    """h -> h + target(h, F, f, m) for the conditioned items, h unchanged for the rest (the null pass).

    The conditioned items are the first `feature.shape[0]` of the batch, so the guided and unguided passes
    run as one batch.
    """

    def __init__(self, channels: int, level: int):
        super().__init__()
        self.target = PoseTarget(channels, level)

    def forward(self, hidden: torch.Tensor, condition: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        if condition is None:
            return hidden
        feature, flow, mask = condition
        count = feature.shape[0]
        if count == 0:
            return hidden
        conditioned = hidden[:count]
        out = conditioned + self.target(conditioned, feature.to(hidden.dtype), flow.to(hidden.dtype), mask.to(hidden.dtype))
        return out if count == hidden.shape[0] else torch.cat([out, hidden[count:]], dim=0)
