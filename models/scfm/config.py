"""SCFM model hyper-parameters, read from a state dict's shapes (SCFM.md §2, §9).

The topology is fixed by the original code (6 levels, 2 residual blocks, the removed skips, flow sites at
levels 3/4/5, MSFF on three skips); only widths and the image size vary, so a scaled-down test model
loads through exactly the same code as the released 256 x 256 one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch

from ...errors import PoseTransferError

LEVELS = 6
# Per site level: GFLA local-attention block size k and auto-correlation max displacement (target_net.py,
# where both are looked up from the feature size 32/16/8 of the 256 model).
ATTENTION_KERNEL = {3: 3, 4: 2, 5: 1}
CORRELATION_DISPLACEMENT = {3: 4, 4: 3, 5: 2}
IMAGE_CHANNELS = 3


class ConfigError(PoseTransferError):
    """A state dict whose shapes do not describe an SCFM model; the message names the key."""


@dataclass(frozen=True)
class SCFMConfig:
    """Widths of one SCFM model. Defaults are the paper's 256 x 256 DeepFashion model."""

    image_size: int = 256
    pose_channels: int = 20
    out_channels: int = 6
    level_channels: tuple[int, ...] = (128, 128, 256, 256, 512, 512)
    embed_channels: int = 512
    flow_channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    msff_patch: int = 16
    msff_heads: int = 4
    msff_layers: int = 4
    msff_mlp_ratio: int = 4
    dropout: float = 0.1

    @property
    def model_channels(self) -> int:
        return self.level_channels[0]

    @property
    def in_channels(self) -> int:
        return IMAGE_CHANNELS + self.pose_channels

    @property
    def msff_channels(self) -> tuple[int, int, int]:
        """Widths of the skips h0, h3, h6 that MSFF fuses (levels 0, 1 at half size, 1 at quarter size)."""
        return (self.level_channels[0], self.level_channels[0], self.level_channels[1])

    def resolution(self, level: int) -> int:
        """Side of the feature maps of `level`; also the side of the flow and mask driving its sites."""
        return self.image_size >> level

    def __post_init__(self) -> None:
        if len(self.level_channels) != LEVELS or len(self.flow_channels) != 5:
            raise ConfigError(f"SCFM needs {LEVELS} level widths and 5 flow-net widths, got "
                              f"{self.level_channels} and {self.flow_channels}")
        if self.image_size % (1 << (LEVELS - 1)) or self.image_size % self.msff_patch or self.msff_patch % 4:
            raise ConfigError(f"image size {self.image_size} and MSFF patch {self.msff_patch} do not fit the "
                              f"6-level topology (image divisible by 32 and by the patch, patch divisible by 4)")

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> "SCFMConfig":
        """Infer every width from the weights (no config object is ever read from the file)."""

        def shape(key: str) -> tuple[int, ...]:
            if key not in state_dict:
                raise ConfigError(f"not an SCFM model: the key '{key}' is missing")
            return tuple(state_dict[key].shape)

        # Output slot whose ResBlock produces each level's width (see unet.output_plan).
        level_slots = (17, 14, 11, 8, 5, 2)
        level_channels = tuple(shape(f"output_blocks.{slot}.0.in_layers.2.weight")[0] for slot in level_slots)
        flow_keys = ["flow_net.block0.model.2.weight"] + [f"flow_net.encoder{i}.model.2.weight" for i in range(4)]
        patch_weight = shape("cct_block.embeddings_1.patch_embeddings.weight")
        tokens = shape("cct_block.embeddings_1.position_embeddings")[1]
        side = math.isqrt(tokens)
        heads = sum(1 for k in state_dict if k.startswith("cct_block.encoder.layer.0.channel_attn.key."))
        layers = len({k.split(".")[3] for k in state_dict if k.startswith("cct_block.encoder.layer.")})
        mlp_width = shape("cct_block.encoder.layer.0.ffn1.fc1.weight")[0]
        return cls(
            image_size=patch_weight[-1] * side,
            pose_channels=shape("input_blocks.0.0.weight")[1] - IMAGE_CHANNELS,
            out_channels=shape("out.2.weight")[0],
            level_channels=level_channels,
            embed_channels=shape("time_embed.time_embed.2.weight")[0],
            flow_channels=tuple(shape(k)[0] for k in flow_keys),
            msff_patch=patch_weight[-1],
            msff_heads=heads,
            msff_layers=layers,
            msff_mlp_ratio=mlp_width // patch_weight[0],
        )
