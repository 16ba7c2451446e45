"""The one guided denoising loop of the PCDMs UNets (stage 2 inpaint and stage 3 refine)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

ModelFn = Callable[..., torch.Tensor]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SamplingSettings:
    """What the two UNet stages sample with; `InpaintSettings` and `RefineSettings` add their own defaults.

    steps/guidance_scale/scheduler: the demo's ddim 50 at 2.0 (the paper: unipc 20 at 2.0). seed: image i of a
    batch uses seed + i. size: the model's square side (512 for the released models; 256 for the 256 ones).
    fit: how non-square images reach the square (`pad`, `crop`, or `stretch` = the original's plain resize).
    guidance_rescale: diffusers' rescale of the guided prediction, 0 = plain classifier-free guidance.
    sequential_guidance: the two guidance halves one after the other (half the activation memory, same numbers).
    chunk_size: images denoised together (memory vs speed); results do not depend on it.
    legacy_dino_interpolation: the transformers-4.32 DINOv2 pos-emb interpolation the models were trained with.
    """

    steps: int = 50
    guidance_scale: float = 2.0
    scheduler: str = "ddim"
    seed: int = 0
    size: int = 512
    fit: str = "pad"
    guidance_rescale: float = 0.0
    sequential_guidance: bool = False
    chunk_size: int = 4
    legacy_dino_interpolation: bool = True


@dataclass
class Branch:
    """What the UNet receives in one guidance half, besides the noisy latents.

    concat: channels appended after the (scheduler-scaled) latents, e.g. mask + masked latents (B, 5, h, w).
    kwargs: keyword tensors of the model call (encoder_hidden_states, pose_residual, class_labels), batch B.
    """

    concat: torch.Tensor | None = None
    kwargs: dict[str, torch.Tensor] = field(default_factory=dict)

    @staticmethod
    def stack(first: "Branch", second: "Branch") -> "Branch":
        """Both halves as one batch (first, then second), as diffusers orders [uncond, cond]."""
        concat = None if first.concat is None else torch.cat([first.concat, second.concat])
        return Branch(concat, {k: torch.cat([v, second.kwargs[k]]) for k, v in first.kwargs.items()})


def rescale_noise_cfg(guided: torch.Tensor, cond: torch.Tensor, guidance_rescale: float) -> torch.Tensor:
    """diffusers' `rescale_noise_cfg` (Lin et al. 2023 §3.4): match the guided prediction's std to the conditional one's.

    guidance_rescale 0 keeps `guided`; 1 fully rescales; > 1 extrapolates (PCDMs' stage-3 script passes 2.0).
    """
    try:  # diffusers >= 0.35 keeps it beside its guiders, a light import
        from diffusers.guiders import guider_utils as home
    except ImportError:
        from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion as home
    return home.rescale_noise_cfg(guided, cond, guidance_rescale)


def _model_input(latents: torch.Tensor, branch: Branch, dtype: torch.dtype) -> torch.Tensor:
    x = latents if branch.concat is None else torch.cat([latents, branch.concat], dim=1)
    return x.to(dtype)


def denoise(model: ModelFn, latents: torch.Tensor, scheduler: Any, cond: Branch, uncond: Branch | None = None, *,
            guidance_scale: float = 1.0, guidance_rescale: float = 0.0, sequential_guidance: bool = False,
            model_dtype: torch.dtype | None = None, progress: Progress | None = None) -> torch.Tensor:
    """Run `scheduler.timesteps` (set beforehand) from `latents` (B, 4, h, w), already scaled by init_noise_sigma.

    model(sample, t, **kwargs) -> noise (epsilon). Guidance runs when guidance_scale > 1 and `uncond` is given:
    eps = u + w (c - u), both halves in one batch (faster) or one after the other (`sequential_guidance`,
    half the activation memory; same numbers). The scheduler scales only the latents, not the concatenated
    channels: identical to the originals for DDIM/UniPC (identity scaling), and for Euler/DPM++ the mask and
    masked latents stay as they were trained. `progress(step, total)` runs after every step and may raise
    to interrupt. Latents stay float32 between steps; the model runs in `model_dtype`.
    Returns the final latents (B, 4, h, w) float32.
    """
    guided = uncond is not None and guidance_scale > 1.0
    both = Branch.stack(uncond, cond) if guided and not sequential_guidance else None
    dtype = model_dtype or latents.dtype
    latents = latents.float()
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        scaled = scheduler.scale_model_input(latents, t)
        if both is not None:
            x = _model_input(torch.cat([scaled, scaled]), both, dtype)
            eps_u, eps_c = model(x, t, **both.kwargs).float().chunk(2)
        elif guided:
            eps_u = model(_model_input(scaled, uncond, dtype), t, **uncond.kwargs).float()
            eps_c = model(_model_input(scaled, cond, dtype), t, **cond.kwargs).float()
        else:
            eps_c = model(_model_input(scaled, cond, dtype), t, **cond.kwargs).float()
        if guided:
            eps = eps_u + guidance_scale * (eps_c - eps_u)
            if guidance_rescale > 0:
                eps = rescale_noise_cfg(eps, eps_c, guidance_rescale)
        else:
            eps = eps_c
        latents = scheduler.step(eps, t, latents, return_dict=False)[0]
        if progress is not None:
            progress(i + 1, len(timesteps))
    return latents
