"""Trains or fine-tunes an SCFM model from a folder of photos with keypoints, on one process or many.

Data: one sub-folder per person, each image with its OpenPose keypoints in a .json of the same name (the pose command
writes them). Loss: the original's MSE + VB + GFLA's sampling-correctness loss on VGG19 features (--vgg,
torchvision's vgg19-dcbb9e9d.pth) + 0.0025 x its flow regularisation. The written OUT/<name>.safetensors (the EMA
weights) loads in the SCFM Loader node as is.
"""
from __future__ import annotations

import argparse
import json
import os

from ..models.images import FIT_MODES
from ..models.scfm.vgg import VGG19_URL
from . import models_dir, train_options


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "scfm-train", help="train or fine-tune SCFM (no weights were published; this is how you get some)",
        description=__doc__, epilog=train_options.LAUNCH.format(command="scfm-train"))
    parser.add_argument("data", help="folder of per-person sub-folders with images and .json keypoints")
    parser.add_argument("--init", help="fine-tune from this SCFM file (the original's last.pt, ours, or .safetensors); "
                                       "a bare name is looked up in the scfm model folder")
    parser.add_argument("--config", help="JSON file with SCFMConfig fields for a new model (default: the paper's 256 px model)")
    train_options.add_loop_options(parser, default_name="scfm", batch_flag="--batch-pairs",
                                   batch_help="image pairs per step, each used in both directions", batch_default=4)
    parser.add_argument("--vgg", help="torchvision's ImageNet VGG19 weights (vgg19-dcbb9e9d.pth from "
                                      f"{VGG19_URL}, or a .safetensors copy) for the correctness loss")
    parser.add_argument("--no-correctness", action="store_true",
                        help="train without the VGG19 correctness loss (no --vgg needed; not the paper's objective)")
    parser.add_argument("--lr", type=float, help="Adam learning rate; default 2e-5 (the original's)")
    parser.add_argument("--warmup", type=int, help="linear warm-up steps (from 4 %% of the rate); default "
                                                   "min(5000, steps/20)")
    parser.add_argument("--ema-decay", type=float, help="default min(0.9999, 1 - 10/steps): an average over about "
                                                        "the last tenth of the run")
    parser.add_argument("--fit", choices=FIT_MODES, default="stretch",
                        help="how images are put on the model square; default %(default)s (as the original's data)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..models.scfm import train

    if not args.vgg and not args.no_correctness:
        raise ValueError("SCFM's objective needs torchvision's ImageNet VGG19 weights for its correctness loss: "
                         f"download {VGG19_URL} and pass --vgg PATH, or pass --no-correctness to train without it.")
    settings = train.loop_settings(**train_options.loop_fields(args), lr=args.lr or train.ORIGINAL_LR,
                                   warmup=args.warmup, ema_decay=args.ema_decay)

    def prepare():
        from ..models.scfm.config import SCFMConfig
        from ..models.scfm.flow_losses import LAMBDA_CORRECTNESS
        from ..models.scfm.vgg import load_vgg19
        from .scfm_data import PairFolder

        config = None
        if args.config:
            with open(args.config, encoding="utf-8") as handle:
                fields = json.load(handle)
            config = SCFMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
        init = args.init
        if init and not os.path.isfile(init):
            init = models_dir.find(args, "scfm", init)
        vgg = None if args.no_correctness else load_vgg19(args.vgg)
        model = train.initial_model(init, config)
        objective = train.SCFMObjective(model, vgg,
                                        lambda_correctness=0.0 if args.no_correctness else LAMBDA_CORRECTNESS)
        return objective, PairFolder(args.data, model.config.image_size, args.fit), [vgg]

    return train_options.run(args, settings, args.name or "scfm", prepare)
