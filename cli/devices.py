"""The command line's torch device and weight precision: `--device`, `--precision`."""
from __future__ import annotations

import argparse

import torch

from ..models.precision import PRECISIONS

DEVICE_HELP = "torch device (default: the available accelerator, else cpu)"


def default_device() -> torch.device:
    """The available accelerator (CUDA, MPS, XPU, ...), else the CPU."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        return accelerator.current_accelerator()
    return torch.device("cpu")


def chosen_device(name: str | None) -> torch.device:
    """The `--device` given, else `default_device()`."""
    return torch.device(name) if name else default_device()


def add_options(parser: argparse.ArgumentParser, precision_help: str) -> None:
    """`--precision` (`precision_help` says what auto picks for this command) and `--device`."""
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=precision_help)
    parser.add_argument("--device", help=DEVICE_HELP)
