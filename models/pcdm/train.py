"""PCDMs training objectives, one per stage, as the original scripts define them (stage{1,2,3}_train_*.py).

Shared by all stages: AdamW (betas 0.9/0.999, weight decay 1e-2, eps 1e-8), gradient norm clipped to 1, the
scripts' "constant" rate (diffusers ignores the warm-up they pass with it), t ~ U{0..999} of a 1000-step
DDPM schedule, offset noise 0.1, MSE in float32, frozen encoders and VAE in the training precision.

- Stage 1 (prior): squaredcos_cap_v2 schedule, x0 ("sample") prediction of the target's CLIP-H embedding
  normalised with (-0.016, 0.415); conditions: source CLIP-H embedding (pixels zeroed for 10 % of items),
  source and target pose coordinates (each zeroed for 10 %). Offset noise per item (B,1,1).
- Stage 2 (inpainting): latents of the [source | target] canvas, mask 1 on the source half, latents of
  [source | black]; pose_proj of the [source pose | target pose] render canvas added after conv_in; tokens
  = image_proj(DINOv2(source)) (+ the target's CLIP-H embedding as the last token and class label for the
  full model); DINOv2 and CLIP pixels each zeroed for 10 % of items; epsilon prediction.
- Stage 3 (refiner): latents of the target and of the stage-2 result (that image zeroed, i.e. mid-grey in
  [-1, 1], for 10 % of items), concatenated; tokens = image_proj(DINOv2(source)); epsilon prediction.

Random draws come from one CPU generator per step in a fixed order (dropout, VAE posterior samples, noise,
offset, timesteps), so a run is reproducible and resumable. The trained weights are exported in the layout
of the original files (`unet.*`, `pose_proj.*`, `image_proj_model[_p].*`; the prior's bare keys) with the
UNet side config in the safetensors metadata, so the loader nodes read them directly.
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders import clip_preprocess, encode_dino_pixels
from ..images import to_signed
from ..vae import SD_LATENT_SCALE
from .prior import CLIP_EMBED_MEAN, CLIP_EMBED_STD
from .prior_transformer import PosePriorTransformer
from .stages import PcdmRefiner, PcdmStage2

NUM_TRAIN_TIMESTEPS = 1000
NOISE_OFFSET = 0.1  # run_stage{1,2,3}.sh --noise_offset
CONDITION_DROPOUT = 0.1  # the datasets' *_drop_rate as the scripts set them
# Learning rates of run_stage{1,2,3}.sh (stage 2's 1e-4 is for 8 GPUs x 8 from SD2.1; fine-tuning wants less).
STAGE_LR = {1: 1e-5, 2: 1e-4, 3: 1e-5}


@dataclass
class PairItem:
    """One training example, every image [3,S,S] in 0..1 already fitted to the model square.

    Stage 1 reads the keypoint vectors (36 = 18 points x (x, y)); stage 2 the pose renders; stage 3 `coarse`
    (the stage-2 result for this pair)."""

    source: torch.Tensor
    target: torch.Tensor
    source_pose: torch.Tensor | None = None
    target_pose: torch.Tensor | None = None
    source_keypoints: torch.Tensor | None = None
    target_keypoints: torch.Tensor | None = None
    coarse: torch.Tensor | None = None
    index: int = -1  # position in the dataset (logging which items a rank saw)


def _stack(items: list[PairItem], field: str) -> torch.Tensor:
    values = [getattr(item, field) for item in items]
    if any(v is None for v in values):
        raise ValueError(f"this PCDMs stage needs `{field}` for every training item")
    return torch.stack(values).float()


def _keep(generator: torch.Generator, batch: int, rate: float) -> torch.Tensor:
    """1 for kept items, 0 for dropped ones ([B,1,1,1]); one uniform draw per item as `random.random() < rate`."""
    return (torch.rand(batch, generator=generator) >= rate).float().view(-1, 1, 1, 1)


def _posterior_sample(vae: nn.Module, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """VAE posterior sample x 0.18215, as the scripts encode training images (not the mode used at inference)."""
    param = next(vae.parameters())
    posterior = vae.encode(images.to(device=param.device, dtype=param.dtype)).latent_dist
    draw = torch.randn(posterior.mean.shape, generator=generator).to(posterior.mean)
    return (posterior.mean + posterior.std * draw) * SD_LATENT_SCALE


def _noise(latents: torch.Tensor, generator: torch.Generator, offset_shape: tuple[int, ...], offset: float):
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    if offset:
        noise = noise + offset * torch.randn(offset_shape, generator=generator).to(latents)
    return noise


def _timesteps(generator: torch.Generator, batch: int, device: torch.device) -> torch.Tensor:
    return torch.randint(0, NUM_TRAIN_TIMESTEPS, (batch,), generator=generator).to(device)


def _unet_metadata(config: Any) -> dict[str, str]:
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    return {"config": json.dumps({"unet": fields})}


# ------------------------------------------------------------------------------------------- stage 2
class Stage2Net(nn.Module):
    """The trainable stage-2 parts behind one forward (DDP synchronises gradients through `forward`)."""

    def __init__(self, model: PcdmStage2):
        super().__init__()
        self.model = model

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, dino_tokens: torch.Tensor,
                target_embeds: torch.Tensor | None, pose_canvas: torch.Tensor) -> torch.Tensor:
        model = self.model
        tokens = model.image_proj(dino_tokens)
        kwargs = {}
        if model.is_full:
            tokens = torch.cat([tokens, target_embeds[:, None].to(tokens.dtype)], dim=1)
            kwargs["class_labels"] = target_embeds
        return model.unet(sample, timesteps, encoder_hidden_states=tokens,
                          pose_residual=model.pose_proj(pose_canvas), **kwargs)


class Stage2Objective:
    """Stage-2 loss; `clip` (CLIP ViT-H/14 with projection) is needed for the full model only."""

    def __init__(self, model: PcdmStage2, vae: nn.Module, dino: nn.Module, clip: nn.Module | None = None, *,
                 noise_offset: float = NOISE_OFFSET, dropout: float = CONDITION_DROPOUT,
                 legacy_dino_interpolation: bool = True, sample_steps: int = 20):
        if model.is_full and clip is None:
            raise ValueError("the full PCDMs stage-2 model is conditioned on the target's CLIP ViT-H/14 embedding: "
                             "give a CLIP vision file (clip_vision folder)")
        self.net = Stage2Net(model.float().requires_grad_(True).train())
        self.vae, self.dino, self.clip = vae.requires_grad_(False), dino.requires_grad_(False), clip
        if clip is not None:
            clip.requires_grad_(False)
        self.noise_offset, self.dropout = noise_offset, dropout
        self.legacy = legacy_dino_interpolation
        self.sample_steps = sample_steps

    def trainable(self) -> nn.Module:
        return self.net

    def loss(self, net: nn.Module, items: list[PairItem], generator: torch.Generator) -> dict[str, torch.Tensor]:
        device = next(net.parameters()).device
        source, target = _stack(items, "source"), _stack(items, "target")
        poses = to_signed(torch.cat([_stack(items, "source_pose"), _stack(items, "target_pose")], dim=-1))
        batch = source.shape[0]
        keep_source, keep_target = _keep(generator, batch, self.dropout), _keep(generator, batch, self.dropout)
        with torch.no_grad():
            latents = _posterior_sample(self.vae, to_signed(torch.cat([source, target], -1)), generator)
            masked = _posterior_sample(self.vae, to_signed(torch.cat([source, torch.zeros_like(source)], -1)),
                                       generator)
            dino_tokens = encode_dino_pixels(self.dino, clip_preprocess(source) * keep_source, self.legacy)
            embeds = None
            if self.net.model.is_full:
                param = next(self.clip.parameters())
                pixels = (clip_preprocess(target) * keep_target).to(device=param.device, dtype=param.dtype)
                embeds = self.clip(pixel_values=pixels).image_embeds
        latents, masked = latents.to(device), masked.to(device)
        noise = _noise(latents, generator, (batch, latents.shape[1], 1, 1), self.noise_offset)
        t = _timesteps(generator, batch, device)
        mask = torch.zeros(batch, 1, *latents.shape[-2:], device=device)
        mask[..., : latents.shape[-1] // 2] = 1.0  # 1 on the source half (what PCDMs trained with)
        noisy = _add_noise(latents, noise, t)
        sample = torch.cat([noisy, mask, masked], dim=1)
        pred = net(sample, t, dino_tokens.to(device), None if embeds is None else embeds.to(device),
                   poses.to(device))
        return {"loss": F.mse_loss(pred.float(), noise.float())}

    def export(self, net: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        model = net.model
        image_prefix = "image_proj_model_p." if model.is_full else "image_proj_model."
        tensors = {"unet." + k: v for k, v in model.unet.unet.state_dict().items()}
        tensors.update({"pose_proj." + k: v for k, v in model.pose_proj.state_dict().items()})
        tensors.update({image_prefix + k: v for k, v in model.image_proj.state_dict().items()})
        return tensors, _unet_metadata(model.unet.config)

    def sample_sheet(self, net: nn.Module, items: list[PairItem], seed: int) -> torch.Tensor | None:
        """Rows of [source | target pose | generated | real target] for the first items (DDIM, guidance 2). The
        full model is given the real target's CLIP-H embedding (what stage 1 would predict at best)."""
        from .inpaint import InpaintSettings, inpaint

        model = net.model
        size = items[0].source.shape[-1]
        settings = InpaintSettings(steps=self.sample_steps, seed=seed, size=size, fit="stretch",
                                   legacy_dino_interpolation=self.legacy)
        embeds = None
        if model.is_full:
            param = next(self.clip.parameters())
            pixels = clip_preprocess(_stack(items, "target")).to(device=param.device, dtype=param.dtype)
            embeds = self.clip(pixel_values=pixels).image_embeds.float()
        result = inpaint(model, self.vae, self.dino, _stack(items, "source"), _stack(items, "source_pose"),
                         _stack(items, "target_pose"), settings, target_embeds=embeds)
        rows = [torch.cat([item.source, item.target_pose, generated.cpu(), item.target], dim=-1)
                for item, generated in zip(items, result.images)]
        return torch.cat(rows, dim=-2)


def _add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, schedule: str = "scaled_linear") -> torch.Tensor:
    """`DDPMScheduler.add_noise` of the scripts' schedules: SD2.1-base's scaled_linear 0.00085..0.012 (stages 2, 3,
    from the base model's scheduler config) or squaredcos_cap_v2 (the prior)."""
    return _training_scheduler(schedule).add_noise(x0, noise, t)


@functools.lru_cache(maxsize=None)
def _training_scheduler(schedule: str) -> Any:
    from diffusers import DDPMScheduler

    if schedule == "scaled_linear":
        return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    return DDPMScheduler(beta_schedule=schedule, prediction_type="sample")


# ------------------------------------------------------------------------------------------- stage 3
class Stage3Net(nn.Module):
    def __init__(self, model: PcdmRefiner):
        super().__init__()
        self.model = model

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, dino_tokens: torch.Tensor) -> torch.Tensor:
        return self.model.unet(sample, timesteps, encoder_hidden_states=self.model.image_proj(dino_tokens))


class Stage3Objective:
    def __init__(self, model: PcdmRefiner, vae: nn.Module, dino: nn.Module, *, noise_offset: float = NOISE_OFFSET,
                 dropout: float = CONDITION_DROPOUT, legacy_dino_interpolation: bool = True):
        self.net = Stage3Net(model.float().requires_grad_(True).train())
        self.vae, self.dino = vae.requires_grad_(False), dino.requires_grad_(False)
        self.noise_offset, self.dropout, self.legacy = noise_offset, dropout, legacy_dino_interpolation

    def trainable(self) -> nn.Module:
        return self.net

    def loss(self, net: nn.Module, items: list[PairItem], generator: torch.Generator) -> dict[str, torch.Tensor]:
        device = next(net.parameters()).device
        source, target, coarse = _stack(items, "source"), _stack(items, "target"), _stack(items, "coarse")
        batch = source.shape[0]
        keep = _keep(generator, batch, self.dropout)
        with torch.no_grad():
            latents = _posterior_sample(self.vae, to_signed(target), generator)
            coarse_latents = _posterior_sample(self.vae, to_signed(coarse) * keep, generator)
            dino_tokens = encode_dino_pixels(self.dino, clip_preprocess(source), self.legacy)
        latents, coarse_latents = latents.to(device), coarse_latents.to(device)
        noise = _noise(latents, generator, (batch, latents.shape[1], 1, 1), self.noise_offset)
        t = _timesteps(generator, batch, device)
        sample = torch.cat([_add_noise(latents, noise, t), coarse_latents], dim=1)
        pred = net(sample, t, dino_tokens.to(device))
        return {"loss": F.mse_loss(pred.float(), noise.float())}

    def export(self, net: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        model = net.model
        tensors = {"unet." + k: v for k, v in model.unet.unet.state_dict().items()}
        tensors.update({"image_proj_model_p." + k: v for k, v in model.image_proj.state_dict().items()})
        return tensors, _unet_metadata(model.unet.config)

    def sample_sheet(self, net: nn.Module, items: list[PairItem], seed: int) -> torch.Tensor | None:
        """Rows of [source | stage-2 result | refined | real target] (UniPC 20, guidance 2)."""
        from .refine import RefineSettings, refine

        settings = RefineSettings(seed=seed, size=items[0].source.shape[-1], fit="stretch",
                                  legacy_dino_interpolation=self.legacy)
        refined = refine(net.model, self.vae, self.dino, _stack(items, "coarse"), _stack(items, "source"), settings)
        rows = [torch.cat([item.source, item.coarse, image.cpu(), item.target], dim=-1)
                for item, image in zip(items, refined)]
        return torch.cat(rows, dim=-2)


# ------------------------------------------------------------------------------------------- stage 1
class Stage1Net(nn.Module):
    def __init__(self, prior: PosePriorTransformer):
        super().__init__()
        self.prior = prior

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, source_embeds: torch.Tensor,
                source_pose: torch.Tensor, target_pose: torch.Tensor) -> torch.Tensor:
        return self.prior(noisy, timesteps, source_embeds, source_pose, target_pose)


class Stage1Objective:
    def __init__(self, prior: PosePriorTransformer, clip: nn.Module, *, noise_offset: float = NOISE_OFFSET,
                 dropout: float = CONDITION_DROPOUT):
        self.net = Stage1Net(prior.float().requires_grad_(True).train())
        self.clip = clip.requires_grad_(False)
        self.noise_offset, self.dropout = noise_offset, dropout

    def trainable(self) -> nn.Module:
        return self.net

    def loss(self, net: nn.Module, items: list[PairItem], generator: torch.Generator) -> dict[str, torch.Tensor]:
        device = next(net.parameters()).device
        source, target = _stack(items, "source"), _stack(items, "target")
        source_pose, target_pose = _stack(items, "source_keypoints"), _stack(items, "target_keypoints")
        batch = source.shape[0]
        keep_image = _keep(generator, batch, self.dropout)
        keep_source_pose = _keep(generator, batch, self.dropout).view(-1, 1)
        keep_target_pose = _keep(generator, batch, self.dropout).view(-1, 1)
        with torch.no_grad():
            param = next(self.clip.parameters())
            pixels = torch.cat([clip_preprocess(source) * keep_image, clip_preprocess(target)])
            embeds = self.clip(pixel_values=pixels.to(device=param.device, dtype=param.dtype)).image_embeds.float()
        source_embeds, target_embeds = embeds[:batch].to(device), embeds[batch:].to(device)
        x0 = (target_embeds - CLIP_EMBED_MEAN) / CLIP_EMBED_STD
        noise = _noise(x0, generator, (batch, 1), self.noise_offset)
        t = _timesteps(generator, batch, device)
        noisy = _add_noise(x0, noise, t, "squaredcos_cap_v2")
        pred = net(noisy, t, source_embeds, (source_pose * keep_source_pose).to(device),
                   (target_pose * keep_target_pose).to(device))
        return {"loss": F.mse_loss(pred.float(), x0.float())}

    def export(self, net: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        prior = net.prior
        config = {"num_attention_heads": prior.config.num_heads, "attention_head_dim": prior.config.head_dim}
        return dict(prior.state_dict()), {"config": json.dumps(config)}

    def sample_sheet(self, net: nn.Module, items: list[PairItem], seed: int) -> torch.Tensor | None:
        return None
