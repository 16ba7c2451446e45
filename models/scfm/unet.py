"""The SCFM denoiser (`BeatGANsAutoencModel` of the original, SCFM.md §2.2-2.7).

Slots keep the original indices: absent blocks are `None` entries in the ModuleLists, so parameter names
are exactly the `ema` keys. Level l (0..5) runs at image/2^l; flow sites sit at levels 3, 4 and 5.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import GroupNorm32, ResBlock, timestep_embedding
from .config import LEVELS, SCFMConfig
from .flownet import PoseFlowNet
from .msff import ChannelTransformer
from .site import FlowSite

# Input slots whose output feeds MSFF (h0, h3, h6) and the output slots that read the fused skips.
MSFF_SLOTS = (0, 3, 6)
# Input slots removed from the denoising U-Net (enable_architecture_remove); the encoder keeps all 18.
REMOVED_INPUT_SLOTS = (1, 2, 4, 5, 8)
PRESENT_OUTPUT_SLOTS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 17)
# Encoder outputs read by the sites: input slot s reads enc[s], middle reads enc[17], output slot k reads enc[17-k].
SOURCE_FEATURE_SLOTS = (10, 11, 13, 14, 16, 17)


def input_plan(config: SCFMConfig) -> list[tuple[int, int, int, int, str]]:
    """(slot, level, in_ch, out_ch, kind) for the 17 blocks after the stem: kind "res" or "down"."""
    widths = config.level_channels
    plan, slot = [], 1
    for level in range(LEVELS):
        for block in range(2):
            plan.append((slot, level, widths[level - 1] if block == 0 and level else widths[level], widths[level], "res"))
            slot += 1
        if level < LEVELS - 1:
            plan.append((slot, level, widths[level], widths[level], "down"))
            slot += 1
    return plan


def output_plan(config: SCFMConfig) -> list[tuple[int, int, int, int, int, int | None]]:
    """(slot, level, index, in_ch, out_ch, lateral input slot or None) for all 18 output slots."""
    widths = config.level_channels
    plan = []
    for level in reversed(range(LEVELS)):
        # Skips of a level, popped last-first: its second block, its first block, the block entering it.
        lateral_slots = (3 * level + 2, 3 * level + 1, 3 * level)
        for index in range(3):
            slot = (LEVELS - 1 - level) * 3 + index
            previous = widths[level + 1] if index == 0 and level < LEVELS - 1 else widths[level]
            lateral = lateral_slots[index]
            lateral_width = widths[level - 1] if index == 2 and level else widths[level]
            if slot == 12:  # the original re-registers this block without its (removed) lateral
                lateral, lateral_width = None, 0
            plan.append((slot, level, index, previous + lateral_width, widths[level], lateral))
    return plan


class SourceEncoder(nn.Module):
    """`encoder.*`: the 18 input blocks of a U-Net without time input, over the source image."""

    def __init__(self, config: SCFMConfig):
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, config.model_channels, 3, padding=1))]
        for _, _, cin, cout, kind in input_plan(config):
            blocks.append(nn.Sequential(ResBlock(cin, cout, None, config.dropout, "down" if kind == "down" else "")))
        self.input_blocks = nn.ModuleList(blocks)

    def forward(self, source: torch.Tensor) -> dict[int, torch.Tensor]:
        """source [B,3,S,S] in [-1,1] -> {slot: feature} for the slots the sites read."""
        h = source.to(self.input_blocks[0][0].weight.dtype)
        features = {}
        for slot, block in enumerate(self.input_blocks):
            h = block[0](h)
            if slot in SOURCE_FEATURE_SLOTS:
                features[slot] = h
        return features


class TimeEmbed(nn.Module):
    """`time_embed.time_embed.{0,2}`: sinusoid -> Linear -> SiLU -> Linear."""

    def __init__(self, channels: int, embed_channels: int):
        super().__init__()
        self.time_embed = nn.Sequential(nn.Linear(channels, embed_channels), nn.SiLU(),
                                        nn.Linear(embed_channels, embed_channels))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.time_embed(emb)


@dataclass
class SourceCondition:
    """Everything the sites read, computed once per sample from the source image and the two poses.

    features: encoder outputs by slot (SOURCE_FEATURE_SLOTS); flows/masks by site level (3, 4, 5).
    Batch size = number of conditioned items; they come first in the denoiser's batch.
    """

    features: dict[int, torch.Tensor]
    flows: dict[int, torch.Tensor]
    masks: dict[int, torch.Tensor]

    def site_input(self, feature_slot: int, level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.features[feature_slot], self.flows[level], self.masks[level]


class SCFMUNet(nn.Module):
    """Denoiser + source encoder + flow net + MSFF, with parameter names of the original `ema` state dict."""

    def __init__(self, config: SCFMConfig):
        super().__init__()
        self.config = config
        widths, emb, drop = config.level_channels, config.embed_channels, config.dropout
        self.time_embed = TimeEmbed(config.model_channels, emb)
        blocks: list[nn.Module | None] = [nn.Sequential(nn.Conv2d(config.in_channels, config.model_channels, 3, padding=1))]
        for slot, level, cin, cout, kind in input_plan(config):
            if slot in REMOVED_INPUT_SLOTS:
                blocks.append(None)
                continue
            layers = [ResBlock(cin, cout, emb, drop, "down" if kind == "down" else "")]
            if kind == "res" and level >= 3 and slot % 3 == 2:
                layers.append(FlowSite(cout, level))
            blocks.append(nn.ModuleList(layers))
        self.input_blocks = nn.ModuleList(blocks)
        self.middle_block = nn.ModuleList([ResBlock(widths[-1], widths[-1], emb, drop), FlowSite(widths[-1], LEVELS - 1),
                                           ResBlock(widths[-1], widths[-1], emb, drop)])
        outputs: list[nn.Module | None] = []
        self._laterals: dict[int, int | None] = {}
        for slot, level, index, cin, cout, lateral in output_plan(config):
            if slot not in PRESENT_OUTPUT_SLOTS:
                outputs.append(None)
                continue
            self._laterals[slot] = lateral
            layers = [ResBlock(cin, cout, emb, drop)]
            if index == 1 and level >= 3:
                layers.append(FlowSite(cout, level))
            if index == 2 and level > 0:
                layers.append(ResBlock(cout, cout, emb, drop, "up"))
            outputs.append(nn.ModuleList(layers))
        self.output_blocks = nn.ModuleList(outputs)
        self.out = nn.Sequential(GroupNorm32(config.model_channels), nn.SiLU(),
                                 nn.Conv2d(config.model_channels, config.out_channels, 3, padding=1))
        self.encoder = SourceEncoder(config)
        self.flow_net = PoseFlowNet(config)
        self.cct_block = ChannelTransformer(config)

    @property
    def dtype(self) -> torch.dtype:
        return self.out[2].weight.dtype

    def prepare_condition(self, source: torch.Tensor, source_pose: torch.Tensor,
                          target_pose: torch.Tensor) -> SourceCondition:
        """source [B,3,S,S] in [-1,1]; poses [B,P,S,S] in [0,1] -> the sites' inputs (flow net run once)."""
        dtype = self.dtype
        flows, masks = self.flow_net(source.to(dtype), source_pose.to(dtype), target_pose.to(dtype))
        levels = (LEVELS - 1, LEVELS - 2, LEVELS - 3)  # flow net returns coarsest first
        return SourceCondition(self.encoder(source), dict(zip(levels, flows)), dict(zip(levels, masks)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: SourceCondition | None) -> torch.Tensor:
        """x = cat[x_t, target pose] [N,3+P,S,S]; t [N] -> [N,out_channels,S,S] (eps, variance interpolant).

        The first `len(condition)` items are conditioned; the others are the null (unguided) pass, in which
        every site is the identity. With `condition=None` all items are unguided.
        """
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels).to(self.dtype))

        def site(level: int, feature_slot: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
            return None if condition is None else condition.site_input(feature_slot, level)

        h = x.to(self.dtype)
        skips: dict[int, torch.Tensor] = {}
        for slot, block in enumerate(self.input_blocks):
            if block is None:
                continue
            if slot == 0:
                h = block[0](h)
            else:
                h = block[0](h, emb)
                if len(block) > 1:
                    h = block[1](h, site(slot // 3, slot))
            skips[slot] = h
        h = self.middle_block[0](h, emb)
        h = self.middle_block[1](h, site(LEVELS - 1, max(SOURCE_FEATURE_SLOTS)))
        h = self.middle_block[2](h, emb)
        for slot, fused in zip(MSFF_SLOTS, self.cct_block([skips[s] for s in MSFF_SLOTS])):
            skips[slot] = fused
        for slot, block in enumerate(self.output_blocks):
            if block is None:
                continue
            lateral = self._laterals[slot]
            h = block[0](h, emb, None if lateral is None else skips[lateral])
            for layer in block[1:]:
                h = layer(h, site(LEVELS - 1 - slot // 3, 17 - slot)) if isinstance(layer, FlowSite) else layer(h, emb)
        return self.out(h)
