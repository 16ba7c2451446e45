"""Train or fine-tune SCFM from pairs of photos of the same person with their pose maps (the only way to get weights).

The pairs come from a `TrainingPairs` source: the command line reads them from a folder of photos with OpenPose
keypoints (`cli/scfm_data.py`); each pair is used in both directions, as the original.

Per step (train.py / diffusion.py of the original): t ~ U{0..999}; target -> x_t; 10 % of the items get a
zeroed source image for the encoder while the flow net still sees the real one (the original's image
dropout); loss = mean(MSE(eps) + VB) (losses.py) + GFLA's sampling-correctness loss on VGG19 features
+ 0.0025 x its affine flow regularisation (flow_losses.py); Adam lr 2e-5 with linear warm-up from 4 %, gradient norm
clipped to 1, parameter EMA (a plain copy during warm-up). The original's warm-up (5000 steps) and EMA decay
(0.9999) belong to its 2.4 M-step run; by default both scale with `steps` (see `TrainSettings.resolved`).
Checkpoints hold {"ema", "model", "optimizer", "step", "config"} in our canonical key layout, readable by
`load_scfm`, and are written atomically; training resumes from the output file when it exists.
"""
from __future__ import annotations

import copy
import logging
import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch

from ..checkpoints import CheckpointError
from .checkpoint import build_scfm, load_scfm
from .config import SCFMConfig
from .flow_losses import LAMBDA_CORRECTNESS, LAMBDA_REGULARISATION, correctness_loss, regularisation_loss
from .losses import DiffusionTerms, diffusion_loss
from .sampler import NUM_TRAIN_TIMESTEPS
from .unet import SCFMUNet, SourceCondition
from .vgg import VGG19Features

logger = logging.getLogger(__name__)


class TrainingPairs(Protocol):
    """Where training batches come from: a numbered collection of (source, target) pairs."""

    def __len__(self) -> int:
        """How many ordered pairs there are."""

    def batch(self, indices: Sequence[int], size: int, fit_mode: str) -> tuple[torch.Tensor, ...]:
        """Pairs `indices`, both directions each: (source [N,3,S,S] in [-1,1], source pose maps [N,P,S,S],
        target pose maps [N,P,S,S], target [N,3,S,S] in [-1,1]) on the model's size x size square."""


ORIGINAL_WARMUP = 5000  # config/diffusion.conf, for a 2.4 M-step schedule
ORIGINAL_EMA_DECAY = 0.9999  # train.py accumulate()


@dataclass
class TrainSettings:
    steps: int = 1000
    batch_pairs: int = 4  # pairs per step; each is used in both directions, so the model sees 2x items
    lr: float = 2e-5
    warmup: int | None = None  # None: min(5000, steps // 20)
    ema_decay: float | None = None  # None: min(0.9999, 1 - 10 / steps)
    image_dropout: float = 0.1
    grad_clip: float = 1.0
    save_every: int = 500
    seed: int = 0
    fit_mode: str = "stretch"
    lambda_correctness: float = LAMBDA_CORRECTNESS  # 0 trains without VGG19 weights (not the paper's objective)
    lambda_regularisation: float = LAMBDA_REGULARISATION

    def resolved(self) -> "TrainSettings":
        """Fill the run-length-dependent defaults: the original's 5000 warm-up steps and 0.9999 EMA decay only
        make sense for its 2.4 M-step run. A 1000-step fine-tune gets 50 warm-up steps (then the full rate) and
        an EMA over about the last 100 steps (decay 0.99) instead of a rate stuck below 2e-5 and an EMA that
        still equals the starting weights."""
        warmup = self.warmup if self.warmup is not None else min(ORIGINAL_WARMUP, self.steps // 20)
        decay = self.ema_decay if self.ema_decay is not None else min(ORIGINAL_EMA_DECAY, 1 - 10 / max(self.steps, 20))
        return replace(self, warmup=warmup, ema_decay=decay)


WARMUP_START = 0.04  # tensorfn cycle_scheduler's initial_multiplier


def learning_rate(settings: TrainSettings, step: int) -> float:
    """The rate for 1-based `step` of resolved settings, as the original's tensorfn `cycle_scheduler` with
    decay [linear, flat] (stepped before each update): linear from 4 % of `lr` to `lr` over the warm-up, then flat."""
    progress = min(1.0, step / settings.warmup) if settings.warmup else 1.0
    return settings.lr * (WARMUP_START + (1 - WARMUP_START) * progress)


def training_step(model: SCFMUNet, terms: DiffusionTerms, source: torch.Tensor, source_pose: torch.Tensor,
                  target_pose: torch.Tensor, target: torch.Tensor, generator: torch.Generator,
                  image_dropout: float, vgg: VGG19Features | None = None,
                  lambda_correctness: float = LAMBDA_CORRECTNESS,
                  lambda_regularisation: float = LAMBDA_REGULARISATION) -> dict[str, torch.Tensor]:
    """One forward of the original objective; returns "loss" (what to minimise) and its parts as scalars.

    source/target [B,3,S,S] in [-1,1]; poses [B,P,S,S] in [0,1]; `generator` (CPU) draws t, noise and dropout,
    in that order. `vgg` is needed when `lambda_correctness` > 0.
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
    losses = {k: v.mean() for k, v in
              diffusion_loss(terms, output.float(), target, x_t, t.to(target.device), noise).items()}
    flows = [f.float() for f in flows]
    total = losses["loss"]
    if lambda_correctness:
        if vgg is None:
            raise ValueError("the sampling-correctness loss needs VGG19 weights: pass `vgg` (load_vgg19) or set "
                             "lambda_correctness to 0")
        with torch.no_grad():  # the VGG features are a fixed measuring stick; only the flows learn from them
            features = vgg(torch.cat([target, source]).float())
        target_features = {k: v[:batch] for k, v in features.items()}
        source_features = {k: v[batch:] for k, v in features.items()}
        losses["correctness"] = correctness_loss(target_features, source_features, flows)
        total = total + lambda_correctness * losses["correctness"]
    if lambda_regularisation:
        losses["regularisation"] = regularisation_loss(flows)
        total = total + lambda_regularisation * losses["regularisation"]
    losses["diffusion"] = losses.pop("loss")
    losses["loss"] = total
    return losses


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
        ema = load_scfm(init)  # the loader node's path: a file that does not build is named in the error
        return copy.deepcopy(ema), ema, None
    model = SCFMUNet(config or SCFMConfig())
    return model, copy.deepcopy(model), None


def train(data: TrainingPairs, out_path: str | os.PathLike, *, settings: TrainSettings | None = None,
          init: str | None = None, config: SCFMConfig | None = None, device: torch.device | str = "cpu",
          vgg: VGG19Features | None = None, log: Callable[[int, dict[str, float]], None] | None = None) -> Path:
    """Train until `settings.steps` total steps; resumes from `out_path` when it exists. Returns `out_path`.

    `vgg` (`load_vgg19`) is required unless `settings.lambda_correctness` is 0.
    """
    settings = (settings or TrainSettings()).resolved()
    if settings.lambda_correctness and vgg is None:
        raise ValueError("SCFM's objective includes GFLA's sampling-correctness loss on ImageNet VGG19 features: give "
                         "the torchvision VGG19 weights file (vgg19-dcbb9e9d.pth), or set lambda_correctness to 0 to "
                         "train without it (not the paper's objective).")
    out = Path(out_path)
    model, ema, state = _initial_model(out, init, config)
    model.to(device).train()
    ema.to(device).eval().requires_grad_(False)
    if vgg is not None:
        vgg.to(device).eval()
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
            group["lr"] = learning_rate(settings, step)
        # sampling indices draws exactly what sampling the pairs themselves did (random.sample picks by index)
        picks = order.sample(range(len(data)), min(settings.batch_pairs, len(data)))
        batch = [t.to(device) for t in data.batch(picks, size, settings.fit_mode)]
        losses = training_step(model, terms, *batch, generator, settings.image_dropout, vgg,
                               settings.lambda_correctness, settings.lambda_regularisation)
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
