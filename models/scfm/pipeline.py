"""Any-size pose transfer with SCFM: check inputs -> fit to the model square -> sample -> restore.

Images are [B,3,H,W] in 0..1 at any size. Poses reach the pipeline as SCFM's 20-channel maps on the model square
([B,20,S,S], drawn by `pose.conditions.scfm_pose_maps`): the caller draws them from OpenPose-18 keypoints
placed on the square by `place_on_square`, with the same fit as the source image (default "stretch", which is
how the original's DeepFashion data was resized). Results are mapped back to the source image's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..batching import chunks
from ..images import SquareFit, from_signed, pil_square, square_fit, to_signed
from . import ops, sampler
from .preview import flow_to_color
from .unet import SCFMUNet

BODY_POINTS = 18
# Activation memory of guided sampling per item at 256 x 256 in fp32, scaled by pixels and dtype size
# (bench/scfm.py on CPU: 0.76 GiB at batch 1, 5.4 GiB at batch 8, over the weights).
ACTIVATION_BYTES_PER_ITEM = 800 * 1024 * 1024


@dataclass(frozen=True)
class PoseInput:
    """OpenPose-18 keypoints (18, 2) in pixels of a canvas of `height` x `width`; -1 marks a missing point."""

    keypoints: np.ndarray
    height: int
    width: int


@dataclass(frozen=True)
class SampleSettings:
    """steps/guidance: the original's 50 DDIM steps at guidance 2. seed: item i uses seed + i (`per_item_seed`),
    or one draw for the whole batch as the original did. fit: how the source reaches the square (the pose maps
    must be placed with the same). chunk_size: items denoised together; results do not depend on it."""

    steps: int = sampler.DEFAULT_STEPS
    guidance: float = sampler.DEFAULT_GUIDANCE
    seed: int = 0
    fit: str = "stretch"
    per_item_seed: bool = True
    chunk_size: int = 4


def place_on_square(poses: Sequence[PoseInput], size: int, fit_mode: str) -> np.ndarray:
    """Poses -> (B, 18, 2) pixels of the model's size x size square, each placed like its canvas; -1 = missing."""
    placed = []
    for pose in poses:
        xy = np.asarray(pose.keypoints, dtype=np.float64).reshape(BODY_POINTS, 2)
        missing = (xy < 0).any(axis=1)
        mapped = square_fit(pose.height, pose.width, size, fit_mode).map_points(xy)
        mapped[missing] = -1.0
        placed.append(mapped)
    return np.stack(placed)


def fit_source(images: torch.Tensor, size: int, fit_mode: str) -> tuple[torch.Tensor, SquareFit]:
    """[B,3,H,W] 0..1 -> ([B,3,S,S] in [-1,1], fit). PIL bicubic like the original's preprocessing."""
    square, fit = pil_square(images, size, fit_mode, fill=1.0)
    return to_signed(square), fit


def _on_image(pose: PoseInput, height: int, width: int) -> PoseInput:
    """A source pose on the source image's canvas: keypoints of a differently sized canvas are rescaled."""
    if (pose.height, pose.width) == (height, width):
        return pose
    xy = np.asarray(pose.keypoints, dtype=np.float64)
    missing = (xy < 0).any(axis=1, keepdims=True)
    return PoseInput(np.where(missing, -1.0, xy * np.array([width / pose.width, height / pose.height])), height, width)


def check_batches(images: torch.Tensor, source_poses: Sequence[PoseInput], target_poses: Sequence[PoseInput]
                  ) -> tuple[torch.Tensor, list[PoseInput], list[PoseInput]]:
    """Broadcast batch-1 inputs; anything else must match. Returns (images, source poses, target poses).

    Source poses are put on their image's canvas (rescaled if they were extracted at another size).
    """
    sizes = {"source image": images.shape[0], "source pose": len(source_poses), "target pose": len(target_poses)}
    batch = max(sizes.values())
    wrong = {name: n for name, n in sizes.items() if n not in (1, batch)}
    if wrong or min(sizes.values()) == 0:
        raise ValueError(f"Batch sizes do not match: {sizes}. Each input needs either 1 item (used for all) or {batch}.")
    images = images.expand(batch, -1, -1, -1) if images.shape[0] == 1 else images
    source_poses = list(source_poses) * batch if len(source_poses) == 1 else list(source_poses)
    source_poses = [_on_image(pose, images.shape[-2], images.shape[-1]) for pose in source_poses]
    target_poses = list(target_poses) * batch if len(target_poses) == 1 else list(target_poses)
    return images, source_poses, target_poses


def _check_maps(images: torch.Tensor, source_maps: torch.Tensor, target_maps: torch.Tensor, size: int) -> None:
    batch = images.shape[0]
    for name, maps in (("source", source_maps), ("target", target_maps)):
        if maps.shape[0] != batch or tuple(maps.shape[-2:]) != (size, size):
            raise ValueError(f"SCFM: {name} pose maps are {tuple(maps.shape)}, expected ({batch}, C, {size}, {size}): "
                             "one map per source image on the model square (see `check_batches`, `place_on_square`)")


def transfer(model: SCFMUNet, images: torch.Tensor, source_maps: torch.Tensor, target_maps: torch.Tensor,
             settings: SampleSettings = SampleSettings(),
             progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Source images [B,3,H,W] 0..1 + pose maps [B,20,S,S] -> the person in the target poses, [B,3,H,W] 0..1.

    Items are denoised `settings.chunk_size` at a time; the noise of the whole batch is drawn first, so results
    do not depend on the chunk size. `progress(step, total)` counts steps over all chunks.
    """
    size = model.config.image_size
    _check_maps(images, source_maps, target_maps, size)
    source, fit = fit_source(images, size, settings.fit)
    noise = sampler.initial_noise(source.shape[0], size, settings.seed, per_item=settings.per_item_seed)
    results = []
    for chunk in chunks(source.shape[0], settings.chunk_size, progress=progress):
        part = chunk.items
        results.append(sampler.sample(model, source[part], source_maps[part], target_maps[part], noise[part],
                                      steps=settings.steps, guidance=settings.guidance, progress=chunk.progress).cpu())
    return fit.restore(torch.cat(results))


@torch.no_grad()
def warp_preview(model: SCFMUNet, images: torch.Tensor, source_maps: torch.Tensor, target_maps: torch.Tensor, *,
                 fit_mode: str = "stretch") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the flow net sees, at the source size: (warped source [B,3,H,W], flow colours [B,3,H,W], occlusion [B,H,W]).

    Uses the finest flow (image/8) scaled to pixels of the full square. Occlusion = 1 - the site mask: 1 where
    the target has no visible source counterpart and the model must invent content (ComfyUI MASK: 1 = regenerate).
    """
    size = model.config.image_size
    _check_maps(images, source_maps, target_maps, size)
    source, fit = fit_source(images, size, fit_mode)
    dtype, device = model.dtype, model.out[2].weight.device
    flows, masks = model.flow_net(*(t.to(device, dtype) for t in (source, source_maps, target_maps)))
    flow, mask = flows[-1].float().cpu(), masks[-1].float().cpu()
    flow = F.interpolate(flow, size=(size, size), mode="bilinear", align_corners=False) * (size / flow.shape[-1])
    mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
    warped = from_signed(ops.block_extractor(source.cpu(), flow, 1))  # bilinear backward warp
    occlusion = fit.restore((1 - mask).expand(-1, 3, -1, -1))[:, 0].clamp(0, 1)
    return fit.restore(warped), fit.restore(flow_to_color(flow)), occlusion


def memory_estimate(settings: SampleSettings, batch: int, dtype: torch.dtype, size: int = 256) -> int:
    """Activation bytes for `load_models`: one chunk of guided sampling (measured per item at 256 x 256 fp32,
    scaled by the square's pixels and the dtype's size)."""
    items = min(batch, max(1, settings.chunk_size))
    scale = (size / 256) ** 2 * torch.finfo(dtype).bits / 32
    return int(items * ACTIVATION_BYTES_PER_ITEM * scale)
