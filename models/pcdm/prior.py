"""PCDMs stage 1: the pose-conditioned prior that predicts the target's CLIP ViT-H/14 image embedding.

Facts from PCDMS.md §3.3, §6.2, §7: a six-token transformer (source pose, target pose, source embedding, time,
noisy embedding, read-out token) trained with x0 ("sample") prediction on embeddings normalised with
`CLIP_EMBED_MEAN`/`CLIP_EMBED_STD`, sampled with UnCLIP's DDPM variant. Parameter names match the released
stage-1 file (keys without prefix), so its state dict loads without renames.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

import torch
from torch import nn

from ..checkpoints import CheckpointError, Kind, build_model, check_split, load_strict
from ..noise import seeded_noise

if TYPE_CHECKING:
    from diffusers.schedulers import UnCLIPScheduler

logger = logging.getLogger(__name__)

CLIP_EMBED_MEAN = -0.016  # PCDMs stage-1 normalisation of the CLIP-H embedding (Stage1_PriorTransformer.clip_mean)
CLIP_EMBED_STD = 0.415  # PCDMs stage-1 normalisation (Stage1_PriorTransformer.clip_std)
NUM_TOKENS = 6  # source pose, target pose, source embedding, time, noisy embedding, read-out ("prd") token
DEFAULT_HEAD_DIM = 64  # the released prior (from Kandinsky 2.2) uses 32 heads x 64 channels
UNCLIP_CLIP_SAMPLE_RANGE = 10.0  # kandinsky-2-2-prior scheduler config (PCDMS.md §7)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PriorConfig:
    """Hyper-parameters of the stage-1 prior, inferred from tensor shapes (see `from_state_dict`)."""

    width: int  # transformer width (2048 released)
    num_layers: int  # 20 released
    num_heads: int  # 32 released
    head_dim: int  # 64 released
    embedding_dim: int = 1024  # CLIP ViT-H/14 image_embeds
    pose_features: int = 36  # 18 body points x (x, y)
    pose_hidden: int = 512
    ff_inner: int = 8192

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], side_config: Mapping | None = None,
                        source: str = "") -> PriorConfig:
        """Infer the config from a prior state dict; `side_config` (a config.json beside the file) may set the heads."""
        where = f" in {source}" if source else ""
        pos = state_dict.get("positional_embedding")
        if pos is None or pos.dim() != 3 or pos.shape[1] != NUM_TOKENS:
            shape = None if pos is None else tuple(pos.shape)
            raise CheckpointError(f"Not a PCDMs stage-1 prior{where}: expected 'positional_embedding' of shape "
                                  f"(1, {NUM_TOKENS}, width), found {shape}.")
        width = int(pos.shape[2])
        layers = {int(m.group(1)) for k in state_dict if (m := re.match(r"transformer_blocks\.(\d+)\.", k))}
        if not layers:
            raise CheckpointError(f"PCDMs prior{where} has no transformer_blocks: the file is incomplete; download it "
                                  "again.")
        side_config = side_config or {}
        if "num_attention_heads" not in side_config:  # the released width is a multiple of 64-channel heads
            check_split(width, [width], setting="num_attention_heads", default_unit=DEFAULT_HEAD_DIM)
        num_heads = int(side_config.get("num_attention_heads", max(1, width // DEFAULT_HEAD_DIM)))
        head_dim = int(side_config.get("attention_head_dim", width // num_heads))
        if num_heads * head_dim != width:
            raise CheckpointError(f"PCDMs prior{where}: {num_heads} heads x {head_dim} channels does not match the "
                                  f"transformer width {width}; fix num_attention_heads/attention_head_dim in its config.")
        return cls(
            width=width, num_layers=len(layers), num_heads=num_heads, head_dim=head_dim,
            embedding_dim=int(state_dict["proj_in.weight"].shape[1]),
            pose_features=int(state_dict["pose_encoder.net.0.weight"].shape[1]),
            pose_hidden=int(state_dict["pose_encoder.net.0.weight"].shape[0]),
            ff_inner=int(state_dict["transformer_blocks.0.ff.net.0.proj.weight"].shape[0]),
        )


class PoseEncoder(nn.Module):
    """36 pose numbers -> one embedding-sized token: Linear, GELU, LayerNorm, Linear, LayerNorm."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        # Indices 2 and 5 held Dropout(0) in the original; Identity keeps the checkpoint's `net.{0,3,4,6}` names.
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Identity(), nn.LayerNorm(hidden),
                                 nn.Linear(hidden, out_dim), nn.Identity(), nn.LayerNorm(out_dim))

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        return self.net(pose)


class PosePriorTransformer(nn.Module):
    """Stage-1 denoiser: predicts the clean normalised target embedding from a noisy one."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        # diffusers is heavy: imported when a model is built, not when the pack loads.
        from diffusers.models.attention import BasicTransformerBlock
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        self.config = config
        width, emb = config.width, config.embedding_dim
        self.pose_encoder = PoseEncoder(config.pose_features, config.pose_hidden, emb)
        self.pose_encoder1 = PoseEncoder(config.pose_features, config.pose_hidden, emb)
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, width)
        self.proj_in = nn.Linear(emb, width)
        self.embedding_proj = nn.Linear(emb, width)
        self.encoder_hidden_states_proj = nn.Linear(emb, width)
        self.encoder_hidden_states_proj1 = nn.Linear(emb, width)
        self.positional_embedding = nn.Parameter(torch.zeros(1, NUM_TOKENS, width))
        self.prd_embedding = nn.Parameter(torch.zeros(1, 1, width))
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(width, config.num_heads, config.head_dim, activation_fn="gelu",
                                  attention_bias=True, ff_inner_dim=config.ff_inner)
            for _ in range(config.num_layers)
        )
        self.norm_out = nn.LayerNorm(width)
        self.proj_to_clip_embeddings = nn.Linear(width, emb)

    def forward(self, noisy_embedding: torch.Tensor, timestep: torch.Tensor | int, source_embedding: torch.Tensor,
                source_pose: torch.Tensor, target_pose: torch.Tensor) -> torch.Tensor:
        """x_t (B,E) normalised, t (scalar or (B,)), source CLIP-H embed (B,E) raw, poses (B,36) -> x0 (B,E)."""
        batch = noisy_embedding.shape[0]
        dtype = self.proj_in.weight.dtype
        timestep = torch.as_tensor(timestep, device=noisy_embedding.device).reshape(-1).expand(batch)
        # The sinusoidal projection is always float32; the original casts it to the model dtype (PCDMS.md §3.3).
        time = self.time_embedding(self.time_proj(timestep).to(dtype))
        tokens = torch.stack([
            self.encoder_hidden_states_proj(self.pose_encoder(source_pose.to(dtype))),
            self.encoder_hidden_states_proj1(self.pose_encoder1(target_pose.to(dtype))),
            self.embedding_proj(source_embedding.to(dtype)),
            time,
            self.proj_in(noisy_embedding.to(dtype)),
            self.prd_embedding[:, 0].to(dtype).expand(batch, -1),
        ], dim=1) + self.positional_embedding.to(dtype)
        # Full bidirectional attention: the original's causal mask is only applied with a text mask, never passed.
        for block in self.transformer_blocks:
            tokens = block(tokens)
        return self.proj_to_clip_embeddings(self.norm_out(tokens)[:, -1])


def build_prior(state_dict: Mapping[str, torch.Tensor], side_config: Mapping | None = None, *, source: str = "",
                dtype: torch.dtype = torch.float32) -> PosePriorTransformer:
    """Build the prior from a stage-1 state dict (keys without prefix) and load it strictly."""
    config = PriorConfig.from_state_dict(state_dict, side_config, source)
    # Built on the meta device: random init of ~1e9 parameters would take longer than reading them.
    with torch.device("meta"):
        model = PosePriorTransformer(config)
    model = model.to_empty(device="cpu").to(dtype)
    load_strict(model, dict(state_dict), source=source)
    logger.info("PCDMs prior from %s: %d layers, width %d, %d heads", source or "state dict",
                config.num_layers, config.width, config.num_heads)
    return model.eval().requires_grad_(False)


def load_prior(path: str, dtype: torch.dtype = torch.float32) -> PosePriorTransformer:
    """Read a stage-1 file (DeepSpeed `{"module": ...}`, bare dict or safetensors) and build the prior."""
    return build_model(path, Kind.PCDM_PRIOR, lambda checkpoint: build_prior(
        checkpoint.state_dict, checkpoint.config, source=checkpoint.path, dtype=dtype))


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
