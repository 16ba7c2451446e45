"""Any-size pose transfer with SCFM: check inputs -> fit to the model square -> pose maps -> sample -> restore.

Images are [B,3,H,W] in 0..1 at any size; keypoints are OpenPose-18 (x, y) pixels of their own canvas with
-1 for missing points. The model works at `config.image_size` (256): the source image and both poses are
placed on that square with the same fit (default "stretch", which is how the original's DeepFashion data was
resized), and results are mapped back to the source image's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..images import SquareFit, from_signed, pil_resize, square_fit, to_signed
from . import ops, sampler
from .preview import flow_to_color
from .unet import SCFMUNet

BODY_POINTS = 18


@dataclass(frozen=True)
class PoseInput:
    """OpenPose-18 keypoints (18, 2) in pixels of a canvas of `height` x `width`; -1 marks a missing point."""

    keypoints: np.ndarray
    height: int
    width: int

    @classmethod
    def from_frame(cls, frame, what: str = "pose") -> "PoseInput":
        """The first person of a `pose.keypoints.PoseFrame` (body (18,3) x, y, score; score 0 = missing)."""
        if not frame.people:
            raise ValueError(f"{what}: no person was detected in this frame; SCFM needs one person per image "
                             "(check the pose extraction, or pick a frame with a visible person).")
        body = np.asarray(frame.people[0].body, dtype=np.float64)
        return cls(np.where(body[:, 2:3] > 0, body[:, :2], -1.0), frame.height, frame.width)


def pose_maps(poses: Sequence[PoseInput], size: int, fit_mode: str) -> torch.Tensor:
    """Poses -> [B,20,size,size] float32 SCFM pose maps in [0,1], each placed on the square like its canvas."""
    from ...pose.render import scfm_pose_map  # the pose toolkit's renderer (SCFM.md §4)

    maps = []
    for pose in poses:
        xy = np.asarray(pose.keypoints, dtype=np.float64).reshape(BODY_POINTS, 2)
        missing = (xy < 0).any(axis=1)
        mapped = square_fit(pose.height, pose.width, size, fit_mode).map_points(xy)
        mapped[missing] = -1.0
        maps.append(torch.from_numpy(np.ascontiguousarray(scfm_pose_map(mapped, size=size))))
    return torch.stack(maps)


def fit_source(images: torch.Tensor, size: int, fit_mode: str) -> tuple[torch.Tensor, SquareFit]:
    """[B,3,H,W] 0..1 -> ([B,3,S,S] in [-1,1], fit). PIL bicubic like the original's preprocessing."""
    fit = square_fit(images.shape[-2], images.shape[-1], size, fit_mode)
    resize = lambda x, hw: pil_resize(x, hw, Image.BICUBIC)  # noqa: E731 - a resize callable for SquareFit
    return to_signed(fit.apply(images, fill=1.0, resize=resize)), fit


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


def transfer(model: SCFMUNet, images: torch.Tensor, source_poses: Sequence[PoseInput], target_poses: Sequence[PoseInput],
             *, seed: int, steps: int = sampler.DEFAULT_STEPS, guidance: float = sampler.DEFAULT_GUIDANCE,
             fit_mode: str = "stretch", per_item_seed: bool = True, batch_size: int = 4,
             progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Source images [B,3,H,W] 0..1 + poses -> the person in the target poses, [B,3,H,W] 0..1 at the source size.

    Items are denoised `batch_size` at a time; the noise of the whole batch is drawn first, so results do not
    depend on `batch_size`. `progress(step, total)` counts steps over all chunks.
    """
    images, source_poses, target_poses = check_batches(images, source_poses, target_poses)
    size = model.config.image_size
    source, fit = fit_source(images, size, fit_mode)
    noise = sampler.initial_noise(source.shape[0], size, seed, per_item=per_item_seed)
    source_maps, target_maps = pose_maps(source_poses, size, fit_mode), pose_maps(target_poses, size, fit_mode)
    starts = range(0, source.shape[0], max(1, batch_size))
    total = len(starts) * steps
    results = []
    for chunk, start in enumerate(starts):
        part = slice(start, start + max(1, batch_size))
        chunk_progress = None if progress is None else (lambda step, _, c=chunk: progress(c * steps + step, total))
        results.append(sampler.sample(model, source[part], source_maps[part], target_maps[part], noise[part],
                                      steps=steps, guidance=guidance, progress=chunk_progress).cpu())
    return fit.restore(torch.cat(results))


@torch.no_grad()
def warp_preview(model: SCFMUNet, images: torch.Tensor, source_poses: Sequence[PoseInput],
                 target_poses: Sequence[PoseInput], *, fit_mode: str = "stretch"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the flow net sees, at the source size: (warped source [B,3,H,W], flow colours [B,3,H,W], occlusion [B,H,W]).

    Uses the finest flow (image/8) scaled to pixels of the full square. Occlusion = 1 - the site mask: 1 where
    the target has no visible source counterpart and the model must invent content (ComfyUI MASK: 1 = regenerate).
    """
    images, source_poses, target_poses = check_batches(images, source_poses, target_poses)
    size = model.config.image_size
    source, fit = fit_source(images, size, fit_mode)
    dtype, device = model.dtype, model.out[2].weight.device
    flows, masks = model.flow_net(source.to(device, dtype), pose_maps(source_poses, size, fit_mode).to(device, dtype),
                                  pose_maps(target_poses, size, fit_mode).to(device, dtype))
    flow, mask = flows[-1].float().cpu(), masks[-1].float().cpu()
    flow = F.interpolate(flow, size=(size, size), mode="bilinear", align_corners=False) * (size / flow.shape[-1])
    mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)
    warped = from_signed(ops.block_extractor(source.cpu(), flow, 1))  # bilinear backward warp
    occlusion = fit.restore((1 - mask).expand(-1, 3, -1, -1))[:, 0].clamp(0, 1)
    return fit.restore(warped), fit.restore(flow_to_color(flow)), occlusion
