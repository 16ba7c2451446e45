"""SCFM sampling: the original's guided DDIM (`diffusion.ddim_steps`, SCFM.md §5).

50 steps over t = 980, 960, ..., 0, eta 0, no clipping of x0, the update in float64, classifier-free guidance
with w = 2 over all 6 output channels where the unguided pass turns every flow site off. The guided and
unguided passes run as one batch; the flow net and source encoder run once per sample.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..noise import seeded_noise
from .unet import SCFMUNet

NUM_TRAIN_TIMESTEPS = 1000  # config/diffusion.conf
BETA_START, BETA_END = 1e-4, 2e-2  # linear schedule, float64
DEFAULT_STEPS = 50  # inference.py
DEFAULT_GUIDANCE = 2.0  # hard-coded cond_scale of ddim_steps
IMAGE_CHANNELS = 3


def betas() -> torch.Tensor:
    """[1000] float64 linear betas."""
    return torch.linspace(BETA_START, BETA_END, NUM_TRAIN_TIMESTEPS, dtype=torch.float64)


def alpha_bar(timesteps: torch.Tensor) -> torch.Tensor:
    """Cumulative alpha at integer `timesteps` (float64), with alpha_bar(-1) = 1 (compute_alpha of the original)."""
    padded = torch.cat([torch.zeros(1, dtype=torch.float64), betas()])
    return (1 - padded).cumprod(0)[timesteps.long().cpu() + 1]


def ddim_timesteps(steps: int) -> list[int]:
    """Descending model timesteps with stride 1000 // steps: 980, 960, ..., 0 for 50 (the original's sequence).

    Exactly `steps` of them; the original's range(0, 1000, 1000 // steps) gives one more when steps does not
    divide 1000 (e.g. 4 for 3) and is the same otherwise.
    """
    if not 1 <= steps <= NUM_TRAIN_TIMESTEPS:
        raise ValueError(f"steps must be between 1 and {NUM_TRAIN_TIMESTEPS}, got {steps}")
    stride = NUM_TRAIN_TIMESTEPS // steps
    return list(range(0, stride * steps, stride))[::-1]


def initial_noise(batch: int, size: int, seed: int, *, per_item: bool = True) -> torch.Tensor:
    """[B,3,size,size] float32 CPU noise.

    per_item=True (the pack's default): item i is drawn from seed + i, so an image does not change with the
    batch around it. per_item=False draws the whole batch from one generator seeded `seed`, which equals the
    original's `torch.manual_seed(seed); torch.randn(B, 3, 256, 256)`.
    """
    return seeded_noise((batch, IMAGE_CHANNELS, size, size), seed, per_item=per_item)


@torch.no_grad()
def sample(model: SCFMUNet, source: torch.Tensor, source_pose: torch.Tensor, target_pose: torch.Tensor,
           noise: torch.Tensor, *, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
           progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Generate the source person in the target pose.

    source [B,3,S,S] in [-1,1]; poses [B,P,S,S] in [0,1]; noise [B,3,S,S] (any device/dtype; moved to the
    model's device) -> [B,3,S,S] in [0,1] (float32). `progress(step, steps)` is called after every step and
    may raise to interrupt. guidance = 1 skips the unguided pass.
    """
    device, dtype = model.out[2].weight.device, model.dtype
    batch = source.shape[0]
    if not source.shape[0] == source_pose.shape[0] == target_pose.shape[0] == noise.shape[0]:
        raise ValueError(f"source, poses and noise must share a batch size, got {source.shape[0]}, "
                         f"{source_pose.shape[0]}, {target_pose.shape[0]}, {noise.shape[0]}")
    source, source_pose, target_pose = (t.to(device=device, dtype=dtype) for t in (source, source_pose, target_pose))
    condition = model.prepare_condition(source, source_pose, target_pose)
    guided = guidance != 1.0
    pose = torch.cat([target_pose, target_pose]) if guided else target_pose
    x = noise.to(device=device, dtype=torch.float64)
    schedule = ddim_timesteps(steps)
    for index, t in enumerate(schedule):
        t_next = schedule[index + 1] if index + 1 < len(schedule) else -1
        a_t, a_next = (alpha_bar(torch.tensor([v])).item() for v in (t, t_next))
        x_in = torch.cat([x, x]) if guided else x
        t_in = torch.full((x_in.shape[0],), float(t), device=device)
        out = model(torch.cat([x_in.to(dtype), pose], dim=1), t_in, condition)
        if guided:
            # Mixed in float32 like the original (its model output is float32).
            cond, null = out[:batch].float(), out[batch:].float()
            out = null + (cond - null) * guidance
        eps = out[:, :IMAGE_CHANNELS].double()
        x0 = (x - eps * (1 - a_t) ** 0.5) / a_t ** 0.5
        x = a_next ** 0.5 * x0 + (1 - a_next) ** 0.5 * eps
        if progress is not None:
            progress(index + 1, len(schedule))
    return ((x.clamp(-1, 1) + 1) / 2).float()
