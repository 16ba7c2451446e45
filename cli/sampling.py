"""The sampling options of the commands that run PCDMs or SCFM: `--steps`, `--guidance`, `--scheduler`, `--seed`,
`--resolution`, declared once with the defaults of each method."""
from __future__ import annotations

import argparse
from typing import Any, Mapping

from ..models.pcdm.schedulers import SCHEDULERS

Defaults = Mapping[str, Mapping[str, Any]]  # method -> {"steps": ..., "guidance": ..., "scheduler": ..., "seed": ...}


def _said(defaults: Defaults, key: str) -> str:
    """How the help states the default of `key`: one value, or each method's."""
    values = {method: given[key] for method, given in defaults.items() if given.get(key) is not None}
    if len(set(values.values())) == 1:
        return f"default {next(iter(values.values()))}"
    return "default: " + ", ".join(f"{method} {value}" for method, value in values.items())


def add_options(parser: argparse.ArgumentParser, defaults: Defaults) -> None:
    """Add the sampling options. With one method its values are the options' defaults; with several (batch) the
    options default to None and the command fills in those of the method it runs; the help lists them either way."""
    only = next(iter(defaults.values())) if len(defaults) == 1 else {}
    parser.add_argument("--steps", type=int, default=only.get("steps"),
                        help=f"denoising steps ({_said(defaults, 'steps')})")
    parser.add_argument("--guidance", type=float, default=only.get("guidance"),
                        help=f"guidance scale ({_said(defaults, 'guidance')})")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=only.get("scheduler"),
                        help=f"PCDMs sampler ({_said(defaults, 'scheduler')})")
    parser.add_argument("--seed", type=int, default=only.get("seed"),
                        help=f"noise seed; image i uses seed + i ({_said(defaults, 'seed')})")
    parser.add_argument("--resolution", type=int, default=512,
                        help="PCDMs model square side (default 512; 256 for the 256 models)")
