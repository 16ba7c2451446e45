"""The small trainable heads of PCDMs (PCDMS.md §3.2): pose projection and appearance projection."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


POSE_PROJ_WIDTHS = (16, 32, 96, 256)  # the released pose_proj's (stage2_train_inpaint_model.py)


def new_pose_proj(out_channels: int, widths: tuple[int, ...] = POSE_PROJ_WIDTHS, in_channels: int = 3) -> nn.Module:
    """diffusers `ControlNetConditioningEmbedding`: pose canvas (B, 3, H, W) in [-1, 1] -> (B, out, H/8, W/8) (three
    stride-2 convs; one latent cell per 8x8 pixels). New ones start with a zero output conv (diffusers' init)."""
    from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding

    return ControlNetConditioningEmbedding(conditioning_embedding_channels=out_channels,
                                           conditioning_channels=in_channels, block_out_channels=tuple(widths))


def build_pose_proj(state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """`new_pose_proj` with widths read from `state_dict` (prefix `pose_proj.` stripped). Released: conditioning
    3 ch -> (16, 32, 96, 256) -> 320."""
    try:
        conv_in = state_dict["conv_in.weight"]
        conv_out = state_dict["conv_out.weight"]
        n_blocks = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
        # blocks alternate (same width, then stride-2 widening): the odd ones carry the next width
        widths = [int(conv_in.shape[0])] + [int(state_dict[f"blocks.{i}.weight"].shape[0]) for i in range(1, n_blocks, 2)]
    except KeyError as err:
        raise ValueError(f"not a ControlNetConditioningEmbedding (pose_proj) state dict: missing {err.args[0]!r}") from None
    return new_pose_proj(int(conv_out.shape[0]), tuple(widths), int(conv_in.shape[1]))


class ImageProjection(nn.Module):
    """`image_proj_model[_p]`: DINOv2 tokens (B, T, 1536) -> cross-attention tokens (B, T, 1024).

    Linear -> GELU -> Dropout -> LayerNorm -> Linear -> Dropout; the indices 0/3/4 are the checkpoint keys.
    Dropout is 0 in the original, so it is the identity here too.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(0.0),
                                 nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, out_dim), nn.Dropout(0.0))

    @property
    def in_dim(self) -> int:
        return self.net[0].in_features

    @property
    def out_dim(self) -> int:
        return self.net[4].out_features

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> "ImageProjection":
        """Shaped for `state_dict` (prefix stripped): `net.0.weight` (hidden, in), `net.4.weight` (out, hidden)."""
        try:
            first, last = state_dict["net.0.weight"], state_dict["net.4.weight"]
        except KeyError as err:
            raise ValueError(f"not an image projection state dict: missing {err.args[0]!r}") from None
        return cls(int(first.shape[1]), int(first.shape[0]), int(last.shape[0]))
