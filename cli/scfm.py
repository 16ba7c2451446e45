"""`scfm-train`: train or fine-tune an SCFM model from a folder of photos with keypoints."""
from __future__ import annotations

import argparse
import json
import logging
import os

from ..models.images import FIT_MODES
from ..models.scfm.config import SCFMConfig
from ..models.scfm.train import TrainSettings, train
from ..models.scfm.vgg import VGG19_URL, load_vgg19
from . import models_dir
from .devices import default_device
from .scfm_data import PairFolder

logger = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    defaults = TrainSettings()
    parser = commands.add_parser(
        "scfm-train", help="train or fine-tune SCFM (no weights were published; this is how you get some)",
        description="Data: one sub-folder per person, each image with its OpenPose keypoints in a .json of the same name "
                    "(the `pose` command writes them). Loss: the original's MSE + VB + GFLA's sampling-correctness loss "
                    "on VGG19 features (--vgg, torchvision's vgg19-dcbb9e9d.pth) + 0.0025 x its flow regularisation. "
                    "Resumes from OUT if it exists.")
    parser.add_argument("data", help="folder of per-person sub-folders with images and .json keypoints")
    parser.add_argument("--out", default="scfm_last.pt", help="checkpoint to write (and resume from); default %(default)s")
    parser.add_argument("--init", help="fine-tune from this SCFM file (the original's last.pt, ours, or .safetensors); "
                                       "a bare name is looked up in the scfm model folder")
    parser.add_argument("--config", help="JSON file with SCFMConfig fields for a new model (default: the paper's 256 px model)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="total steps to reach; default %(default)s")
    parser.add_argument("--batch-pairs", type=int, default=defaults.batch_pairs,
                        help="image pairs per step, each used in both directions; default %(default)s")
    parser.add_argument("--vgg", help="torchvision's ImageNet VGG19 weights (vgg19-dcbb9e9d.pth from "
                                      f"{VGG19_URL}, or a .safetensors copy) for the correctness loss")
    parser.add_argument("--no-correctness", action="store_true",
                        help="train without the VGG19 correctness loss (no --vgg needed; not the paper's objective)")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate; default %(default)s")
    parser.add_argument("--warmup", type=int, help="linear warm-up steps; default min(5000, steps/20)")
    parser.add_argument("--ema-decay", type=float, help="default min(0.9999, 1 - 10/steps): an average over about "
                                                        "the last tenth of the run")
    parser.add_argument("--save-every", type=int, default=defaults.save_every, help="default %(default)s")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--fit", choices=FIT_MODES, default=defaults.fit_mode,
                        help="how images are put on the model square; default %(default)s (as the original's data)")
    parser.add_argument("--device", help="torch device, e.g. cuda:0 (default: the available accelerator, else cpu)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    config = None
    if args.config:
        with open(args.config, encoding="utf-8") as handle:
            fields = json.load(handle)
        config = SCFMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    init = args.init
    if init and not os.path.isfile(init):
        init = models_dir.find(args, "scfm", init)
    settings = TrainSettings(steps=args.steps, batch_pairs=args.batch_pairs, lr=args.lr, warmup=args.warmup,
                             ema_decay=args.ema_decay, save_every=args.save_every, seed=args.seed, fit_mode=args.fit,
                             lambda_correctness=0.0 if args.no_correctness else TrainSettings.lambda_correctness)
    if not args.vgg and not args.no_correctness:
        raise ValueError("SCFM's objective needs torchvision's ImageNet VGG19 weights for its correctness loss: "
                         f"download {VGG19_URL} and pass --vgg PATH, or pass --no-correctness to train without it.")
    vgg = load_vgg19(args.vgg) if args.vgg and not args.no_correctness else None

    def log(step: int, losses: dict[str, float]) -> None:
        logger.info("step %d  " + "  ".join(f"{k} %.5f" for k in losses), step, *losses.values())

    out = train(PairFolder(args.data), args.out, settings=settings, init=init, config=config,
                device=args.device or default_device(), vgg=vgg, log=log)
    print(out)
    return 0
