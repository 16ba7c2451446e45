"""MSFF: the UCTransNet-style channel transformer over three U-Net skips (`cct_block.*`, SCFM.md §2.6)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import SCFMConfig

LAYER_NORM_EPS = 1e-6
SCALES = 3


class ChannelEmbedding(nn.Module):
    """Patchify one skip into tokens: conv kernel = stride = patch, plus learned positions."""

    def __init__(self, channels: int, patch: int, tokens: int, dropout: float):
        super().__init__()
        self.patch_embeddings = nn.Conv2d(channels, channels, patch, stride=patch)
        self.position_embeddings = nn.Parameter(torch.zeros(1, tokens, channels))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.patch_embeddings(x).flatten(2).transpose(1, 2) + self.position_embeddings)


class ChannelAttention(nn.Module):
    """Per-scale queries against keys/values of all scales concatenated, attention over channels.

    scores (B, heads, C_i, KV) / sqrt(KV) -> InstanceNorm per (sample, head) -> softmax over KV; the head
    outputs are averaged, not concatenated.
    """

    def __init__(self, channels: tuple[int, ...], heads: int, dropout: float):
        super().__init__()
        self.kv_size = sum(channels)
        for index, width in enumerate(channels, start=1):
            setattr(self, f"query{index}", nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(heads)))
            setattr(self, f"out{index}", nn.Linear(width, width, bias=False))
        self.key = nn.ModuleList(nn.Linear(self.kv_size, self.kv_size, bias=False) for _ in range(heads))
        self.value = nn.ModuleList(nn.Linear(self.kv_size, self.kv_size, bias=False) for _ in range(heads))
        self.attn_dropout = nn.Dropout(dropout)
        self.proj_dropout = nn.Dropout(dropout)

    def forward(self, queries: list[torch.Tensor], keys_values: torch.Tensor) -> list[torch.Tensor]:
        keys = torch.stack([key(keys_values) for key in self.key], dim=1)  # (B,H,T,KV)
        values = torch.stack([value(keys_values) for value in self.value], dim=1).transpose(-1, -2)  # (B,H,KV,T)
        outputs = []
        for index, query_tokens in enumerate(queries, start=1):
            query = torch.stack([q(query_tokens) for q in getattr(self, f"query{index}")], dim=1).transpose(-1, -2)
            scores = torch.matmul(query, keys) / math.sqrt(self.kv_size)  # (B,H,C_i,KV)
            probs = self.attn_dropout(torch.softmax(F.instance_norm(scores), dim=3))
            context = torch.matmul(probs, values).mean(dim=1).transpose(1, 2)  # (B,T,C_i)
            outputs.append(self.proj_dropout(getattr(self, f"out{index}")(context)))
        return outputs


class Mlp(nn.Module):
    def __init__(self, channels: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class TransformerLayer(nn.Module):
    """Block_ViT: channel cross-attention then a per-scale MLP, both residual."""

    def __init__(self, channels: tuple[int, ...], heads: int, mlp_ratio: int, attention_dropout: float):
        super().__init__()
        for index, width in enumerate(channels, start=1):
            setattr(self, f"attn_norm{index}", nn.LayerNorm(width, eps=LAYER_NORM_EPS))
            setattr(self, f"ffn_norm{index}", nn.LayerNorm(width, eps=LAYER_NORM_EPS))
            # The original's Mlp dropout rate is CCTConfig.dropout_rate = 0.0.
            setattr(self, f"ffn{index}", Mlp(width, width * mlp_ratio, 0.0))
        self.attn_norm = nn.LayerNorm(sum(channels), eps=LAYER_NORM_EPS)
        self.channel_attn = ChannelAttention(channels, heads, attention_dropout)

    def forward(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        normed = [getattr(self, f"attn_norm{i}")(t) for i, t in enumerate(tokens, start=1)]
        attended = self.channel_attn(normed, self.attn_norm(torch.cat(tokens, dim=2)))
        mixed = [a + t for a, t in zip(attended, tokens)]
        return [m + getattr(self, f"ffn{i}")(getattr(self, f"ffn_norm{i}")(m)) for i, m in enumerate(mixed, start=1)]


class Encoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], heads: int, layers: int, mlp_ratio: int, attention_dropout: float):
        super().__init__()
        self.layer = nn.ModuleList(TransformerLayer(channels, heads, mlp_ratio, attention_dropout) for _ in range(layers))
        for index, width in enumerate(channels, start=1):
            setattr(self, f"encoder_norm{index}", nn.LayerNorm(width, eps=LAYER_NORM_EPS))

    def forward(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        for layer in self.layer:
            tokens = layer(tokens)
        return [getattr(self, f"encoder_norm{i}")(t) for i, t in enumerate(tokens, start=1)]


class Reconstruct(nn.Module):
    """Tokens -> map: nearest upsample by the patch, conv1x1, BatchNorm (eval statistics), ReLU."""

    def __init__(self, channels: int, patch: int):
        super().__init__()
        self.patch = patch
        self.conv = nn.Conv2d(channels, channels, 1)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, count, channels = tokens.shape
        side = math.isqrt(count)
        grid = tokens.transpose(1, 2).reshape(batch, channels, side, side)
        return F.relu(self.norm(self.conv(F.interpolate(grid, scale_factor=self.patch, mode="nearest"))))


class ChannelTransformer(nn.Module):
    """MSFF: [h0, h3, h6] -> the same skips plus their fused reconstructions."""

    def __init__(self, config: SCFMConfig, embedding_dropout: float = 0.1, attention_dropout: float = 0.1):
        super().__init__()
        channels = config.msff_channels
        patches = tuple(config.msff_patch >> i for i in range(SCALES))
        tokens = (config.image_size // config.msff_patch) ** 2
        for index, (width, patch) in enumerate(zip(channels, patches), start=1):
            setattr(self, f"embeddings_{index}", ChannelEmbedding(width, patch, tokens, embedding_dropout))
            setattr(self, f"reconstruct_{index}", Reconstruct(width, patch))
        self.encoder = Encoder(channels, config.msff_heads, config.msff_layers, config.msff_mlp_ratio, attention_dropout)

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        tokens = [getattr(self, f"embeddings_{i}")(s) for i, s in enumerate(skips, start=1)]
        fused = self.encoder(tokens)
        return [getattr(self, f"reconstruct_{i}")(f) + s for i, (f, s) in enumerate(zip(fused, skips), start=1)]
