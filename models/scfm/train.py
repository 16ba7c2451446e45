"""SCFM's training objective on the pack's one training loop (`models/training.py`): the only way to get weights.

Per step (train.py / diffusion.py of the original): each pair is used in both directions; t ~ U{0..999};
target -> x_t; 10 % of the items get a zeroed source image for the encoder while the flow net still sees the
real one (the original's image dropout); loss = mean(MSE(eps) + VB) (losses.py) + GFLA's sampling-correctness
loss on VGG19 features + 0.0025 x its affine flow regularisation (flow_losses.py).

Optimisation (`loop_settings`): Adam lr 2e-5 with linear warm-up from 4 %, gradient norm clipped to 1,
parameter EMA (a plain copy during warm-up). The original's warm-up (5000 steps) and EMA decay (0.9999)
belong to its 2.4 M-step run; by default both scale with the run length. The loop handles processes,
precision, resuming and files; the published weights are the EMA in our canonical key layout, which
`load_scfm` (and so the SCFM Loader node) reads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..images import from_signed
from ..training import LoopSettings
from .checkpoint import load_scfm
from .config import SCFMConfig
from .flow_losses import LAMBDA_CORRECTNESS, LAMBDA_REGULARISATION, correctness_loss, regularisation_loss
from .losses import DiffusionTerms, diffusion_loss
from .sampler import NUM_TRAIN_TIMESTEPS, initial_noise, sample
from .unet import SCFMUNet, SourceCondition
from .vgg import VGG19Features

ORIGINAL_LR = 2e-5  # config/diffusion.conf
ORIGINAL_WARMUP = 5000  # config/diffusion.conf, for a 2.4 M-step schedule
ORIGINAL_EMA_DECAY = 0.9999  # train.py accumulate()
WARMUP_START = 0.04  # tensorfn cycle_scheduler's initial_multiplier
GRAD_CLIP = 1.0  # train.py clip_grad_norm_
IMAGE_DROPOUT = 0.1  # train.py --guidance_prob 0.1 (the encoder's source image zeroed)
FLOW_LEVELS = (5, 4, 3)  # the flow net returns the coarsest flow first
SAMPLE_STEPS = 25  # DDIM steps of the sample sheets (the original infers with 50)


@dataclass
class ScfmPair:
    """Two photos of one person on the model square: images [3,S,S] in [-1,1], pose maps [P,S,S] in [0,1].
    The loss uses the pair in both directions, as the original's data."""

    first: torch.Tensor
    first_pose: torch.Tensor
    second: torch.Tensor
    second_pose: torch.Tensor
    index: int = -1  # position in the dataset


def both_directions(items: list[ScfmPair]) -> tuple[torch.Tensor, ...]:
    """(source, source pose maps, target pose maps, target), [2N,...]: first -> second, then second -> first,
    pair by pair."""
    sources, source_poses, target_poses, targets = [], [], [], []
    for item in items:
        for (src, src_pose), (tgt, tgt_pose) in (((item.first, item.first_pose), (item.second, item.second_pose)),
                                                 ((item.second, item.second_pose), (item.first, item.first_pose))):
            sources.append(src)
            source_poses.append(src_pose)
            target_poses.append(tgt_pose)
            targets.append(tgt)
    return tuple(torch.stack(values).float() for values in (sources, source_poses, target_poses, targets))


def loop_settings(steps: int = 1000, *, warmup: int | None = None, ema_decay: float | None = None,
                  **options: Any) -> LoopSettings:
    """The shared loop's settings for SCFM's optimisation; `options` are other `LoopSettings` fields
    (`batch_size` counts pairs per process).

    The original's 5000 warm-up steps and 0.9999 EMA decay only make sense for its 2.4 M-step run: by default
    a 1000-step fine-tune gets 50 warm-up steps (then the full rate) and an EMA over about the last 100 steps
    (decay 0.99), instead of a rate stuck below 2e-5 and an EMA that still equals the starting weights.
    Adam's update is AdamW's with weight decay 0."""
    warmup = warmup if warmup is not None else min(ORIGINAL_WARMUP, steps // 20)
    decay = ema_decay if ema_decay is not None else min(ORIGINAL_EMA_DECAY, 1 - 10 / max(steps, 20))
    defaults = dict(lr=ORIGINAL_LR, weight_decay=0.0, max_grad_norm=GRAD_CLIP)
    return LoopSettings(**{**defaults, **options, "steps": steps, "warmup": warmup, "warmup_start": WARMUP_START,
                           "ema_decay": decay, "ema_start": warmup})


class TrainingForward(nn.Module):
    """SCFM as training calls it, behind one `forward`: DDP synchronises the gradients of what `forward` runs."""

    def __init__(self, model: SCFMUNet):
        super().__init__()
        self.model = model

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, source: torch.Tensor, keep: torch.Tensor,
                source_pose: torch.Tensor, target_pose: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x_t [B,3,S,S]; t [B]; source [B,3,S,S] in [-1,1] (the flow net's), `keep` [B,1,1,1] (the encoder's
        source is source x keep) -> (model output [B,6,S,S], flows coarsest first)."""
        model = self.model
        flows, masks = model.flow_net(source, source_pose, target_pose)
        condition = SourceCondition(model.encoder(source * keep), dict(zip(FLOW_LEVELS, flows)),
                                    dict(zip(FLOW_LEVELS, masks)))
        return model(torch.cat([x_t, target_pose], 1), t.float(), condition), list(flows)


def training_step(net: TrainingForward, terms: DiffusionTerms, source: torch.Tensor, source_pose: torch.Tensor,
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
    t = t.to(target.device)
    x_t = terms.q_sample(target, t, noise)
    output, flows = net(x_t, t, source, keep, source_pose, target_pose)
    losses = {k: v.mean() for k, v in diffusion_loss(terms, output.float(), target, x_t, t, noise).items()}
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


class SCFMObjective:
    """SCFM's objective for `models.training.train_loop`; items are `ScfmPair`s.

    `vgg` (`load_vgg19`) is required unless `lambda_correctness` is 0 (not the paper's objective)."""

    def __init__(self, model: SCFMUNet, vgg: VGG19Features | None = None, *, image_dropout: float = IMAGE_DROPOUT,
                 lambda_correctness: float = LAMBDA_CORRECTNESS,
                 lambda_regularisation: float = LAMBDA_REGULARISATION, sample_steps: int = SAMPLE_STEPS):
        if lambda_correctness and vgg is None:
            raise ValueError("SCFM's objective includes GFLA's sampling-correctness loss on ImageNet VGG19 features: "
                             "give the torchvision VGG19 weights file (vgg19-dcbb9e9d.pth), or set lambda_correctness "
                             "to 0 to train without it (not the paper's objective).")
        self.net = TrainingForward(model.float().requires_grad_(True).train())
        self.vgg = None if vgg is None else vgg.eval().requires_grad_(False)
        self.terms = DiffusionTerms()
        self.image_dropout, self.sample_steps = image_dropout, sample_steps
        self.lambda_correctness, self.lambda_regularisation = lambda_correctness, lambda_regularisation

    def trainable(self) -> nn.Module:
        return self.net

    def loss(self, net: nn.Module, items: list[ScfmPair], generator: torch.Generator) -> dict[str, torch.Tensor]:
        device = next(net.parameters()).device
        batch = [values.to(device) for values in both_directions(items)]
        return training_step(net, self.terms, *batch, generator, self.image_dropout, self.vgg,
                             self.lambda_correctness, self.lambda_regularisation)

    def export(self, net: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        # Canonical keys: every width is read back from the shapes, so no config travels in the metadata.
        return dict(net.model.state_dict()), {}

    def sample_sheet(self, net: nn.Module, items: list[ScfmPair], seed: int) -> torch.Tensor | None:
        """Rows of [source | target pose (its maps' maximum) | generated | real target], first -> second of
        each item (DDIM `sample_steps`, guidance 2)."""
        source, source_pose, target_pose, target = (values[::2] for values in both_directions(items))
        noise = initial_noise(source.shape[0], source.shape[-1], seed)
        generated = sample(net.model, source, source_pose, target_pose, noise, steps=self.sample_steps).cpu()
        pose = target_pose.amax(1, keepdim=True).expand(-1, 3, -1, -1)
        rows = torch.cat([from_signed(source), pose, generated, from_signed(target)], dim=-1)
        return torch.cat(list(rows.clamp(0, 1)), dim=-2)


def initial_model(init: str | os.PathLike | None = None, config: SCFMConfig | None = None) -> SCFMUNet:
    """The model training starts from: the weights of `init` (any SCFM file `load_scfm` reads; a training
    container's EMA) or a new model of `config` (default: the paper's 256 px model)."""
    if init is not None:
        return load_scfm(init)
    return SCFMUNet(config or SCFMConfig())
