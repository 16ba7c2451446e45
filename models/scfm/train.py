"""Train or fine-tune SCFM from a folder of photos with OpenPose keypoints (the only way to get weights).

Data layout: one sub-folder per person (or outfit); each image `name.png|jpg|jpeg|webp` has its keypoints in
`name.json` beside it (OpenPose JSON / one POSE_KEYPOINT frame, e.g. written by the pack's `pose` command).
Every ordered pair of images inside a sub-folder is a training pair, used in both directions as the original.

Per step (train.py / diffusion.py of the original): t ~ U{0..999}; target -> x_t; 10 % of the items get a
zeroed source image for the encoder while the flow net still sees the real one (the original's image
dropout); loss = MSE(eps) + VB (losses.py); Adam lr 2e-5 with linear warm-up, gradient norm clipped to 1,
parameter EMA 0.9999 (a plain copy during warm-up). Checkpoints hold {"ema", "model", "optimizer", "step",
"config"} in our canonical key layout, readable by `load_scfm`, and are written atomically; training
resumes from the output file when it exists.
"""
from __future__ import annotations

import copy
import logging
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..checkpoints import CheckpointError, Kind, read_checkpoint
from .checkpoint import build_scfm
from .config import SCFMConfig
from .losses import DiffusionTerms, diffusion_loss
from .pipeline import PoseInput, fit_source, pose_maps
from .sampler import NUM_TRAIN_TIMESTEPS
from .unet import SCFMUNet, SourceCondition

logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class TrainSettings:
    steps: int = 1000
    batch_pairs: int = 4  # pairs per step; each is used in both directions, so the model sees 2x items
    lr: float = 2e-5
    warmup: int = 5000
    ema_decay: float = 0.9999
    image_dropout: float = 0.1
    grad_clip: float = 1.0
    save_every: int = 500
    seed: int = 0
    fit_mode: str = "stretch"


def find_pairs(data_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Ordered (source, target) image pairs of the same person; raises when there is nothing to train on."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder not found: {root}")
    pairs, missing = [], []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in person.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        missing += [str(p) for p in images if not p.with_suffix(".json").is_file()]
        images = [p for p in images if p.with_suffix(".json").is_file()]
        pairs += [(a, b) for a in images for b in images if a != b]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images have no keypoints JSON beside them (same name, .json), e.g. "
                                f"{missing[0]}. Extract them with the pack's `pose` command first.")
    if not pairs:
        raise ValueError(f"no training pairs in {root}: put at least two images (+ .json keypoints) of the same person "
                         "in each sub-folder.")
    return pairs


def _load_example(path: Path) -> tuple[torch.Tensor, PoseInput]:
    from ...pose.formats import load_openpose_json  # the pose toolkit's reader

    image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0).movedim(-1, 0)
    frames = load_openpose_json(path.with_suffix(".json"))
    return image[None], PoseInput.from_frame(frames[0], str(path.with_suffix(".json")))


def _batch(pairs: list[tuple[Path, Path]], size: int, fit_mode: str):
    """Both directions of each pair: (source [-1,1], source pose, target pose, target [-1,1]) at `size`."""
    sources, source_poses, targets, target_poses = [], [], [], []
    for first, second in pairs:
        (img_a, pose_a), (img_b, pose_b) = _load_example(first), _load_example(second)
        for (src, src_pose), (tgt, tgt_pose) in (((img_a, pose_a), (img_b, pose_b)), ((img_b, pose_b), (img_a, pose_a))):
            sources.append(fit_source(src, size, fit_mode)[0])
            targets.append(fit_source(tgt, size, fit_mode)[0])
            source_poses.append(src_pose)
            target_poses.append(tgt_pose)
    return (torch.cat(sources), pose_maps(source_poses, size, fit_mode), pose_maps(target_poses, size, fit_mode),
            torch.cat(targets))


def training_step(model: SCFMUNet, terms: DiffusionTerms, source: torch.Tensor, source_pose: torch.Tensor,
                  target_pose: torch.Tensor, target: torch.Tensor, generator: torch.Generator,
                  image_dropout: float) -> dict[str, torch.Tensor]:
    """One forward of the original objective; returns batch-mean "loss", "mse", "vb".

    source/target [B,3,S,S] in [-1,1]; poses [B,P,S,S] in [0,1]; `generator` (CPU) draws t, noise and dropout.
    """
    batch = target.shape[0]
    t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (batch,), generator=generator)
    noise = torch.randn(target.shape, generator=generator).to(target)
    keep = (torch.rand(batch, generator=generator) >= image_dropout).to(source).view(-1, 1, 1, 1)
    flows, masks = model.flow_net(source, source_pose, target_pose)
    levels = (5, 4, 3)
    condition = SourceCondition(model.encoder(source * keep), dict(zip(levels, flows)), dict(zip(levels, masks)))
    x_t = terms.q_sample(target, t, noise)
    output = model(torch.cat([x_t, target_pose], 1), t.to(target.device).float(), condition)
    return {k: v.mean() for k, v in diffusion_loss(terms, output.float(), target, x_t, t.to(target.device), noise).items()}


def _save(path: Path, model: SCFMUNet, ema: SCFMUNet, optimizer: torch.optim.Optimizer, step: int) -> None:
    payload = {"ema": ema.state_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "step": torch.tensor(step), "config": {k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in asdict(model.config).items()}}
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)  # a crash mid-write never replaces the previous checkpoint


def _initial_model(out: Path, init: str | None, config: SCFMConfig | None):
    """(model, ema, resume state or None): resume `out`, else start from `init`, else from `config`."""
    if out.is_file():
        # Our own checkpoint: plain tensors, ints and floats, so torch's weights_only loader suffices.
        state = torch.load(out, map_location="cpu", weights_only=True)
        if not {"ema", "model", "optimizer", "step"} <= set(state):
            raise CheckpointError(f"{out} exists but is not a training checkpoint of this trainer; choose another "
                                  "output path (it would be overwritten) or pass it as --init to fine-tune from it.")
        model, ema = build_scfm(state["model"], source=str(out)), build_scfm(state["ema"], source=str(out))
        return model, ema, state
    if init is not None:
        ema = build_scfm(read_checkpoint(init, expect=Kind.SCFM).state_dict, source=init)
        return copy.deepcopy(ema), ema, None
    model = SCFMUNet(config or SCFMConfig())
    return model, copy.deepcopy(model), None


def train(data_dir: str | os.PathLike, out_path: str | os.PathLike, *, settings: TrainSettings | None = None,
          init: str | None = None, config: SCFMConfig | None = None, device: torch.device | str = "cpu",
          log: Callable[[int, dict[str, float]], None] | None = None) -> Path:
    """Train until `settings.steps` total steps; resumes from `out_path` when it exists. Returns `out_path`."""
    settings = settings or TrainSettings()
    out = Path(out_path)
    pairs = find_pairs(data_dir)
    model, ema, state = _initial_model(out, init, config)
    model.to(device).train()
    ema.to(device).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    generator = torch.Generator().manual_seed(settings.seed + start)
    order = random.Random(settings.seed + start)
    terms = DiffusionTerms()
    size = model.config.image_size
    for step in range(start + 1, settings.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * min(1.0, step / max(1, settings.warmup))
        batch = [t.to(device) for t in _batch(order.sample(pairs, min(settings.batch_pairs, len(pairs))), size,
                                              settings.fit_mode)]
        losses = training_step(model, terms, *batch, generator, settings.image_dropout)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        _update_ema(ema, model, 0.0 if step < settings.warmup else settings.ema_decay)
        if log is not None:
            log(step, {k: float(v.detach()) for k, v in losses.items()})
        if step % settings.save_every == 0 or step == settings.steps:
            _save(out, model, ema, optimizer, step)
            logger.info("SCFM training: step %d saved to %s", step, out)
    return out


@torch.no_grad()
def _update_ema(ema: SCFMUNet, model: SCFMUNet, decay: float) -> None:
    for average, current in zip(ema.parameters(), model.parameters()):
        average.mul_(decay).add_(current.detach(), alpha=1 - decay)
    # The original averages parameters only; buffers (MSFF BatchNorm statistics) follow the trained model.
    for average, current in zip(ema.buffers(), model.buffers()):
        average.copy_(current)
