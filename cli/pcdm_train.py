"""Trains or fine-tunes one PCDMs stage (1 prior, 2 inpainting, 3 refiner), on one process or many (Accelerate /
torchrun / Slurm). The written OUT/<name>.safetensors loads in the PCDMs loader nodes as is.
"""
from __future__ import annotations

import argparse
import os

import torch

from . import train_options

PRECISION_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "pcdm-train", help="train or fine-tune a PCDMs stage (1 prior, 2 inpainting, 3 refiner)",
        description=__doc__, epilog=train_options.LAUNCH.format(command="pcdm-train"))
    parser.add_argument("--stage", type=int, choices=(1, 2, 3), required=True)
    parser.add_argument("data", help="a folder of people (sub-folder per person: photos + <stem>_pose.png or "
                                     "<stem>.json), or the original train_data.json (with --image-root)")
    parser.add_argument("--image-root",
                        help="image root of the original layout (train_data.json entries are relative to it)")
    parser.add_argument("--coarse", help="stage 3: folder of stage-2 results named '{source}_to_{target}.png'")
    parser.add_argument("--init", required=True,
                        help="checkpoint to start from: an original PCDMs file (PCDMs_ckpt.pt, s2_512.pt, s1_512.pt, "
                             "s3_512.pt...) or ours; for stage 2 also a diffusers UNet folder (config.json + "
                             "diffusion_pytorch_model.safetensors, or a stable-diffusion-2-1-base download with "
                             "unet/): a new full stage 2 from it, as the original script starts (needs --clip)")
    parser.add_argument("--vae", help="SD 2.1 VAE file (stages 2, 3)")
    parser.add_argument("--dino", help="DINOv2-giant file (stages 2, 3)")
    parser.add_argument("--clip", help="CLIP ViT-H/14 vision file with projection (stage 1; full stage-2 model)")
    train_options.add_loop_options(parser, default_name="pcdm_stage<N>", batch_flag="--batch-size",
                                   batch_help="training items", batch_default=1)
    parser.add_argument("--size", type=int, default=512, help="model square side; default %(default)s")
    parser.add_argument("--lr", type=float, help="default: the original script's (stage 1: 1e-5, 2: 1e-4, 3: 1e-5); "
                                                 "1e-5 is a safer start for fine-tuning stage 2 on a few photos")
    parser.add_argument("--warmup", type=int, default=0, help="linear warm-up steps (the scripts have none); "
                                                              "default %(default)s")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory (UNet stages)")
    parser.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                        help="keep an EMA of the weights with this decay and publish it (e.g. 0.999); default off, "
                             "as the scripts")
    parser.add_argument("--noise-offset", type=float, default=0.1, help="default %(default)s (the scripts')")
    parser.add_argument("--pose-convention", default="fraction", help="stage 1 from JSON keypoints: the coordinate "
                                                                      "convention of the prior; default %(default)s")
    parser.set_defaults(func=_run)


def build_objective(stage: int, init: str, *, vae: str | None = None, dino: str | None = None,
                    clip: str | None = None, precision: str = "no", noise_offset: float = 0.1):
    """The stage's objective with its trainable model read from `init` and the frozen encoders loaded."""
    from ..models.pcdm import train as objectives

    frozen = PRECISION_DTYPES[precision]

    def need(path: str | None, what: str, flag: str) -> str:
        if not path:
            raise ValueError(f"stage {stage} needs {what}: pass {flag}")
        return path

    if stage == 1:
        from ..models.encoders import load_clip_vision
        from ..models.pcdm.stages import load_prior

        clip_model = load_clip_vision(need(clip, "CLIP ViT-H/14", "--clip")).to(frozen)
        return objectives.Stage1Objective(load_prior(init), clip_model, noise_offset=noise_offset)
    from ..models.encoders import load_dinov2
    from ..models.vae import load_vae

    vae_model = load_vae(need(vae, "the SD 2.1 VAE", "--vae")).to(frozen)
    dino_model = load_dinov2(need(dino, "DINOv2-giant", "--dino")).to(frozen)
    if stage == 2:
        from ..models.encoders import load_clip_vision
        from ..models.pcdm.stages import load_pcdm_checkpoint, new_stage2_from_unet

        if os.path.isdir(init):  # SD2.1-base's UNet, as run_stage2.sh starts
            clip_model = load_clip_vision(need(clip, "CLIP ViT-H/14 (a new full model)", "--clip")).to(frozen)
            model = new_stage2_from_unet(init, image_dim=dino_model.config.hidden_size,
                                         embed_dim=clip_model.config.projection_dim)
        else:
            model = load_pcdm_checkpoint(init, dtype=torch.float32)
            clip_model = load_clip_vision(clip).to(frozen) if (model.is_full and clip) else None
        return objectives.Stage2Objective(model, vae_model, dino_model, clip_model, noise_offset=noise_offset)
    from ..models.pcdm.stages import load_refiner

    return objectives.Stage3Objective(load_refiner(init, dtype=torch.float32), vae_model, dino_model,
                                      noise_offset=noise_offset)


def _run(args: argparse.Namespace) -> int:
    from ..models.pcdm.train import STAGE_LR
    from ..models.training import LoopSettings
    from . import train_data

    settings = LoopSettings(**train_options.loop_fields(args), lr=args.lr or STAGE_LR[args.stage], warmup=args.warmup,
                            gradient_checkpointing=args.gradient_checkpointing, ema_decay=args.ema or None)

    def prepare():
        if args.data.endswith(".json"):
            if not args.image_root:
                raise ValueError("the original layout needs --image-root (the folder train_data.json's paths start "
                                 "from)")
            dataset = train_data.original_layout(args.data, args.image_root, args.stage, args.size, args.coarse)
        else:
            dataset = train_data.people_folder(args.data, args.stage, args.size, args.coarse, args.pose_convention)
        objective = build_objective(args.stage, args.init, vae=args.vae, dino=args.dino, clip=args.clip,
                                    precision=args.mixed_precision, noise_offset=args.noise_offset)
        frozen = [getattr(objective, name, None) for name in ("vae", "dino", "clip")]
        return objective, dataset, frozen

    return train_options.run(args, settings, args.name or f"pcdm_stage{args.stage}", prepare)
