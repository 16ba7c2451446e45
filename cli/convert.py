"""Rewrites an original checkpoint (PCDMs, SCFM, VAE, DINOv2 or CLIP vision) as a safetensors file whose metadata
names its kind; every loader reads it as it read the original."""
from __future__ import annotations

import argparse

from ..models.convert import convert_to_safetensors


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("convert", help="rewrite an original .pt/.pth/.bin/.ckpt model file as safetensors",
                                 description=__doc__)
    parser.add_argument("source", help="the original file (PCDMs, SCFM, VAE, DINOv2 or CLIP vision)")
    parser.add_argument("destination", nargs="?", help="output path (default: the source with a .safetensors suffix)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing destination file")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    written = convert_to_safetensors(args.source, args.destination, overwrite=args.overwrite)
    print(written)
    return 0
