"""PCDMs stage 1: the pose-conditioned prior predicts the target's CLIP ViT-H/14 image embedding.

Facts from PCDMS.md §3.3, §6.2, §7: the prior (`prior_transformer.py`) was trained with x0 ("sample") prediction on
embeddings normalised with `CLIP_EMBED_MEAN`/`CLIP_EMBED_STD`, and is sampled with UnCLIP's DDPM variant.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from ..noise import seeded_noise
from .prior_transformer import PosePriorTransformer

if TYPE_CHECKING:
    from diffusers.schedulers import UnCLIPScheduler

CLIP_EMBED_MEAN = -0.016  # PCDMs stage-1 normalisation of the CLIP-H embedding (Stage1_PriorTransformer.clip_mean)
CLIP_EMBED_STD = 0.415  # PCDMs stage-1 normalisation (Stage1_PriorTransformer.clip_std)
UNCLIP_CLIP_SAMPLE_RANGE = 10.0  # kandinsky-2-2-prior scheduler config (PCDMS.md §7)

Progress = Callable[[int, int], None]


def make_prior_scheduler() -> UnCLIPScheduler:
    """The UnCLIP scheduler shipped with kandinsky-2-2-prior, as PCDMs' stage-1 pipeline uses it (PCDMS.md §7)."""
    from diffusers.schedulers import UnCLIPScheduler

    return UnCLIPScheduler(num_train_timesteps=1000, variance_type="fixed_small_log", clip_sample=True,
                           clip_sample_range=UNCLIP_CLIP_SAMPLE_RANGE, prediction_type="sample",
                           beta_schedule="squaredcos_cap_v2")


def _batch_size(**tensors: torch.Tensor) -> int:
    sizes = {name: t.shape[0] for name, t in tensors.items()}
    batch = max(sizes.values())
    wrong = {name: n for name, n in sizes.items() if n not in (1, batch)}
    if wrong:
        raise ValueError(f"PCDMs prior: batch sizes {sizes} do not match; each input needs {batch} items or 1 "
                         f"(broadcast), but {wrong} has neither.")
    return batch


def _noise_streams(seed: int, batch: int, draw_shape: tuple[int, ...]) -> list[torch.Generator]:
    """CPU generators that continue the per-item streams `seeded_noise` starts (item i: seed + i).

    Each item's randomness is one stream: its initial embedding first, then every step's variance noise, so an
    item does not change when the batch around it does.
    """
    streams = [torch.Generator("cpu").manual_seed(seed + i) for i in range(batch)]
    for stream in streams:
        torch.randn(draw_shape, generator=stream, dtype=torch.float32)  # skip the initial draw
    return streams


@torch.no_grad()
def sample_prior(model: PosePriorTransformer, source_embedding: torch.Tensor, source_pose: torch.Tensor,
                 target_pose: torch.Tensor, *, steps: int = 20, guidance: float = 0.0, seed: int = 0,
                 progress: Progress | None = None) -> torch.Tensor:
    """Predict target CLIP-H embeddings: (B,E) raw source embeds, (B,36) poses -> (B,E) float32 raw embeds.

    Batches broadcast from 1. `guidance` <= 1 runs the conditional model only (the original's default 0);
    above 1 it applies classifier-free guidance with a zero source embedding as the unconditional input and the
    same poses in both halves (our extension: the original crashes there, PCDMS.md §11).
    """
    if steps < 2:
        raise ValueError(f"PCDMs prior: steps must be at least 2 (UnCLIP spacing divides by steps - 1), got {steps}")
    batch = _batch_size(source_embedding=source_embedding, source_pose=source_pose, target_pose=target_pose)
    device = model.proj_in.weight.device
    embed_dim = model.config.embedding_dim

    def batched(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], -1).to(device, torch.float32).expand(batch, -1)

    source_embedding, source_pose, target_pose = map(batched, (source_embedding, source_pose, target_pose))
    use_cfg = guidance > 1.0
    if use_cfg:
        source_embedding = torch.cat([torch.zeros_like(source_embedding), source_embedding])
        source_pose, target_pose = source_pose.repeat(2, 1), target_pose.repeat(2, 1)

    scheduler = make_prior_scheduler()
    scheduler.set_timesteps(steps, device=device)
    latents = seeded_noise((batch, embed_dim), seed, device=device) * scheduler.init_noise_sigma
    streams = _noise_streams(seed, batch, (embed_dim,))
    timesteps = scheduler.timesteps.tolist()
    for i, t in enumerate(timesteps):
        model_input = latents.repeat(2, 1) if use_cfg else latents
        predicted = model(model_input, t, source_embedding, source_pose, target_pose).float()
        if use_cfg:
            uncond, cond = predicted.chunk(2)
            predicted = uncond + guidance * (cond - uncond)
        prev = timesteps[i + 1] if i + 1 < len(timesteps) else None
        latents = scheduler.step(predicted, t, latents, prev_timestep=prev, generator=streams).prev_sample
        if progress is not None:
            progress(i + 1, steps)
    return latents * CLIP_EMBED_STD + CLIP_EMBED_MEAN


# The prior's own activations are a few tokens per item (six, plus the guidance copy); the CLIP ViT-H pass over one
# 224 px source per item is the larger part, and both stay far below this flat allowance.
PRIOR_ACTIVATION_BYTES = 64 * 2**20


def memory_estimate(batch: int, dtype: torch.dtype) -> int:
    """Activation bytes for `load_models` (prior + CLIP vision): a flat allowance, not a measurement."""
    return PRIOR_ACTIVATION_BYTES
