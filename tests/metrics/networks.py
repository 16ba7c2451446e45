"""Random metric networks in the real files' layouts, widths divided by `divisor` (1 = the real architecture)."""
from __future__ import annotations

import torch

# torchvision Inception3 widths: block -> [(conv name, out channels, kernel (h, w), takes the block input?)]
_A = [("branch1x1", 64, (1, 1)), ("branch5x5_1", 48, (1, 1)), ("branch5x5_2", 64, (5, 5)),
      ("branch3x3dbl_1", 64, (1, 1)), ("branch3x3dbl_2", 96, (3, 3)), ("branch3x3dbl_3", 96, (3, 3))]


def _scaled(channels: int, divisor: int) -> int:
    return max(1, channels // divisor)


def inception_weights(divisor: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with torchvision/pytorch-fid key names (and fc.*), every tensor random."""
    gen = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple[int, int, int, int]] = {}
    s = lambda c: _scaled(c, divisor)  # noqa: E731

    def conv(name: str, out: int, inp: int, kernel: tuple[int, int]) -> int:
        shapes[name] = (out, inp, *kernel)
        return out

    channels = 3
    for name, out, kernel in (("Conv2d_1a_3x3", 32, (3, 3)), ("Conv2d_2a_3x3", 32, (3, 3)),
                              ("Conv2d_2b_3x3", 64, (3, 3)), ("Conv2d_3b_1x1", 80, (1, 1)),
                              ("Conv2d_4a_3x3", 192, (3, 3))):
        channels = conv(name, s(out), channels, kernel)
    for block, pool in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
        c = channels
        conv(f"{block}.branch1x1", s(64), c, (1, 1))
        conv(f"{block}.branch5x5_2", s(64), conv(f"{block}.branch5x5_1", s(48), c, (1, 1)), (5, 5))
        d = conv(f"{block}.branch3x3dbl_2", s(96), conv(f"{block}.branch3x3dbl_1", s(64), c, (1, 1)), (3, 3))
        conv(f"{block}.branch3x3dbl_3", s(96), d, (3, 3))
        conv(f"{block}.branch_pool", s(pool), c, (1, 1))
        channels = s(64) + s(64) + s(96) + s(pool)
    c = channels
    conv("Mixed_6a.branch3x3", s(384), c, (3, 3))
    d = conv("Mixed_6a.branch3x3dbl_2", s(96), conv("Mixed_6a.branch3x3dbl_1", s(64), c, (1, 1)), (3, 3))
    conv("Mixed_6a.branch3x3dbl_3", s(96), d, (3, 3))
    channels = s(384) + s(96) + c
    for block, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        c, c7 = channels, s(c7)
        conv(f"{block}.branch1x1", s(192), c, (1, 1))
        conv(f"{block}.branch7x7_1", c7, c, (1, 1))
        conv(f"{block}.branch7x7_2", c7, c7, (1, 7))
        conv(f"{block}.branch7x7_3", s(192), c7, (7, 1))
        conv(f"{block}.branch7x7dbl_1", c7, c, (1, 1))
        for i, kernel in ((2, (7, 1)), (3, (1, 7)), (4, (7, 1))):
            conv(f"{block}.branch7x7dbl_{i}", c7, c7, kernel)
        conv(f"{block}.branch7x7dbl_5", s(192), c7, (1, 7))
        conv(f"{block}.branch_pool", s(192), c, (1, 1))
        channels = 4 * s(192)
    c = channels
    conv("Mixed_7a.branch3x3_2", s(320), conv("Mixed_7a.branch3x3_1", s(192), c, (1, 1)), (3, 3))
    b = conv("Mixed_7a.branch7x7x3_1", s(192), c, (1, 1))
    for i, kernel in ((2, (1, 7)), (3, (7, 1)), (4, (3, 3))):
        b = conv(f"Mixed_7a.branch7x7x3_{i}", s(192), b, kernel)
    channels = s(320) + s(192) + c
    for block in ("Mixed_7b", "Mixed_7c"):
        c = channels
        conv(f"{block}.branch1x1", s(320), c, (1, 1))
        b = conv(f"{block}.branch3x3_1", s(384), c, (1, 1))
        conv(f"{block}.branch3x3_2a", s(384), b, (1, 3))
        conv(f"{block}.branch3x3_2b", s(384), b, (3, 1))
        d = conv(f"{block}.branch3x3dbl_2", s(384), conv(f"{block}.branch3x3dbl_1", s(448), c, (1, 1)), (3, 3))
        conv(f"{block}.branch3x3dbl_3a", s(384), d, (1, 3))
        conv(f"{block}.branch3x3dbl_3b", s(384), d, (3, 1))
        conv(f"{block}.branch_pool", s(192), c, (1, 1))
        channels = s(320) + 4 * s(384) + s(192)
    weights = {}
    for name, shape in shapes.items():
        fan_in = shape[1] * shape[2] * shape[3]
        weights[f"{name}.conv.weight"] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        out = shape[0]
        weights[f"{name}.bn.weight"] = 1 + 0.1 * torch.randn(out, generator=gen)
        weights[f"{name}.bn.bias"] = 0.1 * torch.randn(out, generator=gen)
        weights[f"{name}.bn.running_mean"] = 0.1 * torch.randn(out, generator=gen)
        weights[f"{name}.bn.running_var"] = 0.5 + torch.rand(out, generator=gen)
    weights["fc.weight"] = torch.randn(1008, channels, generator=gen) * 0.01
    weights["fc.bias"] = torch.zeros(1008)
    return weights


ALEX = [(0, 64, 3, 11), (3, 192, 64, 5), (6, 384, 192, 3), (8, 256, 384, 3), (10, 256, 256, 3)]


def alexnet_weights(divisor: int = 8, seed: int = 1) -> dict[str, torch.Tensor]:
    """torchvision AlexNet `features.*` (+ a classifier entry to ignore), widths / divisor."""
    gen = torch.Generator().manual_seed(seed)
    weights, previous = {}, 3
    for index, out, _, kernel in ALEX:
        out = _scaled(out, divisor)
        weights[f"features.{index}.weight"] = torch.randn(out, previous, kernel, kernel, generator=gen) * 0.1
        weights[f"features.{index}.bias"] = torch.randn(out, generator=gen) * 0.1
        previous = out
    weights["classifier.1.weight"] = torch.zeros(2, 2)
    return weights


def lpips_linear_weights(divisor: int = 8, seed: int = 2) -> dict[str, torch.Tensor]:
    """lpips' alex.pth layout: `linK.model.1.weight` (1, C, 1, 1), non-negative like the trained ones."""
    gen = torch.Generator().manual_seed(seed)
    return {f"lin{k}.model.1.weight": torch.rand(1, _scaled(out, divisor), 1, 1, generator=gen)
            for k, (_, out, _, _) in enumerate(ALEX)}
