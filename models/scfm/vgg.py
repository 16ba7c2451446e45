"""VGG19 feature extractor for SCFM's sampling-correctness loss, in plain torch (no torchvision).

The original (GFLA `external_function.VGG19`) takes torchvision's ImageNet VGG19 `features` and reads its
ReLU outputs by name. Weights come from the common torchvision file (`vgg19-dcbb9e9d.pth`, keys
`features.N.weight/bias`; the `classifier.*` entries are ignored) through the pack's safe reader, so this
module keeps torchvision's layer indices and its state dict loads without renames. Channel widths are read
from the weights, so a scaled-down test file loads through the same path.

Inputs are used as the original feeds them: images in [-1, 1] with no ImageNet normalisation (GFLA does the
same); the features are a fixed measuring stick, never trained.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ..checkpoints import CheckpointError, load_strict, read_checkpoint

# torchvision's VGG19 "E" configuration: conv widths, "M" = 2x2 max-pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"


def _relu_names() -> dict[int, str]:
    """Index in `features` of each ReLU -> its name "relu{block}_{conv}" (relu1_1 ... relu5_4)."""
    names, block, conv, index = {}, 1, 0, 0
    for item in VGG19_LAYOUT:
        if item == "M":
            block, conv, index = block + 1, 0, index + 1
            continue
        conv += 1
        names[index + 1] = f"relu{block}_{conv}"
        index += 2
    return names


RELU_NAMES = _relu_names()
CONV_INDICES = tuple(i - 1 for i in RELU_NAMES)


class VGG19Features(nn.Module):
    """torchvision-layout `features` (conv/ReLU/max-pool at torchvision's indices) returning named ReLU outputs."""

    def __init__(self, widths: tuple[int, ...] | None = None):
        super().__init__()
        convs = [c for c in VGG19_LAYOUT if c != "M"]
        widths = tuple(widths or convs)
        if len(widths) != len(convs):
            raise ValueError(f"VGG19 has {len(convs)} convolutions, got {len(widths)} widths")
        layers: list[nn.Module] = []
        in_channels, conv = 3, 0
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers += [nn.Conv2d(in_channels, widths[conv], 3, padding=1), nn.ReLU(inplace=False)]
            in_channels, conv = widths[conv], conv + 1
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)

    def forward(self, image: torch.Tensor, up_to: str = "relu5_4") -> dict[str, torch.Tensor]:
        """image [B,3,H,W] (the original feeds [-1,1] as is) -> {"relu1_1": ..., ..., `up_to`}."""
        out, x = {}, image
        for index, layer in enumerate(self.features):
            x = layer(x)
            name = RELU_NAMES.get(index)
            if name is not None:
                out[name] = x
                if name == up_to:
                    break
        return out


def load_vgg19(path: str | os.PathLike) -> VGG19Features:
    """The torchvision VGG19 file (or any file with its `features.N.*` keys) -> frozen, eval-mode features."""
    checkpoint = read_checkpoint(path)
    state = {k: v for k, v in checkpoint.state_dict.items() if k.startswith("features.")}
    missing = [f"features.{i}.weight" for i in CONV_INDICES if f"features.{i}.weight" not in state]
    if missing:
        raise CheckpointError(
            f"{path} is not a VGG19 file: {len(missing)} of its 16 convolution weights are missing "
            f"(e.g. {missing[0]}); "
            f"its first keys are {', '.join(list(checkpoint.state_dict)[:4])}. SCFM's correctness loss needs "
            f"torchvision's ImageNet VGG19 weights, e.g. {VGG19_URL}.")
    widths = tuple(int(state[f"features.{i}.weight"].shape[0]) for i in CONV_INDICES)
    model = VGG19Features(widths)
    load_strict(model, state, source=os.fspath(path))
    return model.eval()
