"""Hyper-parameters of the PCDMs models (stage-2/3 UNet, stage-1 prior), read from the weights (ARCHITECTURE.md
decision 3).

Shapes give channels, block layout, in/out channels, cross-attention width and the class embedding. Two
things shapes cannot tell are the attention head count and the GroupNorm group count: the defaults are
those of SD2.1-base (64-wide heads, 32 groups) and a side config (``config.json`` beside the file or the
safetensors metadata key ``config``) overrides them, which is how the tiny test models describe themselves.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch

from ..checkpoints import CheckpointError, check_split

# SD2.1-base: diffusers' `attention_head_dim` [5,10,20,20] is really a head COUNT, i.e. 64 channels per head.
SD21_HEAD_WIDTH = 64
SD21_NORM_GROUPS = 32


@dataclass(frozen=True)
class UNetConfig:
    """What `UNet2DConditionModel` needs to rebuild a PCDMs UNet exactly.

    in_channels: 9 for stage 2 (noisy latents 4 + mask 1 + masked latents 4), 8 for stage 3.
    class_embed_input_dim: width of the `projection` class embedding (stage 2 full: 1024), None when absent.
    attention_head_dim: head COUNT per block, diffusers' (mis)naming kept so the dict feeds diffusers as is.
    """

    block_out_channels: tuple[int, ...]
    down_block_types: tuple[str, ...]
    up_block_types: tuple[str, ...]
    layers_per_block: int
    in_channels: int
    out_channels: int
    cross_attention_dim: int
    attention_head_dim: tuple[int, ...]
    norm_num_groups: int = SD21_NORM_GROUPS
    use_linear_projection: bool = True
    class_embed_input_dim: int | None = None

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor],
                        overrides: Mapping[str, Any] | None = None) -> "UNetConfig":
        """Infer the config from a UNet state dict whose `unet.` prefix is already stripped.

        `overrides` is a side config in diffusers' naming (`attention_head_dim`, `norm_num_groups`, ...); keys
        that are not fields of this class (e.g. `sample_size`, `_class_name`) are ignored.
        """
        try:
            conv_in = state_dict["conv_in.weight"]
            conv_out = state_dict["conv_out.weight"]
        except KeyError as err:
            raise ValueError(f"not a UNet2DConditionModel state dict: missing {err.args[0]!r}") from None
        indices = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"down_blocks\.(\d+)\.", k))})
        if not indices:
            raise ValueError("not a UNet2DConditionModel state dict: no 'down_blocks.*' keys")
        channels, down_types = [], []
        for i in indices:
            channels.append(int(state_dict[f"down_blocks.{i}.resnets.0.conv2.weight"].shape[0]))
            has_attn = f"down_blocks.{i}.attentions.0.proj_in.weight" in state_dict
            down_types.append("CrossAttnDownBlock2D" if has_attn else "DownBlock2D")
        up_types = []
        for i in range(len(indices)):
            has_attn = f"up_blocks.{i}.attentions.0.proj_in.weight" in state_dict
            up_types.append("CrossAttnUpBlock2D" if has_attn else "UpBlock2D")
        layers = len({k.split(".")[3] for k in state_dict if k.startswith("down_blocks.0.resnets.")})
        attn_keys = [k for k in state_dict if k.endswith("attn2.to_k.weight")]
        if not attn_keys:
            raise ValueError("UNet state dict has no cross-attention layers ('*.attn2.to_k.weight')")
        proj_in = next(state_dict[k] for k in state_dict if k.endswith("attentions.0.proj_in.weight"))
        class_w = state_dict.get("class_embedding.linear_1.weight")
        inferred: dict[str, Any] = dict(
            block_out_channels=tuple(channels),
            down_block_types=tuple(down_types),
            up_block_types=tuple(up_types),
            layers_per_block=layers,
            in_channels=int(conv_in.shape[1]),
            out_channels=int(conv_out.shape[0]),
            cross_attention_dim=int(state_dict[attn_keys[0]].shape[1]),
            attention_head_dim=tuple(max(1, c // SD21_HEAD_WIDTH) for c in channels),
            use_linear_projection=proj_in.dim() == 2,
            class_embed_input_dim=None if class_w is None else int(class_w.shape[1]),
        )
        names = {f.name for f in fields(cls)}
        for key, value in (overrides or {}).items():
            if key in names:
                inferred[key] = tuple(value) if isinstance(value, list) else value
        head_counts = inferred["attention_head_dim"]
        if isinstance(head_counts, int):
            inferred["attention_head_dim"] = (head_counts,) * len(channels)
        _check_defaults(cls(**inferred), overrides or {})
        return cls(**inferred)

    def attention_widths(self) -> list[tuple[int, int]]:
        """(channels, head count) of every block with attention."""
        return [(c, h) for c, h, kind in zip(self.block_out_channels, self.attention_head_dim, self.down_block_types)
                if kind.startswith("CrossAttn")]

    def to_diffusers(self) -> dict[str, Any]:
        """Keyword arguments for `diffusers.UNet2DConditionModel` (SD2.1-base defaults for everything else)."""
        kwargs = asdict(self)
        class_dim = kwargs.pop("class_embed_input_dim")
        kwargs.update(
            upcast_attention=False,  # SD2.1-base (the 768 v-model upcasts; PCDMs started from -base)
            class_embed_type=None if class_dim is None else "projection",
            projection_class_embeddings_input_dim=class_dim,
        )
        return kwargs


def _check_defaults(config: UNetConfig, overrides: Mapping[str, Any]) -> None:
    """Head and group counts are not in the weights: the SD2.1-base defaults must fit the widths, and counts from
    a side config must divide them (else diffusers builds other layer shapes or fails deep inside)."""
    if "norm_num_groups" in overrides:
        check_split(config.norm_num_groups, config.block_out_channels, setting="norm_num_groups")
    else:
        check_split(config.norm_num_groups, config.block_out_channels, setting="norm_num_groups",
                    default_unit=SD21_NORM_GROUPS)
    for channels, heads in config.attention_widths():
        if "attention_head_dim" in overrides:
            check_split(heads, [channels], setting="attention_head_dim")
        else:
            check_split(heads, [channels], setting="attention_head_dim", default_unit=SD21_HEAD_WIDTH)


# ------------------------------------------------------------------------------------------- stage-1 prior
NUM_TOKENS = 6  # source pose, target pose, source embedding, time, noisy embedding, read-out ("prd") token
DEFAULT_HEAD_DIM = 64  # the released prior (from Kandinsky 2.2) uses 32 heads x 64 channels


@dataclass(frozen=True)
class PriorConfig:
    """Hyper-parameters of the stage-1 prior, inferred from tensor shapes (see `from_state_dict`)."""

    width: int  # transformer width (2048 released)
    num_layers: int  # 20 released
    num_heads: int  # 32 released
    head_dim: int  # 64 released
    embedding_dim: int = 1024  # CLIP ViT-H/14 image_embeds
    pose_features: int = 36  # 18 body points x (x, y)
    pose_hidden: int = 512
    ff_inner: int = 8192

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], side_config: Mapping | None = None,
                        source: str = "") -> PriorConfig:
        """Infer the config from a prior state dict; `side_config` (a config.json beside the file) may set the heads."""
        where = f" in {source}" if source else ""
        pos = state_dict.get("positional_embedding")
        if pos is None or pos.dim() != 3 or pos.shape[1] != NUM_TOKENS:
            shape = None if pos is None else tuple(pos.shape)
            raise CheckpointError(f"Not a PCDMs stage-1 prior{where}: expected 'positional_embedding' of shape "
                                  f"(1, {NUM_TOKENS}, width), found {shape}.")
        width = int(pos.shape[2])
        layers = {int(m.group(1)) for k in state_dict if (m := re.match(r"transformer_blocks\.(\d+)\.", k))}
        if not layers:
            raise CheckpointError(f"PCDMs prior{where} has no transformer_blocks: the file is incomplete; download it "
                                  "again.")
        side_config = side_config or {}
        if "num_attention_heads" not in side_config:  # the released width is a multiple of 64-channel heads
            check_split(width, [width], setting="num_attention_heads", default_unit=DEFAULT_HEAD_DIM)
        num_heads = int(side_config.get("num_attention_heads", max(1, width // DEFAULT_HEAD_DIM)))
        head_dim = int(side_config.get("attention_head_dim", width // num_heads))
        if num_heads * head_dim != width:
            raise CheckpointError(f"PCDMs prior{where}: {num_heads} heads x {head_dim} channels does not match the "
                                  f"transformer width {width}; fix num_attention_heads/attention_head_dim in its config.")
        return cls(
            width=width, num_layers=len(layers), num_heads=num_heads, head_dim=head_dim,
            embedding_dim=int(state_dict["proj_in.weight"].shape[1]),
            pose_features=int(state_dict["pose_encoder.net.0.weight"].shape[1]),
            pose_hidden=int(state_dict["pose_encoder.net.0.weight"].shape[0]),
            ff_inner=int(state_dict["transformer_blocks.0.ff.net.0.proj.weight"].shape[0]),
        )
