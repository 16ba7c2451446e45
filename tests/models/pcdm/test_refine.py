"""PCDMs stage-3 refine: loading the original layout, the unconditional branch, guidance with batches, strength,
determinism, and parity with the original pipeline's loop (written out here with a stock diffusers UNet)."""
import pytest
import torch
from diffusers import UNet2DConditionModel

from posetransfer.models.checkpoints import CheckpointError
from posetransfer.models.encoders import encode_dino
from posetransfer.models.images import pil_resize, to_signed
from posetransfer.models.noise import seeded_noise
from posetransfer.models.pcdm import refine as refine_mod
from posetransfer.models.pcdm.refine import RefineSettings, refine
from posetransfer.models.pcdm.stages import load_prior, load_refiner
from posetransfer.models.pcdm.sampling import rescale_noise_cfg
from posetransfer.models.pcdm.schedulers import make_scheduler
from posetransfer.models.vae import SD_LATENT_SCALE

from .conftest import TINY_UNET, UNET_SIDE_CONFIG, tiny_dinov2, tiny_image_proj, tiny_unet, tiny_vae, write_with_config

SIZE = 64  # pixels; latents 8 x 8


def stage3_state_dict():
    """A stage-3 file's `module` dict: `unet.*` (8 input channels) + `image_proj_model_p.*`, fp16 as released."""
    parts = {"unet.": tiny_unet(in_channels=8), "image_proj_model_p.": tiny_image_proj()}
    return {prefix + k: v.half() for prefix, module in parts.items() for k, v in module.state_dict().items()}


def save_stage3(path):
    torch.save({"module": stage3_state_dict(), "global_steps": 10}, path)
    write_with_config(path, UNET_SIDE_CONFIG)
    return str(path)


def settings(**kw):
    return RefineSettings(size=SIZE, **kw)


def images(batch, seed, height=SIZE, width=SIZE):
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    path = save_stage3(tmp_path_factory.mktemp("s3") / "s3_512.pt")
    return load_refiner(path), tiny_vae(), tiny_dinov2(), path


def reference_refine(path, vae, dino, coarse, source, steps, guidance, rescale, seed, start=0):
    """Stage3_RefinedPipeline's loop (PCDMS.md §6.4) with a stock UNet, VAE mode and our seeded noise; `start` > 0
    begins later from the noised coarse latents, as diffusers' img2img pipelines do."""
    state = torch.load(path, weights_only=True)["module"]
    unet = UNet2DConditionModel(**{**TINY_UNET, "in_channels": 8})
    unet.load_state_dict({k[5:]: v.float() for k, v in state.items() if k.startswith("unet.")})
    w = {k[19:]: v.float() for k, v in state.items() if k.startswith("image_proj_model_p.")}
    tokens = encode_dino(dino, pil_resize(source, (SIZE, SIZE)))  # square inputs: every fit mode is a plain resize
    h = torch.nn.functional.gelu(tokens @ w["net.0.weight"].T + w["net.0.bias"])
    h = torch.nn.functional.layer_norm(h, (16,), w["net.3.weight"], w["net.3.bias"])
    feature = (h @ w["net.4.weight"].T + w["net.4.bias"]).expand(coarse.shape[0], -1, -1)
    gen_latents = vae.encode(to_signed(pil_resize(coarse, (SIZE, SIZE)))).latent_dist.mode() * SD_LATENT_SCALE
    feature_f = torch.cat([torch.zeros_like(feature), feature])
    gen_f = torch.cat([torch.zeros_like(gen_latents), gen_latents])
    scheduler = make_scheduler("unipc")
    scheduler.set_timesteps(steps)
    latents = seeded_noise(tuple(gen_latents.shape), seed)
    if start:
        scheduler.set_begin_index(start)
        latents = scheduler.add_noise(gen_latents, latents, scheduler.timesteps[start:start + 1])
    for t in scheduler.timesteps[start:]:
        x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        eps = unet(torch.cat([x, gen_f], 1), t, encoder_hidden_states=feature_f).sample
        eps_u, eps_c = eps.chunk(2)
        eps = eps_u + guidance * (eps_c - eps_u)
        if rescale > 0:
            eps = rescale_noise_cfg(eps, eps_c, rescale)
        latents = scheduler.step(eps, t, latents).prev_sample
    return (vae.decode(latents / SD_LATENT_SCALE).sample / 2 + 0.5).clamp(0, 1)


@torch.no_grad()
def test_matches_the_original_loop_with_batched_guidance(parts):
    model, vae, dino, path = parts
    coarse, source = images(2, 0), images(1, 1)
    ours = refine(model, vae, dino, coarse, source, settings(steps=3, guidance_scale=2.0, guidance_rescale=2.0, seed=5))
    ref = reference_refine(path, vae, dino, coarse, source, 3, 2.0, 2.0, 5)
    assert ours.shape == (2, 3, SIZE, SIZE) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_unconditional_half_gets_zero_tokens_and_zero_coarse_latents(parts, monkeypatch):
    model, vae, dino, _ = parts
    calls = []
    forward = type(model.unet).forward
    monkeypatch.setattr(type(model.unet), "forward",
                        lambda self, x, t, encoder_hidden_states, **kw:
                        calls.append((x.clone(), encoder_hidden_states.clone()))
                        or forward(self, x, t, encoder_hidden_states, **kw))
    coarse = images(3, 2)
    refine(model, vae, dino, coarse, images(1, 3), settings(steps=2, guidance_scale=3.0, seed=1))
    x, ehs = calls[0]
    assert x.shape == (6, 8, 8, 8) and ehs.shape == (6, 257, 32)
    assert torch.equal(x[:3, 4:], torch.zeros_like(x[:3, 4:])) and torch.equal(ehs[:3], torch.zeros_like(ehs[:3]))
    expected = vae.encode(to_signed(pil_resize(coarse, (SIZE, SIZE)))).latent_dist.mode() * SD_LATENT_SCALE
    torch.testing.assert_close(x[3:, 4:], expected)
    assert torch.equal(x[:3, :4], x[3:, :4]) and ehs[3:].abs().min() > 0
    calls.clear()
    refine(model, vae, dino, coarse, images(1, 3), settings(steps=2, guidance_scale=1.0, seed=1))
    assert calls[0][0].shape[0] == 3  # no guidance: one conditional pass


def test_seeded_determinism_and_batch_independence(parts):
    model, vae, dino, _ = parts
    coarse, source = images(2, 4), images(2, 5)
    a = refine(model, vae, dino, coarse, source, settings(steps=2, seed=9))
    b = refine(model, vae, dino, coarse, source, settings(steps=2, seed=9))
    c = refine(model, vae, dino, coarse, source, settings(steps=2, seed=10))
    single = refine(model, vae, dino, coarse[1:], source[1:], settings(steps=2, seed=10))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    torch.testing.assert_close(a[1], single[0], atol=1e-5, rtol=1e-5)  # item i uses seed + i


def test_strength_starts_from_noised_coarse_latents(parts, monkeypatch):
    model, vae, dino, _ = parts
    seen = []
    monkeypatch.setattr(refine_mod, "denoise", lambda fn, latents, sched, *a, **kw: seen.append((latents, sched)) or latents)
    coarse = images(1, 6)
    refine(model, vae, dino, coarse, coarse, settings(steps=4, strength=0.5, seed=2))
    latents, sched = seen[0]
    full = make_scheduler("unipc")
    full.set_timesteps(4)
    assert sched.timesteps.tolist() == full.timesteps[2:].tolist()
    clean = vae.encode(to_signed(pil_resize(coarse, (SIZE, SIZE)))).latent_dist.mode() * SD_LATENT_SCALE
    full.set_begin_index(2)
    torch.testing.assert_close(latents, full.add_noise(clean, seeded_noise((1, 4, 8, 8), 2), full.timesteps[2:3]))
    with pytest.raises(ValueError, match="strength"):
        refine(model, vae, dino, coarse, coarse, settings(steps=4, strength=0.0))


@torch.no_grad()
def test_partial_strength_matches_img2img_loop(parts):
    model, vae, dino, path = parts
    coarse, source = images(1, 7), images(1, 8)
    ours = refine(model, vae, dino, coarse, source, settings(steps=4, strength=0.5, seed=3))
    ref = reference_refine(path, vae, dino, coarse, source, 4, 2.0, 0.0, 3, start=2)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_source_batch_mismatch_errors(parts):
    model, vae, dino, _ = parts
    with pytest.raises(ValueError, match="source has 2 images but the coarse batch has 3"):
        refine(model, vae, dino, images(3, 0), images(2, 1), settings(steps=2))


def test_kind_detection_between_stages(tmp_path, parts, full_file):
    prior_like = {"positional_embedding": torch.zeros(1, 6, 8), "prd_embedding": torch.zeros(1, 1, 8)}
    torch.save({"module": prior_like}, tmp_path / "s3_512.pt")
    with pytest.raises(CheckpointError, match="stage-1 prior.*stage-3 refinement.*PCDMs#24"):
        load_refiner(str(tmp_path / "s3_512.pt"))
    with pytest.raises(CheckpointError, match="stage-2 inpainting model.*stage-3 refinement"):
        load_refiner(str(full_file))
    with pytest.raises(CheckpointError, match="stage-3 refinement model.*stage-1 prior"):
        load_prior(parts[3])


def test_non_square_coarse_round_trips_to_its_size(parts):
    model, vae, dino, _ = parts
    coarse = images(1, 9, height=48, width=32)
    out = refine(model, vae, dino, coarse, images(1, 10, height=40, width=40), settings(steps=2))
    assert out.shape == (1, 3, 48, 32)
    stretched = refine(model, vae, dino, coarse, coarse, settings(steps=2, fit="stretch"))
    assert stretched.shape == (1, 3, 48, 32) and not torch.allclose(out, stretched)


def test_half_precision_keeps_the_appearance_head_float32(parts):
    """The stage-3 script runs image_proj_model_p in float32 beside its float16 UNet."""
    model, vae, dino, path = parts
    half = load_refiner(path, torch.float16)
    assert half.dtype == torch.float16 and half.head_dtype == torch.float32
    tokens = torch.randn(1, 257, 24)
    torch.testing.assert_close(half.image_proj(tokens), model.image_proj(tokens), atol=0, rtol=0)
    out = refine(half, vae, dino, images(1, 6), images(1, 7), settings(steps=2))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
