"""Precision names of the nodes' and the command line's `precision` inputs, and the dtype each one means."""
from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def precision_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of `precision` on `device`; "auto" is fp16 on an accelerator (the originals' inference precision)
    and fp32 on the CPU. Inside ComfyUI the adapter lets ComfyUI decide "auto" instead."""
    if precision in DTYPES:
        return DTYPES[precision]
    if precision != "auto":
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return torch.float32 if torch.device(device).type == "cpu" else torch.float16
