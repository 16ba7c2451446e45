"""UNetConfig: architecture inferred from weights, side-config overrides."""
import pytest
import torch

from posetransfer.models.pcdm.config import UNetConfig

from .conftest import TINY_UNET, UNET_SIDE_CONFIG, tiny_unet

SD21_BASE = dict(
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024, use_linear_projection=True, in_channels=9,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)


def _meta_unet(**extra):
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(**SD21_BASE, **extra)


def test_sd21_base_shapes_give_released_config_without_side_file():
    config = UNetConfig.from_state_dict(_meta_unet().state_dict())
    assert config.block_out_channels == (320, 640, 1280, 1280)
    assert config.attention_head_dim == (5, 10, 20, 20)  # 64-wide heads
    assert config.layers_per_block == 2 and config.in_channels == 9 and config.out_channels == 4
    assert config.cross_attention_dim == 1024 and config.norm_num_groups == 32 and config.use_linear_projection
    assert config.down_block_types == SD21_BASE["down_block_types"]
    assert config.up_block_types == SD21_BASE["up_block_types"]
    assert config.class_embed_input_dim is None


def test_class_embedding_detected_and_rebuilt():
    sd = _meta_unet(class_embed_type="projection", projection_class_embeddings_input_dim=1024).state_dict()
    config = UNetConfig.from_state_dict(sd)
    assert config.class_embed_input_dim == 1024
    kwargs = config.to_diffusers()
    assert kwargs["class_embed_type"] == "projection" and kwargs["projection_class_embeddings_input_dim"] == 1024
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        rebuilt = UNet2DConditionModel(**kwargs).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in sd.items()}


def test_side_config_overrides_what_shapes_cannot_tell():
    sd = tiny_unet().state_dict()
    config = UNetConfig.from_state_dict(sd, {**UNET_SIDE_CONFIG, "sample_size": 8, "_class_name": "x"})
    assert config.attention_head_dim == (2, 4) and config.norm_num_groups == 8
    for key in ("block_out_channels", "layers_per_block", "cross_attention_dim", "in_channels"):
        assert getattr(config, key) == TINY_UNET[key]


def test_scalar_head_override_is_broadcast_and_bad_dict_refused():
    sd = tiny_unet().state_dict()
    assert UNetConfig.from_state_dict(sd, {"attention_head_dim": 2}).attention_head_dim == (2, 2)
    with pytest.raises(ValueError, match="conv_in"):
        UNetConfig.from_state_dict({"foo": torch.zeros(1)})
