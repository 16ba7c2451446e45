"""PCDMs stage 2: paint the source person in the target pose on the right half of a [source | target] canvas.

check_inputs -> fit every image to the model's square -> encode the source appearance and the source canvas
(once per source) -> pose canvas -> seeded noise -> guided denoising (sampling.py) -> decode -> crop the right
half -> put it back at the target pose's size and aspect. Conventions of the original (PCDMS.md §6, §8) kept:
mask = 1 on the SOURCE half, pose canvas in [-1, 1], uncond tokens = projection of zeros (simplified model) or
literal zeros (full model, whose class label is zero too), the pose residual shared by both guidance halves.
Deliberate deviations: VAE posterior mode instead of a sample, CPU-seeded float32 noise per item (seed + i),
latents kept in float32 between steps, no 8-bit rounding of the output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..batching import chunks
from ..images import SquareFit, pil_square, to_signed
from ..noise import seeded_noise
from ..encoders import encode_dino
from ..vae import decode_latents, encode_latents
from .stages import PcdmStage2
from .sampling import Branch, SamplingSettings, denoise
from .schedulers import make_scheduler

LATENT_FACTOR = 8  # SD VAE and pose_proj both downsample by 8
ASPECT_TOLERANCE = 0.02


@dataclass(frozen=True)
class InpaintSettings(SamplingSettings):
    """Stage 2 with the demo's defaults (see `SamplingSettings`); chunk_size counts target poses."""


@dataclass
class InpaintResult:
    images: torch.Tensor  # (B, 3, H_t, W_t) in 0..1: the target person at the target pose's size
    canvas: torch.Tensor  # (B, 3, size, 2*size) in 0..1: the whole decoded [source | target] canvas
    fit: SquareFit  # how the target poses were placed on the square (`fit.restore(square)` gives `images`)
    source_tokens: torch.Tensor  # (B_s, T, D) DINOv2 tokens of the source square, for stage 3 to reuse

    @property
    def square(self) -> torch.Tensor:
        """(B, 3, size, size): the generated half, on the model's square."""
        return self.canvas[..., self.canvas.shape[-2]:]


def check_inputs(model: PcdmStage2, source: torch.Tensor, source_pose: torch.Tensor, target_pose: torch.Tensor,
                 target_embeds: torch.Tensor | None, settings: InpaintSettings) -> int:
    """Validate batches, sizes and the target embedding; returns the output batch size (= target poses)."""
    batch, n_src = target_pose.shape[0], source.shape[0]
    if n_src not in (1, batch):
        raise ValueError(f"source batch is {n_src} but there are {batch} target poses: give one source image "
                         f"(used for every pose) or one per target pose")
    if source_pose.shape[0] != n_src:
        raise ValueError(f"source pose batch is {source_pose.shape[0]} but the source batch is {n_src}: "
                         "give one source pose per source image")
    src_aspect = source.shape[-1] / source.shape[-2]
    pose_aspect = source_pose.shape[-1] / source_pose.shape[-2]
    if abs(pose_aspect / src_aspect - 1) > ASPECT_TOLERANCE:
        raise ValueError(f"the source pose is {source_pose.shape[-1]}x{source_pose.shape[-2]} but the source image is "
                         f"{source.shape[-1]}x{source.shape[-2]}: the source pose must be drawn on the source image's "
                         "frame (same aspect ratio) so the two line up")
    if settings.size % LATENT_FACTOR:
        raise ValueError(f"size must be a multiple of {LATENT_FACTOR}, got {settings.size}")
    if model.is_full:
        if target_embeds is None:
            raise ValueError("the full PCDMs stage-2 model needs the target embedding (B, 1024) predicted by the "
                             "stage-1 prior (PCDM Prior node); the simplified model (PCDMs_ckpt.pt) does not")
        if target_embeds.dim() != 2 or target_embeds.shape[0] not in (1, batch):
            raise ValueError(f"target embedding must be (1 or {batch}, D), got {tuple(target_embeds.shape)}")
    elif target_embeds is not None:
        raise ValueError("a target embedding was given, but this is the simplified PCDMs model, which takes none; "
                         "load the full stage-2 checkpoint to use stage-1 embeddings")
    return batch


def canvas_mask(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """(1, 1, height, width) latent mask: 1 on the LEFT (source) half, 0 on the half to generate.

    The reverse of SD inpainting, but what PCDMs trained with; the original also swapped height and width
    when building it (harmless for its square halves; built correctly here)."""
    mask = torch.zeros(1, 1, height, width, device=device)
    mask[..., : width // 2] = 1.0
    return mask


def side_by_side(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Two [B,3,S,S] halves -> [B,3,S,2S] canvas."""
    return torch.cat([left, right], dim=-1)


@torch.no_grad()
def encode_source(model: PcdmStage2, vae: torch.nn.Module, dino: torch.nn.Module, source_sq: torch.Tensor,
                  settings: InpaintSettings, dino_tokens: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per source square [B_s,3,S,S] 0..1: (cond tokens (B_s,T,D), uncond tokens (B_s,T,D), masked latents (B_s,4,S/8,S/4)).

    Tokens are projected DINOv2 tokens; the uncond ones are the projection of zero tokens for the simplified
    model (a constant non-zero token) and literal zeros for the full model, as in the respective originals.
    Tokens come in the head's dtype (float32 for the full model, as its original); the UNet casts them.
    The canvas [source | black] goes through the VAE in [-1, 1]. `dino_tokens`: DINOv2 tokens of `source_sq`
    already computed (`encode_dino`)."""
    device, dtype = model.device, model.head_dtype
    if dino_tokens is None:
        dino_tokens = encode_dino(dino, source_sq, settings.legacy_dino_interpolation)
    dino_tokens = dino_tokens.to(device=device, dtype=dtype)
    cond = model.image_proj(dino_tokens)
    uncond = torch.zeros_like(cond) if model.is_full else model.image_proj(torch.zeros_like(dino_tokens))
    canvas = to_signed(side_by_side(source_sq, torch.zeros_like(source_sq)))
    return cond, uncond, encode_latents(vae, canvas).to(device)


@torch.no_grad()
def pose_residual(model: PcdmStage2, source_pose_sq: torch.Tensor, target_pose_sq: torch.Tensor) -> torch.Tensor:
    """[B,3,S,S] pose renders (0..1) -> pose_proj([source pose | target pose] in [-1, 1]) (B, C0, S/8, S/4), in
    the head's dtype (the UNet casts it where it adds it)."""
    canvas = to_signed(side_by_side(source_pose_sq, target_pose_sq))
    return model.pose_proj(canvas.to(device=model.device, dtype=next(model.pose_proj.parameters()).dtype))


def _branches(model: PcdmStage2, cond: torch.Tensor, uncond: torch.Tensor, concat: torch.Tensor, pose: torch.Tensor,
              embeds: torch.Tensor | None) -> tuple[Branch, Branch]:
    cond_kwargs = {"pose_residual": pose}
    uncond_kwargs = {"pose_residual": pose}
    if embeds is not None:
        embeds = embeds.to(device=cond.device, dtype=cond.dtype)
        cond = torch.cat([cond, embeds[:, None]], dim=1)  # the CLIP-H target embed is the last token ...
        uncond = torch.zeros_like(cond)
        cond_kwargs["class_labels"] = embeds  # ... and the class label
        uncond_kwargs["class_labels"] = torch.zeros_like(embeds)
    return (Branch(concat, {"encoder_hidden_states": cond, **cond_kwargs}),
            Branch(concat, {"encoder_hidden_states": uncond, **uncond_kwargs}))


@torch.no_grad()
def inpaint(model: PcdmStage2, vae: torch.nn.Module, dino: torch.nn.Module, source: torch.Tensor,
            source_pose: torch.Tensor, target_pose: torch.Tensor, settings: InpaintSettings,
            target_embeds: torch.Tensor | None = None,
            progress: Callable[[int, int], None] | None = None) -> InpaintResult:
    """Generate the source person in each target pose.

    source [B_s,3,H,W] 0..1 (B_s = 1 or B); source_pose [B_s,3,H',W'] 0..1, a render on the source's frame;
    target_pose [B,3,H_t,W_t] 0..1 renders; target_embeds (1 or B, 1024) stage-1 embeddings, full model only.
    Item i uses noise seed `settings.seed + i`, whatever the batch or chunk size.
    """
    batch = check_inputs(model, source, source_pose, target_pose, target_embeds, settings)
    source_sq, _ = pil_square(source, settings.size, settings.fit)
    source_pose_sq, _ = pil_square(source_pose, settings.size, settings.fit)
    target_sq, target_fit = pil_square(target_pose, settings.size, settings.fit)
    tokens = encode_dino(dino, source_sq, settings.legacy_dino_interpolation)
    cond_all, uncond_all, masked_all = encode_source(model, vae, dino, source_sq, settings, tokens)
    latent_h, latent_w = settings.size // LATENT_FACTOR, 2 * settings.size // LATENT_FACTOR
    mask = canvas_mask(latent_h, latent_w, model.device)

    outputs = []
    for chunk in chunks(batch, settings.chunk_size, settings.seed, progress):
        concat = torch.cat([mask.expand(len(chunk), -1, -1, -1), chunk.pick(masked_all)], dim=1)
        pose = pose_residual(model, chunk.pick(source_pose_sq), target_sq[chunk.items])
        cond, uncond = _branches(model, chunk.pick(cond_all), chunk.pick(uncond_all), concat, pose,
                                 chunk.pick(target_embeds))
        scheduler = make_scheduler(settings.scheduler)
        scheduler.set_timesteps(settings.steps, device=model.device)
        noise = seeded_noise((len(chunk), 4, latent_h, latent_w), chunk.seed, device=model.device)
        latents = denoise(model.unet, noise * scheduler.init_noise_sigma, scheduler, cond, uncond,
                          guidance_scale=settings.guidance_scale, guidance_rescale=settings.guidance_rescale,
                          sequential_guidance=settings.sequential_guidance, model_dtype=model.dtype,
                          progress=chunk.progress)
        # one item at a time: decoding a 1024x512 canvas is the largest activation of the run
        outputs += [decode_latents(vae, item[None]).to(source.device) for item in latents]
    canvas = torch.cat(outputs)
    images = target_fit.restore(canvas[..., settings.size:])
    return InpaintResult(images=images, canvas=canvas, fit=target_fit, source_tokens=tokens)


def memory_estimate(settings: InpaintSettings, batch: int, dtype: torch.dtype) -> int:
    """Rough activation bytes for `load_models`: one guided chunk through the UNet plus one canvas decode.

    Heuristic from the SD2.1-base architecture (about 30 live 320-channel maps per latent cell and item, and
    about 6 live 128-channel maps per canvas pixel in the VAE decoder), not a measurement."""
    element = torch.finfo(dtype).bits // 8
    cells = (settings.size // LATENT_FACTOR) * (2 * settings.size // LATENT_FACTOR)
    items = 2 * min(batch, max(1, settings.chunk_size))
    unet = items * cells * 320 * 30 * element
    decode = 2 * settings.size * settings.size * 128 * 6 * element
    return max(unet, decode)
