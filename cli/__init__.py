"""Command line of the pack: thin over the same core as the nodes (`python <pack dir> --help`)."""
from __future__ import annotations

import argparse
import logging
import sys

from ..errors import PoseTransferError
from ..model_files.hub import DownloadError
from . import batch, convert, download, evaluate, models_dir, pcdm, pcdm_train, pose, scfm_train

FAMILIES = (convert, pose, pcdm, scfm_train, download, batch, evaluate, pcdm_train)


class ParagraphFormatter(argparse.HelpFormatter):
    """Rewraps a command's description (its module docstring) to the terminal paragraph by paragraph, keeping the
    blank lines between paragraphs that the default formatter runs together."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        return "\n\n".join(fill(paragraph, width, indent) for paragraph in text.strip().split("\n\n"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python ComfyUI-PoseTransfer",
        description="Pose-guided person image synthesis (PCDMs, SCFM) and DWPose extraction, without ComfyUI.")
    models_dir.add_option(parser, top_level=True)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for family in FAMILIES:
        family.register(commands)
    for command in set(commands.choices.values()):  # every command, also those registered elsewhere
        command.formatter_class = ParagraphFormatter
        if "--models-dir" not in command._option_string_actions:
            models_dir.add_option(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except (PoseTransferError, DownloadError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
