"""SD VAE from the diffusers layout (current and pre-0.14 attention names) and the original LDM layout."""
import pytest
import torch
from safetensors.torch import save_file

from posetransfer.models.checkpoints import CheckpointError
from posetransfer.models.vae import convert_vae_keys, decode_latents, encode_latents, load_vae, vae_config

from .pcdm.conftest import tiny_vae


def _to_ldm(sd, n_blocks=4):
    """diffusers -> original LDM names (the reverse map, written independently of the product's)."""
    out = {}
    for key, value in sd.items():
        k = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        k = k.replace("mid_block.resnets.0.", "mid.block_1.").replace("mid_block.resnets.1.", "mid.block_2.")
        for new, old in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            if f"mid_block.attentions.0.{new}." in k:
                k = k.replace(f"mid_block.attentions.0.{new}.", f"mid.attn_1.{old}.")
                if new != "group_norm" and value.dim() == 2:
                    value = value[:, :, None, None]
        parts = k.split(".")
        if parts[1] == "down_blocks":
            k = ".".join(["encoder", "down", parts[2]] + (["block"] + parts[4:] if parts[3] == "resnets"
                                                              else ["downsample"] + parts[5:]))
        elif parts[1] == "up_blocks":
            i = str(n_blocks - 1 - int(parts[2]))
            k = ".".join(["decoder", "up", i] + (["block"] + parts[4:] if parts[3] == "resnets"
                                                  else ["upsample"] + parts[5:]))
        out[k] = value.contiguous()
    return out


@pytest.mark.parametrize("layout", ["diffusers", "diffusers_old_attention", "ldm"])
def test_layouts_load_to_the_same_model(tmp_path, layout):
    reference = tiny_vae()
    sd = {k: v.contiguous() for k, v in reference.state_dict().items()}
    if layout == "ldm":
        sd = _to_ldm(sd)
        assert "encoder.down.0.block.0.conv1.weight" in sd and sd["encoder.mid.attn_1.q.weight"].dim() == 4
    elif layout == "diffusers_old_attention":
        for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
            for part in ("encoder", "decoder"):
                for kind in ("weight", "bias"):
                    sd[f"{part}.mid_block.attentions.0.{old}.{kind}"] = sd.pop(f"{part}.mid_block.attentions.0.{new}.{kind}")
    path = tmp_path / "vae.safetensors"
    save_file(sd, str(path))
    (tmp_path / "vae.json").write_text('{"norm_num_groups": 4}')
    model = load_vae(str(path))
    images = torch.rand(1, 3, 32, 48) * 2 - 1
    latents = encode_latents(model, images)
    with torch.no_grad():
        expected = reference.encode(images).latent_dist.mode() * 0.18215
        torch.testing.assert_close(latents, expected)
        decoded = decode_latents(model, latents)
        torch.testing.assert_close(decoded, (reference.decode(latents / 0.18215).sample / 2 + 0.5).clamp(0, 1))
    assert latents.shape == (1, 4, 4, 6) and decoded.shape == (1, 3, 32, 48)


def test_sd_vae_config_from_shapes():
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        sd_vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                               up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2)
    config = vae_config(convert_vae_keys(sd_vae.state_dict()))
    assert config["block_out_channels"] == (128, 256, 512, 512) and config["layers_per_block"] == 2
    assert config["norm_num_groups"] == 32 and config["scaling_factor"] == 0.18215
    assert sum(p.numel() for p in sd_vae.parameters()) == 83_653_863  # PCDMS.md §3.1


def test_non_vae_file_refused(tmp_path):
    path = tmp_path / "not-a-vae.safetensors"
    save_file({"embeddings.cls_token": torch.zeros(1, 1, 8), "embeddings.patch_embeddings.projection.weight":
               torch.zeros(8, 3, 14, 14)}, str(path))
    with pytest.raises(CheckpointError, match="VAE"):
        load_vae(str(path))


def test_ldm_weights_without_a_diffusers_name_are_refused():
    sd = _to_ldm({k: v.contiguous() for k, v in tiny_vae().state_dict().items()})
    assert set(convert_vae_keys({**sd, "model_ema.decay": torch.tensor(0.999)})) == set(tiny_vae().state_dict())
    with pytest.raises(ValueError, match="no diffusers name"):
        convert_vae_keys({**sd, "decoder.extra.weight": torch.zeros(1)})
