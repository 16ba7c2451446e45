"""What the training commands share: the loop's options and one run on the pack's training loop
(`models/training.py`), the same on one process and under `accelerate launch` / `torchrun` / `srun`."""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Callable, Iterable, Sequence

from torch import nn

logger = logging.getLogger(__name__)

LAUNCH = ("Same command for one process (python) and many: `accelerate launch [--multi_gpu] [--num_processes N] "
          "[--num_machines M ...] [--use_deepspeed --zero_stage 2] <pack>/__main__.py {command} ...` or `torchrun "
          "... <pack>/__main__.py {command} ...`. Only the main process writes. Resumes from OUT/state when it "
          "exists.")


def add_loop_options(parser: argparse.ArgumentParser, *, default_name: str, batch_flag: str, batch_help: str,
                     batch_default: int) -> None:
    """Output, run length, batch, precision, saving and device options of every training command."""
    parser.add_argument("--out", required=True, help="output folder (weights, state for resuming, loss.jsonl, samples)")
    parser.add_argument("--name", help=f"weights file name; default {default_name}")
    parser.add_argument("--steps", type=int, default=1000, help="total optimizer steps to reach; default %(default)s")
    parser.add_argument(batch_flag, type=int, default=batch_default, dest="batch", metavar="N",
                        help=f"{batch_help}, per process; default %(default)s")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps; default %(default)s")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no",
                        help="autocast with float32 master weights: bf16 on CPUs and GPUs, fp16 on GPUs (with a "
                             "gradient scaler); default %(default)s")
    parser.add_argument("--save-every", type=int, default=500, help="default %(default)s")
    parser.add_argument("--sample-every", type=int, default=0, help="write a sample sheet every N steps (OUT/samples); "
                                                                    "default off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")


def loop_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The `LoopSettings` fields `add_loop_options` set."""
    return dict(steps=args.steps, batch_size=args.batch, gradient_accumulation=args.grad_accum,
                mixed_precision=args.mixed_precision, save_every=args.save_every, sample_every=args.sample_every,
                seed=args.seed)


def run(args: argparse.Namespace, settings: Any, name: str,
        prepare: Callable[[], tuple[Any, Sequence[Any], Iterable[nn.Module | None]]]) -> int:
    """Train: the accelerator first (it checks the precision before anything heavy loads), then
    `prepare()` -> (objective, dataset, frozen models to move to this process's device), then the loop."""
    from ..models.training import make_accelerator, train_loop

    accelerator = make_accelerator(settings, cpu=True if args.cpu else None)
    objective, dataset, frozen = prepare()
    for model in frozen:
        if model is not None:
            model.to(accelerator.device)

    def log(step: int, values: dict[str, float]) -> None:
        logger.info("step %d  " + "  ".join(f"{k} %.6g" for k in values), step, *values.values())

    weights = train_loop(objective, dataset, settings, args.out, name=name, accelerator=accelerator, log=log)
    if accelerator.is_main_process:
        print(os.fspath(weights))
    return 0
