"""The command line's default torch device."""
from __future__ import annotations

import torch


def default_device() -> torch.device:
    """The available accelerator (CUDA, MPS, XPU, ...), else the CPU."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        return accelerator.current_accelerator()
    return torch.device("cpu")
