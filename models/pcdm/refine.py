"""PCDMs stage 3: refine a coarse stage-2 result with the source's DINOv2 appearance tokens (PCDMS.md §3.5, §6.4).

An SD2.1-base UNet with 8 input channels (noisy latents + VAE latents of the coarse image) cross-attends to
`image_proj_model_p(dino(source))` (257 tokens). Classifier-free guidance uses literal zeros for the tokens AND
for the coarse latents (the original's unconditional branch), batched correctly for any number of images
(the original crashes there, PCDMS.md §11).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..batching import chunks
from ..encoders import encode_dino
from ..images import SquareFit, pil_square, to_signed
from ..noise import seeded_noise
from ..vae import decode_latents, encode_latents
from .sampling import Branch, SamplingSettings, denoise
from .schedulers import make_scheduler
from .stages import PcdmRefiner

Progress = Callable[[int, int], None]
# The stage-3 batch-test script passes guidance_rescale = guidance_scale = 2.0 (PCDMS.md §11), an extrapolating
# rescale; 0 (plain CFG) is the suggested default, this preset reproduces the paper's numbers.
PAPER_GUIDANCE_RESCALE = 2.0


class _LateStart:
    """A scheduler seen from step `start` on (img2img strength): the loop gets the remaining timesteps while
    the wrapped multistep scheduler keeps its full table, so its order/final-step logic is unchanged."""

    def __init__(self, scheduler: Any, start: int):
        self._scheduler = scheduler
        self.timesteps = scheduler.timesteps[start:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)

    def scale_model_input(self, sample: torch.Tensor, timestep: Any) -> torch.Tensor:
        return self._scheduler.scale_model_input(sample, timestep)

    def step(self, *args: Any, **kwargs: Any) -> Any:
        return self._scheduler.step(*args, **kwargs)

    def add_noise(self, *args: Any) -> torch.Tensor:
        return self._scheduler.add_noise(*args)


@dataclass(frozen=True)
class RefineSettings(SamplingSettings):
    """Stage 3: the paper's UniPC 20 at guidance 2.0; `guidance_rescale` 0 is plain CFG (PAPER_GUIDANCE_RESCALE
    mirrors the batch-test script). strength 1 (the original) starts from pure noise with the coarse latents only
    as a condition; below 1 it starts from the coarse latents noised to that level and skips the first steps
    (img2img). Use stage 2's size and fit so a coarse result round-trips; chunk_size counts coarse images."""

    steps: int = 20
    scheduler: str = "unipc"
    strength: float = 1.0


def _first_step(steps: int, strength: float) -> int:
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"PCDMs refine: strength must be in (0, 1], got {strength}")
    return steps - max(1, min(steps, int(steps * strength)))


@torch.no_grad()
def refine(model: PcdmRefiner, vae: nn.Module, dino: nn.Module, coarse: torch.Tensor, source: torch.Tensor,
           settings: RefineSettings = RefineSettings(), progress: Progress | None = None, *,
           coarse_fit: SquareFit | None = None, source_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Refine coarse images [B,3,H,W] 0..1 given source images [1 or B,3,H',W'] 0..1 -> [B,3,H,W] 0..1.

    Initial noise: item i seeded `seed + i`; the coarse image is encoded by the VAE posterior mode (the
    original samples it with its generator). Straight from stage 2 (`InpaintResult`): `coarse` may be the
    model square itself with its `coarse_fit` (no round trip through the target size), and `source_tokens`
    the DINOv2 tokens stage 2 computed for the same source square.
    """
    batch = coarse.shape[0]
    if source.shape[0] not in (1, batch):
        raise ValueError(f"PCDMs refine: source has {source.shape[0]} images but the coarse batch has {batch}; "
                         "give one source image (used for all) or one per coarse image.")
    start = _first_step(settings.steps, settings.strength)
    device, dtype = model.device, model.dtype

    # Encode conditions, once per source image.
    if source_tokens is None:
        source_sq, _ = pil_square(source, settings.size, settings.fit)
        source_tokens = encode_dino(dino, source_sq, settings.legacy_dino_interpolation)
    features = model.image_proj(source_tokens.to(device, model.head_dtype)).float()
    if coarse_fit is None:
        coarse_sq, coarse_fit = pil_square(coarse, settings.size, settings.fit)
    elif tuple(coarse.shape[-2:]) != (settings.size, settings.size):
        raise ValueError(f"PCDMs refine: a coarse square with its fit must be {settings.size} x {settings.size}, "
                         f"got {tuple(coarse.shape[-2:])}")
    else:
        coarse_sq = coarse
    coarse_all = encode_latents(vae, to_signed(coarse_sq)).to(device)

    squares = []
    for chunk in chunks(batch, settings.chunk_size, settings.seed, progress):
        coarse_latents, appearance = coarse_all[chunk.items], chunk.pick(features)
        cond = Branch(concat=coarse_latents, kwargs={"encoder_hidden_states": appearance})
        uncond = Branch(concat=torch.zeros_like(coarse_latents),
                        kwargs={"encoder_hidden_states": torch.zeros_like(appearance)})

        # Prepare latents.
        scheduler = make_scheduler(settings.scheduler)
        scheduler.set_timesteps(settings.steps, device=device)
        noise = seeded_noise(tuple(coarse_latents.shape), chunk.seed, device=device)
        if start > 0:
            scheduler = _LateStart(scheduler, start)
            latents = scheduler.add_noise(coarse_latents, noise, scheduler.timesteps[:1])
        else:
            latents = noise * scheduler.init_noise_sigma
        latents = denoise(model.unet, latents, scheduler, cond, uncond, guidance_scale=settings.guidance_scale,
                          guidance_rescale=settings.guidance_rescale,
                          sequential_guidance=settings.sequential_guidance, model_dtype=dtype, progress=chunk.progress)
        squares += [decode_latents(vae, item[None]).to(coarse.device) for item in latents]
    return coarse_fit.restore(torch.cat(squares)).to(coarse.device)


def memory_estimate(settings: RefineSettings, batch: int, dtype: torch.dtype) -> int:
    """Rough activation bytes for `load_models`: the guided batch through the UNet, or one decode if larger.

    Same SD2.1-base heuristic as stage 2 (about 30 live 320-channel maps per latent cell and item; about 6 live
    128-channel maps per pixel in the VAE decoder) on the square refine canvas; not a measurement."""
    element = torch.finfo(dtype).bits // 8
    cells = (settings.size // 8) ** 2
    items = min(batch, max(1, settings.chunk_size)) * (1 if settings.sequential_guidance else 2)
    return max(items * cells * 320 * 30 * element, settings.size * settings.size * 128 * 6 * element)
