"""The one noise helper: seeded, device-independent initial noise (ARCHITECTURE.md decision 6)."""
from __future__ import annotations

import torch


def seeded_noise(shape: tuple[int, ...], seed: int, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, per_item: bool = True) -> torch.Tensor:
    """Standard normal noise of `shape` = (B, ...) drawn in float32 on a CPU generator, then moved.

    With `per_item`, batch item i is drawn from its own generator seeded `seed + i`, so an image does not
    change when the batch around it does; otherwise one generator seeded `seed` draws the whole batch
    (what the original SCFM and diffusers pipelines do).
    """
    if per_item:
        items = [torch.randn(shape[1:], generator=torch.Generator("cpu").manual_seed(seed + i), dtype=torch.float32)
                 for i in range(shape[0])]
        noise = torch.stack(items) if items else torch.empty(shape)
    else:
        noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)
