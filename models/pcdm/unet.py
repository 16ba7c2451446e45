"""PCDMs' stage-2 UNet: a stock SD2.1-base UNet whose conv_in output receives the pose residual (PCDMS.md §9)."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .config import UNetConfig


class PoseUNet(nn.Module):
    """`diffusers.UNet2DConditionModel` under the attribute `unet`, so checkpoint keys `unet.*` load unchanged.

    The pose residual enters between `conv_in` and the first skip connection, where diffusers' forward offers
    no argument: a forward hook on `conv_in` adds it for the one call, and diffusers' own forward does the rest
    (what PCDMs' copied forward did, without a copy that drifts from diffusers releases).
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
        class embedding (stage 2 full). Conditions are cast to the sample's dtype (heads may run in float32).
        Returns (B, out_channels, h, w) in the sample's dtype.
        """
        if self.has_class_embedding:
            if class_labels is None:
                raise ValueError("this PCDMs UNet has a class embedding (stage 2 full): class_labels (B, 1024) is required")
            # the original squeezes (B,1,D) -> (B,D) before the projection
            class_labels = class_labels.reshape(sample.shape[0], -1).to(sample.dtype)
        elif class_labels is not None:
            raise ValueError("class_labels given, but this UNet has no class embedding (simplified PCDMs model)")
        hook = None
        if pose_residual is not None:
            residual = pose_residual.to(sample.dtype)
            hook = self.unet.conv_in.register_forward_hook(lambda module, inputs, output: output + residual)
        try:
            return self.unet(sample, timestep, encoder_hidden_states.to(sample.dtype), class_labels=class_labels,
                             return_dict=False)[0]
        finally:
            if hook is not None:
                hook.remove()


def build_pose_unet(state_dict: Mapping[str, torch.Tensor], overrides: Mapping | None = None) -> PoseUNet:
    """An (uninitialised-weights) PoseUNet shaped for `state_dict` (keys without the `unet.` prefix)."""
    return PoseUNet(UNetConfig.from_state_dict(state_dict, overrides))
