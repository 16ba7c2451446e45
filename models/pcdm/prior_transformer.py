"""The stage-1 prior's modules (PCDMS.md §3.3): a six-token transformer over (source pose, target pose, source
embedding, time, noisy embedding, read-out token). Parameter names match the released stage-1 file (keys without
prefix), so its state dict loads without renames.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import NUM_TOKENS, PriorConfig


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
