"""DINOv2 / CLIP-vision encoders: both key layouts, inferred configs, PCDMs preprocessing, legacy pos-emb."""
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from posetransfer.models.checkpoints import CheckpointError
from posetransfer.models.encoders import (build_dinov2, clip_preprocess, convert_dinov2_keys, encode_clip_embeds,
                                          encode_dino, load_clip_vision, load_dinov2)

from .pcdm.conftest import old_dinov2_keys, randomise, tiny_dinov2


def _uint8_images(batch, height, width, seed=0):
    return torch.randint(0, 256, (batch, 3, height, width), generator=torch.Generator().manual_seed(seed)) / 255


def test_preprocessing_matches_clip_image_processor():
    from transformers import CLIPImageProcessor

    images = _uint8_images(2, 90, 70)
    ours = clip_preprocess(images)
    for i in range(2):
        pil = Image.fromarray((images[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        ref = CLIPImageProcessor()(images=pil, return_tensors="pt").pixel_values
        torch.testing.assert_close(ours[i:i + 1], ref, atol=1e-5, rtol=0)
    assert ours.shape == (2, 3, 224, 224)


@pytest.mark.parametrize("swiglu", [False, True])
def test_old_key_names_load_and_match_forward(swiglu):
    reference = tiny_dinov2(swiglu=swiglu)
    sd = old_dinov2_keys(reference.state_dict())
    if swiglu:  # transformers 4 fused SwiGLU input layer: [gate; up]
        for prefix in {k.rsplit("mlp.", 1)[0] for k in sd if ".mlp.gate_proj." in k}:
            for kind in ("weight", "bias"):
                gate, up = sd.pop(f"{prefix}mlp.gate_proj.{kind}"), sd.pop(f"{prefix}mlp.up_proj.{kind}")
                sd[f"{prefix}mlp.weights_in.{kind}"] = torch.cat([gate, up])
                sd[f"{prefix}mlp.weights_out.{kind}"] = sd.pop(f"{prefix}mlp.down_proj.{kind}")
    assert "encoder.layer.0.attention.attention.query.weight" in sd
    model = build_dinov2(sd, {"num_attention_heads": 2})
    assert model.config.use_swiglu_ffn == swiglu and model.config.image_size == 98
    images = _uint8_images(2, 64, 64)
    modern = encode_dino(model, images, legacy_interpolation=False)
    with torch.no_grad():
        torch.testing.assert_close(modern, reference(pixel_values=clip_preprocess(images)).last_hidden_state)
    assert modern.shape == (2, 1 + 16 * 16, 24)


def _transformers_432_interpolation(self, embeddings, height, width):
    """transformers 4.32.1 `Dinov2Embeddings.interpolate_pos_encoding`, restated for the test."""
    num_patches, num_positions = embeddings.shape[1] - 1, self.position_embeddings.shape[1] - 1
    if num_patches == num_positions and height == width:
        return self.position_embeddings
    class_pos_embed, patch_pos_embed = self.position_embeddings[:, 0], self.position_embeddings[:, 1:]
    dim = embeddings.shape[-1]
    height, width = height // 14 + 0.1, width // 14 + 0.1
    side = int(math.sqrt(num_positions))
    patch_pos_embed = patch_pos_embed.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch_pos_embed = torch.nn.functional.interpolate(
        patch_pos_embed, scale_factor=(height / math.sqrt(num_positions), width / math.sqrt(num_positions)),
        mode="bicubic", align_corners=False)
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


def test_legacy_interpolation_matches_transformers_432():
    model = tiny_dinov2()
    images = _uint8_images(1, 64, 64)
    ours = encode_dino(model, images, legacy_interpolation=True)
    modern = encode_dino(model, images, legacy_interpolation=False)
    model.embeddings.interpolate_pos_encoding = _transformers_432_interpolation.__get__(model.embeddings)
    with torch.no_grad():
        ref = model(pixel_values=clip_preprocess(images)).last_hidden_state
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert (ours - modern).abs().max() > 1e-4  # the two formulas really differ


def _dino_file(tmp_path):
    path = tmp_path / "dinov2-giant.safetensors"
    save_file({k: v.contiguous() for k, v in old_dinov2_keys(tiny_dinov2().state_dict()).items()}, str(path))
    (tmp_path / "dinov2-giant.json").write_text('{"num_attention_heads": 2}')
    return path


def test_dino_file_and_clip_refusal(tmp_path):
    dino_file = _dino_file(tmp_path)
    model = load_dinov2(str(dino_file))
    assert model.config.num_attention_heads == 2
    clip_path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in _tiny_clip().state_dict().items()}, str(clip_path))
    with pytest.raises(CheckpointError, match="DINOv2"):
        load_dinov2(str(clip_path))
    with pytest.raises(CheckpointError, match="CLIP"):
        load_clip_vision(str(dino_file))


def _tiny_clip():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=224, patch_size=32, projection_dim=16, hidden_act="gelu")
    return randomise(CLIPVisionModelWithProjection(config), 5)


def test_clip_vision_embeds(tmp_path):
    reference = _tiny_clip()
    sd = {k: v.contiguous() for k, v in reference.state_dict().items()}
    sd["text_model.embeddings.token_embedding.weight"] = torch.zeros(4, 8)  # a full CLIP file: text tower ignored
    path = tmp_path / "clip.safetensors"
    save_file(sd, str(path))
    (tmp_path / "clip.json").write_text('{"num_attention_heads": 2}')
    model = load_clip_vision(str(path))
    images = _uint8_images(2, 50, 40)
    embeds = encode_clip_embeds(model, images)
    with torch.no_grad():
        torch.testing.assert_close(embeds, reference(pixel_values=clip_preprocess(images)).image_embeds)
    assert embeds.shape == (2, 16)


def test_key_conversion_is_idempotent_on_new_names():
    sd = tiny_dinov2().state_dict()
    assert convert_dinov2_keys(sd).keys() == sd.keys()


def test_export_without_mask_token_loads():
    reference = tiny_dinov2()
    sd = {k: v for k, v in reference.state_dict().items() if k != "embeddings.mask_token"}
    model = build_dinov2(sd, {"num_attention_heads": 2})
    assert model.embeddings.mask_token.eq(0).all()
    images = _uint8_images(1, 32, 32)
    torch.testing.assert_close(encode_dino(model, images), encode_dino(reference, images))


def test_zero_image_embedding_is_the_encoders_output_for_zero_pixels():
    from posetransfer.models.encoders import encode_zero_image

    model = _tiny_clip()
    with torch.no_grad():
        expected = model(pixel_values=torch.zeros(1, 3, 224, 224)).image_embeds
    zero = encode_zero_image(model, batch=2)
    assert zero.shape == (2, expected.shape[-1]) and zero.abs().max() > 0
    torch.testing.assert_close(zero, expected.expand(2, -1))
