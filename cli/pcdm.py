"""PCDMs from image files: a photo of the person and a target pose in, the person in that pose out."""
from __future__ import annotations

import argparse
import logging
import os

import torch
from PIL import Image

from ..models.encoders import load_dinov2
from ..models.images import FIT_MODES, from_uint8, read_image, to_uint8
from ..models.pcdm.inpaint import InpaintSettings, inpaint
from ..models.pcdm.stages import load_pcdm_checkpoint
from ..models.precision import precision_dtype
from ..models.vae import load_vae
from ..pose.conditions import pcdms_renders, source_pose_renders
from ..pose.dwpose import load_dwpose
from ..pose.formats import load_openpose_json, require_people
from . import devices, models_dir, sampling

log = logging.getLogger(__name__)

# option -> catalogue file (model_files/catalogue.py)
MODEL_FILES = {"pcdm": "pcdms", "dinov2": "dinov2", "vae": "vae", "dwpose": "dwpose_pose", "detector": "dwpose_detector"}
SAMPLING = dict(steps=50, guidance=2.0, scheduler="ddim", seed=0)  # the simplified model's demo


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("transfer", help="PCDMs: repose the person of a photo to a target pose",
                                 description=__doc__)
    parser.add_argument("source", help="photo of the person (any image file)")
    parser.add_argument("target_pose", help="target pose: a rendered pose image, or an OpenPose JSON file "
                                            "(several frames give several outputs)")
    parser.add_argument("output", help="output image path; with several poses, _0000, _0001, ... are appended")
    parser.add_argument("--source-pose", help="pose render or OpenPose JSON of the source (default: extracted with "
                                              "DWPose from models/dwpose)")
    models_dir.add_file_options(parser, MODEL_FILES)
    sampling.add_options(parser, {"transfer": SAMPLING})
    parser.add_argument("--fit", choices=FIT_MODES, default="pad", help="non-square images: pad, crop or stretch")
    devices.add_options(parser, "auto: fp16 on an accelerator (as the original), fp32 on CPU")
    parser.add_argument("--canvas", action="store_true", help="also save the whole [source | result] canvas")
    parser.set_defaults(func=_run)


def find_model_files(args: argparse.Namespace, extract_source_pose: bool) -> dict[str, str]:
    """Resolve every needed model file; one error lists all missing ones, the folders searched and where to get each."""
    needed = {option: key for option, key in MODEL_FILES.items()
              if extract_source_pose or option not in ("dwpose", "detector")}
    return models_dir.find_options(args, needed, family="pcdms")


def read_pose(path: str, height: int | None = None, width: int | None = None, what: str = "pose") -> torch.Tensor:
    """A pose render (image) or an OpenPose JSON (drawn in PCDMs' style) -> [B,3,H,W] 0..1. A JSON target pose
    must hold a person in every frame."""
    if not path.lower().endswith(".json"):
        return read_image(path, what)
    frames = load_openpose_json(path)
    if what == "target pose":
        require_people(frames, f"{what} {path}")
    return from_uint8(pcdms_renders(frames, height or frames[0].height, width or frames[0].width))


def _run(args: argparse.Namespace) -> int:
    files = find_model_files(args, extract_source_pose=args.source_pose is None)
    source = read_image(args.source, "source image")
    target = read_pose(args.target_pose, what="target pose")
    if args.source_pose:
        source_pose = read_pose(args.source_pose, *source.shape[-2:], what="source pose")
    else:
        dwpose = load_dwpose(files["dwpose"], files["detector"])
        source_pose = from_uint8(source_pose_renders(dwpose, list(to_uint8(source))))
    device = devices.chosen_device(args.device)
    dtype = precision_dtype(args.precision, device)
    model = load_pcdm_checkpoint(files["pcdm"], dtype).to(device)
    dino = load_dinov2(files["dinov2"]).to(device=device, dtype=dtype)
    vae = load_vae(files["vae"]).to(device=device, dtype=dtype)
    settings = InpaintSettings(steps=args.steps, guidance_scale=args.guidance, scheduler=args.scheduler,
                               seed=args.seed, fit=args.fit, size=args.resolution)
    result = inpaint(model, vae, dino, source, source_pose, target, settings,
                     progress=lambda step, total: log.info("step %d/%d", step, total))
    stem, suffix = os.path.splitext(args.output)
    for i in range(result.images.shape[0]):
        name = args.output if result.images.shape[0] == 1 else f"{stem}_{i:04d}{suffix}"
        Image.fromarray(to_uint8(result.images[i])).save(name)
        print(name)
        if args.canvas:
            Image.fromarray(to_uint8(result.canvas[i])).save(f"{os.path.splitext(name)[0]}_canvas{suffix}")
    return 0
