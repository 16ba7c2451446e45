"""Command line of the pack: thin over the same core as the nodes (`python <pack dir> --help`)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from ..models.checkpoints import CheckpointError
from . import convert, pcdm, pose, scfm

FAMILIES = (convert, pose, pcdm, scfm)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python ComfyUI-PoseTransfer",
        description="Pose-guided person image synthesis (PCDMs, SCFM) and DWPose extraction, without ComfyUI.")
    parser.add_argument("--models-dir", help="root holding the model folders (pcdms/, scfm/, dwpose/, clip_vision/, vae/); "
                                             "default: $POSETRANSFER_MODELS_DIR or ./models")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for family in FAMILIES:
        family.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if args.models_dir:
        os.environ["POSETRANSFER_MODELS_DIR"] = os.path.abspath(args.models_dir)
    try:
        return args.func(args)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
