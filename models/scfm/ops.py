"""Pure-PyTorch forms of the four CUDA extensions SCFM was built on (SCFM.md §3).

Each function reproduces its kernel's forward pass exactly (float64 agreement to round-off); they run on
any device and are differentiable through autograd, so training needs no custom backward either.
Flows are pixel offsets at the flow's own resolution, channel 0 = x, channel 1 = y, backward warp:
output(y, x) samples the input at (x + fx, y + fy).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Resample2d(kernel_size=4, dilation=1, sigma=2) as constructed by every site (target_net.py).
RESAMPLE_KERNEL = 4
RESAMPLE_SIGMA = 2.0


def _gaussian_taps(coord: torch.Tensor, size: int, kernel_size: int, sigma: float):
    """Clamped tap indices and Gaussian weights along one axis: [K, ...] each.

    Taps sit at floor(p) - K/2 + 1 ... floor(p) + K/2; the kernel clamps indices into the image but
    computes weights from the unclamped distances, so far out-of-range points repeat the border.
    """
    base = torch.floor(coord)
    frac = coord - base
    offsets = torch.arange(1 - kernel_size // 2, kernel_size // 2 + 1, device=coord.device, dtype=coord.dtype)
    offsets = offsets.view(-1, *([1] * coord.dim()))
    weights = torch.exp(-((offsets - frac) ** 2) / (2.0 * sigma * sigma))
    index = (base + offsets).clamp(0, size - 1).long()
    return index, weights


def resample2d(source: torch.Tensor, flow: torch.Tensor, kernel_size: int = RESAMPLE_KERNEL,
               sigma: float = RESAMPLE_SIGMA) -> torch.Tensor:
    """Gaussian-weighted, normalised K x K backward warp ("backwarp" of the SCFM sites).

    source: [B,C,H,W]; flow: [B,2,Ho,Wo] pixel offsets -> [B,C,Ho,Wo]. Not bilinear: grid_sample cannot
    reproduce it, so the 16 taps are gathered explicitly.
    """
    batch, channels, height, width = source.shape
    out_h, out_w = flow.shape[-2:]
    ys = torch.arange(out_h, device=flow.device, dtype=flow.dtype).view(1, -1, 1)
    xs = torch.arange(out_w, device=flow.device, dtype=flow.dtype).view(1, 1, -1)
    yi, wy = _gaussian_taps(ys + flow[:, 1], height, kernel_size, sigma)  # [K,B,Ho,Wo]
    xi, wx = _gaussian_taps(xs + flow[:, 0], width, kernel_size, sigma)
    # All K*K combinations: index [Ky,Kx,B,Ho,Wo] into the flattened H*W plane.
    flat_index = (yi.unsqueeze(1) * width + xi.unsqueeze(0)).flatten(0, 1)
    weight = (wy.unsqueeze(1) * wx.unsqueeze(0)).flatten(0, 1).to(source.dtype)
    flat_index = flat_index.permute(1, 0, 2, 3).reshape(batch, 1, -1).expand(-1, channels, -1)
    taps = torch.gather(source.reshape(batch, channels, -1), 2, flat_index)
    taps = taps.view(batch, channels, kernel_size * kernel_size, out_h, out_w)
    weight = weight.permute(1, 0, 2, 3).unsqueeze(1)  # [B,1,K*K,Ho,Wo]
    return (taps * weight).sum(2) / weight.sum(2)


def block_extractor(source: torch.Tensor, flow: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """GFLA BlockExtractor: for every flow cell, the k x k block of `source` around the flowed point.

    source: [B,C,H,W]; flow: [B,2,Hf,Wf] -> [B,C,k*Hf,k*Wf]. Bilinear with border clamping, i.e. grid_sample
    with padding "border" and align_corners=True (default zeros/align_corners=False differ by O(1)).
    """
    height, width = source.shape[-2:]
    hf, wf = flow.shape[-2:]
    k = kernel_size
    dtype = flow.dtype
    rows = torch.arange(hf * k, device=flow.device)
    cols = torch.arange(wf * k, device=flow.device)
    # Each output pixel reads its flow cell (y//k, x//k) and adds the in-block offset (y%k - k//2).
    flow_up = flow.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)
    px = (cols // k + cols % k - k // 2).to(dtype).view(1, 1, -1) + flow_up[:, 0]
    py = (rows // k + rows % k - k // 2).to(dtype).view(1, -1, 1) + flow_up[:, 1]
    grid = torch.stack((2.0 * px / max(width - 1, 1) - 1.0, 2.0 * py / max(height - 1, 1) - 1.0), dim=-1)
    return F.grid_sample(source, grid.to(source.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def local_attn_reshape(weights: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """GFLA LocalAttnReshape: [B,k*k,H,W] -> [B,1,k*H,k*W], out[y,x] = in[(y%k)*k + x%k, y//k, x//k]."""
    return F.pixel_shuffle(weights, kernel_size)


def correlation(first: torch.Tensor, second: torch.Tensor, max_displacement: int, stride: int = 2) -> torch.Tensor:
    """FlowNet2 correlation with kernel 1, pad = max_displacement, stride1 1 (the sites' auto-correlation).

    [B,C,H,W] x2 -> [B,D,H,W], D = (2*(md//stride)+1)^2, channel (j+r)(2r+1)+(i+r) holding
    mean_c first[c,y,x] * second[c, y+stride*j, x+stride*i] (zero outside), r = md//stride.
    """
    radius = max_displacement // stride
    height, width = first.shape[-2:]
    # The kernel accumulates in float32 whatever the input type; do the same for half inputs.
    work = torch.promote_types(first.dtype, torch.float32)
    first_w = first.to(work)
    padded = F.pad(second.to(work), (max_displacement,) * 4)
    planes = []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            oy, ox = max_displacement + dy * stride, max_displacement + dx * stride
            planes.append((first_w * padded[..., oy:oy + height, ox:ox + width]).mean(1))
    return torch.stack(planes, 1).to(first.dtype)
