"""Parity with the original stage-2 pipelines (PCDMS.md §6.1, §6.3, §13), re-stated here independently.

The reference below is straight-line code following the original data flow: transformers' stock
CLIPImageProcessor and Dinov2Model forward, diffusers' stock UNet2DConditionModel forward with the pose
residual added to conv_in's output by a hook, and the diffusers scheduler classes configured as the
original scripts did. It shares nothing with the product pipeline but the weights and the initial noise.
VAE conditions use the posterior mode on both sides (PCDMS.md §13 step 2). Tolerance: 1e-4 on [0,1] images.
"""
import numpy as np
import pytest
import torch
from PIL import Image

from posetransfer.models.pcdm.inpaint import InpaintSettings, inpaint

from .conftest import TINY_SIZE

SD21_BASE_SCHEDULER_CONFIG = {  # SD 2.1-base scheduler_config.json (PNDM; sd2-community mirror)
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
}


def original_scheduler(name):
    from diffusers import DDIMScheduler, UniPCMultistepScheduler

    if name == "ddim":  # the demo notebook
        return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                             clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    # stage2_batchtest_inpaint_model.py, with diffusers 0.24's final sigma
    return UniPCMultistepScheduler.from_config(SD21_BASE_SCHEDULER_CONFIG, final_sigmas_type="sigma_min")


def pil(image):
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def img_transform(pil_image):
    """ToTensor + Normalize(0.5, 0.5)."""
    return torch.from_numpy(np.array(pil_image)).permute(2, 0, 1).float().div(255)[None] * 2 - 1


@torch.no_grad()
def reference_stage2(model, vae, dino, source, source_pose, target_pose, latents, steps, guidance, scheduler_name,
                     target_embed=None):
    from transformers import CLIPImageProcessor

    unet = model.unet.unet  # the stock diffusers module inside our wrapper: only its weights are shared
    size = source.shape[-1]
    s_img = pil(source)
    canvas = Image.new("RGB", (2 * size, size))
    canvas.paste(s_img, (0, 0))
    masked = vae.encode(img_transform(canvas)).latent_dist.mode() * 0.18215
    mask = torch.zeros(1, 1, size // 8, 2 * size // 8)
    mask[:, :, :, : size // 8] = 1
    pose_canvas = Image.new("RGB", (2 * size, size))
    pose_canvas.paste(pil(source_pose), (0, 0))
    pose_canvas.paste(pil(target_pose).resize((size, size), Image.BICUBIC), (size, 0))
    pose_cond = model.pose_proj(img_transform(pose_canvas))
    pixels = CLIPImageProcessor()(images=s_img, return_tensors="pt").pixel_values
    tokens = dino(pixel_values=pixels).last_hidden_state
    if target_embed is None:  # simplified: uncond = the projection of zero tokens
        cond, uncond = model.image_proj(tokens), model.image_proj(torch.zeros_like(tokens))
        labels = None
    else:  # full: [projected tokens, target embed]; uncond and its class label literal zeros
        cond = torch.cat([model.image_proj(tokens), target_embed[:, None]], dim=1)
        uncond = torch.zeros_like(cond)
        labels = torch.cat([torch.zeros_like(target_embed), target_embed])
    scheduler = original_scheduler(scheduler_name)
    scheduler.set_timesteps(steps)
    hook = unet.conv_in.register_forward_hook(lambda module, inputs, output: output + pose_cond)
    try:
        for t in scheduler.timesteps:
            x = torch.cat([scheduler.scale_model_input(latents, t), mask, masked], dim=1)
            eps = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond]), class_labels=labels).sample
            eps_u, eps_c = eps.chunk(2)
            latents = scheduler.step(eps_u + guidance * (eps_c - eps_u), t, latents).prev_sample
    finally:
        hook.remove()
    image = (vae.decode(latents / 0.18215).sample / 2 + 0.5).clamp(0, 1)
    return image[..., size:]


def _images(seed, batch):
    return torch.randint(0, 256, (batch, 3, TINY_SIZE, TINY_SIZE), generator=torch.Generator().manual_seed(seed)) / 255


@pytest.mark.parametrize("path", ["simplified_ddim", "full_unipc"])
def test_pipeline_matches_reference(stage2_parts, path):
    simplified, full, vae, dino = stage2_parts
    model, scheduler = (simplified, "ddim") if path == "simplified_ddim" else (full, "unipc")
    source, source_pose, targets = _images(0, 1), _images(1, 1), _images(2, 2)
    # the demo target poses are larger renders, downsized by PIL
    targets = torch.nn.functional.interpolate(targets, scale_factor=1.5, mode="nearest")
    embeds = torch.randn(2, 32, generator=torch.Generator().manual_seed(3)) if model.is_full else None
    settings = InpaintSettings(steps=6, guidance_scale=2.0, scheduler=scheduler, seed=11, size=TINY_SIZE,
                               fit="stretch", legacy_dino_interpolation=False)
    ours = inpaint(model, vae, dino, source, source_pose, targets, settings, target_embeds=embeds)
    worst = 0.0
    for i in range(2):  # the original handles one item per call; item i uses seed + i
        noise = torch.randn(1, 4, TINY_SIZE // 8, TINY_SIZE // 4, generator=torch.Generator("cpu").manual_seed(11 + i))
        ref = reference_stage2(model, vae, dino, source[0], source_pose[0], targets[i], noise, 6, 2.0, scheduler,
                               None if embeds is None else embeds[i:i + 1])
        # targets are 96 px, so the output comes back at 96 px: compare on the model's square
        worst = max(worst, (ours.canvas[i, :, :, TINY_SIZE:] - ref[0]).abs().max().item())
    print(f"parity {path}: max abs {worst:.2e}")
    assert worst <= 1e-4, worst
    assert ours.images.shape == (2, 3, 96, 96)
