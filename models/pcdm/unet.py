"""PCDMs' stage-2 UNet: a stock SD2.1-base UNet whose conv_in output receives the pose residual (PCDMS.md §9)."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .config import UNetConfig


class PoseUNet(nn.Module):
    """`diffusers.UNet2DConditionModel` under the attribute `unet`, so checkpoint keys `unet.*` load unchanged.

    The forward pass re-states diffusers' body for the features these configs use, because the pose
    residual has to enter between `conv_in` and the first skip connection, where diffusers offers no hook.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        from diffusers import UNet2DConditionModel  # heavy import, only when a model is built

        self.config = config
        self.unet = UNet2DConditionModel(**config.to_diffusers())

    @property
    def has_class_embedding(self) -> bool:
        return self.unet.class_embedding is not None

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int | float,
                encoder_hidden_states: torch.Tensor, pose_residual: torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Predict noise.

        sample: (B, in_channels, h, w) latents (+ mask + masked latents); timestep: scalar or (B,);
        encoder_hidden_states: (B, T, cross_attention_dim); pose_residual: (B or 1, C0, h, w), added after
        conv_in so it flows into every skip; class_labels: (B, D) or (B, 1, D), required iff the model has a
        class embedding (stage 2 full). Returns (B, out_channels, h, w) in the sample's dtype.
        """
        unet = self.unet
        batch = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.reshape(-1).expand(batch) if t.numel() == 1 else t.reshape(batch)
        # Timesteps has no weights and returns float32; the embedding MLP runs in the model dtype.
        emb = unet.time_embedding(unet.time_proj(t).to(sample.dtype))
        if self.has_class_embedding:
            if class_labels is None:
                raise ValueError("this PCDMs UNet has a class embedding (stage 2 full): class_labels (B, 1024) is required")
            # the original squeezes (B,1,D) -> (B,D) before the projection
            emb = emb + unet.class_embedding(class_labels.reshape(batch, -1).to(sample.dtype)).to(sample.dtype)
        elif class_labels is not None:
            raise ValueError("class_labels given, but this UNet has no class embedding (simplified PCDMs model)")

        hidden = unet.conv_in(sample)
        if pose_residual is not None:
            hidden = hidden + pose_residual.to(hidden.dtype)
        skips: tuple[torch.Tensor, ...] = (hidden,)
        for block in unet.down_blocks:
            if getattr(block, "has_cross_attention", False):
                hidden, res = block(hidden_states=hidden, temb=emb, encoder_hidden_states=encoder_hidden_states)
            else:
                hidden, res = block(hidden_states=hidden, temb=emb)
            skips += res
        hidden = unet.mid_block(hidden, emb, encoder_hidden_states=encoder_hidden_states)

        # Odd latent sizes need explicit upsample targets, as in diffusers.
        factor = 2 ** unet.num_upsamplers
        forward_size = any(d % factor for d in sample.shape[-2:])
        for i, block in enumerate(unet.up_blocks):
            n = len(block.resnets)
            res, skips = skips[-n:], skips[:-n]
            size = skips[-1].shape[2:] if forward_size and i < len(unet.up_blocks) - 1 else None
            if getattr(block, "has_cross_attention", False):
                hidden = block(hidden_states=hidden, temb=emb, res_hidden_states_tuple=res,
                               encoder_hidden_states=encoder_hidden_states, upsample_size=size)
            else:
                hidden = block(hidden_states=hidden, temb=emb, res_hidden_states_tuple=res, upsample_size=size)
        if unet.conv_norm_out is not None:
            hidden = unet.conv_act(unet.conv_norm_out(hidden))
        return unet.conv_out(hidden)


def build_pose_unet(state_dict: Mapping[str, torch.Tensor], overrides: Mapping | None = None) -> PoseUNet:
    """An (uninitialised-weights) PoseUNet shaped for `state_dict` (keys without the `unet.` prefix)."""
    return PoseUNet(UNetConfig.from_state_dict(state_dict, overrides))
