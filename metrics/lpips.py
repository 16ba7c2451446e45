"""LPIPS (v0.1, AlexNet) as the `lpips` package computes it, built here from two local weight files.

Both papers call `lpips.LPIPS(net='alex')`: torchvision's ImageNet AlexNet features (`alexnet-owt-7be5be79.pth`,
keys `features.N.*`) and the package's learned per-channel weights (`lpips/weights/v0.1/alex.pth`, keys
`linK.model.1.weight`). Both files are read through the pack's safe reader; one file holding both (an `LPIPS`
module's state dict: `net.sliceK.N.*` + `linK.model.1.weight`) works too. Widths come from the weights.

distance = sum over the 5 ReLU outputs of mean_hw( w_k . (f0/|f0| - f1/|f1|)^2 ), inputs first shifted and
scaled by the package's ScalingLayer. The package expects inputs in -1..1.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

# lpips.pretrained_networks.alexnet: conv index in torchvision's `features` -> (stride, padding)
ALEX_CONVS = {0: (4, 2), 3: (1, 2), 6: (1, 1), 8: (1, 1), 10: (1, 1)}
SHIFT = (-0.030, -0.088, -0.188)  # lpips.ScalingLayer
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10  # lpips.normalize_tensor
# LPIPS's `net.sliceK.N` holds torchvision's `features.N`
_SLICE_KEY = re.compile(r"^net\.slice\d\.(\d+)\.(weight|bias)$")


class AlexLpips(nn.Module):
    """LPIPS distance between batches of images [B,3,H,W] in -1..1 -> (B,)."""

    def __init__(self, features: Mapping[str, torch.Tensor], linear: Mapping[str, torch.Tensor]):
        super().__init__()
        self.convs = nn.ModuleList()
        for index, (stride, padding) in ALEX_CONVS.items():
            out_ch, in_ch, k, _ = features[f"{index}.weight"].shape
            conv = nn.Conv2d(in_ch, out_ch, k, stride=stride, padding=padding)
            conv.load_state_dict({"weight": features[f"{index}.weight"], "bias": features[f"{index}.bias"]})
            self.convs.append(conv)
        self.lins = nn.ModuleList()
        for k, conv in enumerate(self.convs):
            weight = linear[f"lin{k}"]
            if weight.shape != (1, conv.out_channels, 1, 1):
                raise ValueError(f"LPIPS linear layer lin{k} has shape {tuple(weight.shape)}, expected "
                                 f"(1, {conv.out_channels}, 1, 1) for the AlexNet features given")
            lin = nn.Conv2d(conv.out_channels, 1, 1, bias=False)
            lin.weight.data.copy_(weight)
            self.lins.append(lin)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU outputs (relu1..relu5 of torchvision's AlexNet), max pools after the 1st and 2nd."""
        outputs = []
        for index, conv in enumerate(self.convs):
            if index in (1, 2):
                x = F.max_pool2d(x, 3, stride=2)
            x = F.relu(conv(x))
            outputs.append(x)
        return outputs

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for lin, f0, f1 in zip(self.lins, self.features((first - self.shift) / self.scale),
                               self.features((second - self.shift) / self.scale)):
            f0 = f0 / (f0.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
            f1 = f1 / (f1.pow(2).sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
            total = total + lin((f0 - f1) ** 2).mean(dim=(2, 3))
        return total.flatten()


def _split(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Any of the accepted files -> (`N.weight`/`N.bias` AlexNet features, `linK` weights)."""
    features, linear = {}, {}
    for key, value in state_dict.items():
        if key.startswith("features."):
            features[key[len("features."):]] = value
        elif match := _SLICE_KEY.match(key):
            features[f"{match.group(1)}.{match.group(2)}"] = value
        elif match := re.match(r"^(lin\d)\.(model\.1\.)?weight$", key):
            linear[match.group(1)] = value
    return features, linear


def load_lpips(backbone_path: str, linear_path: str | None = None) -> AlexLpips:
    """LPIPS-alex from torchvision's AlexNet file + lpips' alex.pth (or one file holding both)."""
    from ..models.checkpoints import CheckpointError, read_checkpoint

    features, linear = _split(read_checkpoint(backbone_path).state_dict)
    if linear_path:
        more_features, more_linear = _split(read_checkpoint(linear_path).state_dict)
        features, linear = {**more_features, **features}, {**linear, **more_linear}
    missing_convs = [i for i in ALEX_CONVS if f"{i}.weight" not in features]
    missing_lins = [f"lin{k}" for k in range(len(ALEX_CONVS)) if f"lin{k}" not in linear]
    if missing_convs or missing_lins:
        files = backbone_path + (f" + {linear_path}" if linear_path else "")
        raise CheckpointError(
            f"{files}: LPIPS-alex needs AlexNet conv weights features.{{0,3,6,8,10}} and lin0..lin4; missing "
            f"{[f'features.{i}' for i in missing_convs] + missing_lins}. Give torchvision's alexnet-owt-7be5be79.pth "
            "(--lpips-backbone) and the lpips package's weights/v0.1/alex.pth (--lpips-weights).")
    return AlexLpips(features, linear).eval().requires_grad_(False)
