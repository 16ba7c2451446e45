"""Extracts DWPose keypoints from image files, with the same core as the ComfyUI nodes: <name>.json (OpenPose JSON)
and <name>_pose.png (the skeleton) for each image."""
from __future__ import annotations

import argparse
import os

from PIL import Image

from ..models.images import read_image_file
from ..pose.dwpose import CHANNEL_ORDERS, NO_PERSON_MODES, PROVIDER_CHOICES, load_dwpose
from ..pose.formats import save_openpose_json
from ..pose.keypoints import SELECTIONS, PoseFrame, select_people
from ..pose.render import STYLES, render_controlnet_aux, render_pcdms
from . import models_dir

HINT = ("`python . download dwpose` fetches yolox_l.onnx and dw-ll_ucoco_384.onnx (Hugging Face yzd-v/DWPose) into the "
        "dwpose/ model folder.")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("pose", help="extract DWPose keypoints from images: <name>.json + <name>_pose.png",
                                 description=__doc__)
    parser.add_argument("images", nargs="+", help="image files (any format PIL reads; grayscale/RGBA are converted)")
    parser.add_argument("--out-dir", default=".", help="where to write the results (default: current folder)")
    parser.add_argument("--pose-model", default="dw-ll_ucoco_384.onnx",
                        help="file name in the dwpose model folder, or a path")
    parser.add_argument("--detector", default="yolox_l.onnx", help="file name or path; 'none' = whole image is one person")
    parser.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto")
    parser.add_argument("--detector-channels", choices=CHANNEL_ORDERS, default="BGR")
    parser.add_argument("--style", choices=STYLES, default="pcdms", help="drawing style of the PNG")
    parser.add_argument("--person", choices=SELECTIONS, default="all")
    parser.add_argument("--person-index", type=int, default=0)
    parser.add_argument("--no-person", choices=NO_PERSON_MODES, default="empty")
    parser.add_argument("--real-scores", action="store_true", help="write detector scores instead of 1.0")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    pose_path = models_dir.find(args, "dwpose", args.pose_model, hint=HINT)
    det_path = None if args.detector == "none" else models_dir.find(args, "dwpose", args.detector, hint=HINT)
    model = load_dwpose(pose_path, det_path, args.provider, args.detector_channels)
    os.makedirs(args.out_dir, exist_ok=True)
    for path in args.images:
        frame = model(read_image_file(path), args.no_person)
        frame = PoseFrame(frame.width, frame.height, select_people(frame.people, args.person, args.person_index))
        stem = os.path.join(args.out_dir, os.path.splitext(os.path.basename(path))[0])
        save_openpose_json([frame], stem + ".json", args.real_scores)
        render = render_pcdms if args.style == "pcdms" else render_controlnet_aux
        Image.fromarray(render(frame, frame.height, frame.width)).save(stem + "_pose.png")
        print(f"{path}: {len(frame.people)} people -> {stem}.json, {stem}_pose.png")
    return 0
