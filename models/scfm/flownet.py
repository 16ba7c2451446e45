"""GFLA PoseFlowNet of SCFM (`flow_net.*`, SCFM.md §2.3): flows and occlusion masks at three scales.

It has no timestep input, so it is run once per sample rather than once per denoising step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import SCFMConfig

NEGATIVE_SLOPE = 0.1  # LeakyReLU(0.1) everywhere in the GFLA modules


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True)


class EncoderBlock(nn.Module):
    """IN -> LReLU -> conv4x4 s2 -> IN -> LReLU -> conv3x3: halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.model = nn.Sequential(_norm(in_channels), nn.LeakyReLU(NEGATIVE_SLOPE),
                                   nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1),
                                   _norm(out_channels), nn.LeakyReLU(NEGATIVE_SLOPE),
                                   nn.Conv2d(out_channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ResBlockDecoder(nn.Module):
    """Main path IN -> LReLU -> conv3x3 -> IN -> LReLU -> ConvT3x3 s2, plus a ConvT3x3 s2 shortcut: doubles resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.model = nn.Sequential(_norm(in_channels), nn.LeakyReLU(NEGATIVE_SLOPE),
                                   nn.Conv2d(in_channels, out_channels, 3, padding=1),
                                   _norm(out_channels), nn.LeakyReLU(NEGATIVE_SLOPE),
                                   nn.ConvTranspose2d(out_channels, out_channels, 3, stride=2, padding=1, output_padding=1))
        self.shortcut = nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.shortcut(x)


class Jump(nn.Module):
    """LReLU -> reflection pad 1 -> conv3x3 on an encoder skip.

    The original registers this conv twice (`conv1` and `model.2`, one tensor); we keep `conv1`, and the
    loader folds the alias (checkpoint.py).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(F.pad(F.leaky_relu(x, NEGATIVE_SLOPE), (1, 1, 1, 1), mode="reflect"))


def _flow_head(channels: int) -> nn.Conv2d:
    return nn.Conv2d(channels, 2, 3, padding=1)


def _mask_head(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, 1, 3, padding=1), nn.Sigmoid())


class PoseFlowNet(nn.Module):
    """cat[source image, source pose, target pose] -> flows and masks at image/32, /16, /8.

    Flows are raw pixel offsets at their own resolution (ch0 = x, ch1 = y, backward warp); masks in (0, 1).
    """

    def __init__(self, config: SCFMConfig):
        super().__init__()
        c0, c1, c2, c3, c4 = config.flow_channels
        self.block0 = EncoderBlock(config.in_channels + config.pose_channels, c0)
        for index, (cin, cout) in enumerate(((c0, c1), (c1, c2), (c2, c3), (c3, c4))):
            setattr(self, f"encoder{index}", EncoderBlock(cin, cout))
        self.decoder0, self.jump0 = ResBlockDecoder(c4, c3), Jump(c3)
        self.output0, self.mask0 = _flow_head(c3), _mask_head(c3)
        self.decoder1, self.jump1 = ResBlockDecoder(c3, c2), Jump(c2)
        self.output1, self.mask1 = _flow_head(c2), _mask_head(c2)
        self.output_eight, self.mask_eight = _flow_head(c4), _mask_head(c4)

    def forward(self, source: torch.Tensor, source_pose: torch.Tensor, target_pose: torch.Tensor
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """source [B,3,S,S] in [-1,1], poses [B,P,S,S] in [0,1] -> (flows, masks), coarsest first.

        flows: [B,2,S/32,S/32], [B,2,S/16,S/16], [B,2,S/8,S/8]; masks: the same sides with 1 channel.
        """
        out = self.block0(torch.cat([source, source_pose, target_pose], dim=1))
        skips = [out]
        for index in range(4):
            out = getattr(self, f"encoder{index}")(out)
            skips.append(out)
        flows, masks = [self.output_eight(out)], [self.mask_eight(out)]
        out = self.decoder0(out) + self.jump0(skips[3])
        flows.append(self.output0(out))
        masks.append(self.mask0(out))
        out = self.decoder1(out) + self.jump1(skips[2])
        flows.append(self.output1(out))
        masks.append(self.mask1(out))
        return flows, masks
