"""Runs PCDMs (simplified or three stages) or SCFM over a test-pair list in the originals' formats, as the papers'
test scripts did, and writes each result under the name the original script gave it.

Built for array jobs of an existing scheduler (Slurm, Kubernetes, Ray): --shard I/N takes every N-th pair,
finished outputs are skipped (a re-run resumes), a failing pair is logged and the run goes on, and the models
are loaded once per process. Pair i is seeded seed + i (its place in the whole list), so the images do not
depend on how the list was sharded.
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..errors import ImageInputError
from ..models.images import FIT_MODES, from_uint8, pil_resize, read_image, read_image_file, to_uint8
from ..models.precision import precision_dtype
from . import devices, models_dir, pair_lists, sampling
from .pair_lists import Pair
from .pose_files import prior_coordinates, render_pose, scfm_pose
from .sheets import contact_sheet

log = logging.getLogger(__name__)

PATHS = ("pcdm", "pcdm3", "scfm")
# Sampling defaults per path: the simplified model's demo, the paper's stage scripts (UniPC 20, guidance 2, seed
# 42), SCFM's inference.py (DDIM 50, guidance 2).
DEFAULTS = {"pcdm": dict(steps=50, scheduler="ddim", guidance=2.0, seed=42),
            "pcdm3": dict(steps=20, scheduler="unipc", guidance=2.0, seed=42),
            "scfm": dict(steps=50, scheduler=None, guidance=2.0, seed=42)}
# option -> catalogue file (model_files/catalogue.py)
MODEL_OPTIONS = {"pcdm": "pcdms", "prior": "pcdms_prior", "stage2": "pcdms_inpaint", "refiner": "pcdms_refine",
                 "clip": "clip_h", "dinov2": "dinov2", "vae": "vae", "dwpose": "dwpose_pose",
                 "detector": "dwpose_detector", "scfm": "scfm"}
PRIOR_CANVAS = 512  # stage 1 resized the source to 512 x 512 before CLIP's own preprocessing


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "batch", help="run a method over a test-pair list (sharded, resumable), outputs named as the originals",
        description=__doc__)
    parser.add_argument("path", choices=PATHS, help="pcdm: simplified PCDMs (PCDMs_ckpt.pt); pcdm3: the paper's three "
                                                    "stages (prior -> full inpaint -> refine); scfm: SCFM")
    parser.add_argument("pairs", help="pair list: PCDMs test_data.json, GFLA/PIDM test_pairs.txt (SCFM's), or a CSV "
                                      "source,target_pose,output[,source_pose[,ground_truth]]")
    parser.add_argument("out_dir", help="folder for the results (created)")
    parser.add_argument("--format", choices=pair_lists.FORMATS, default="auto", help="list format (default: by extension)")
    parser.add_argument("--img-dir", metavar="DIR", help="test_data.json: folder of the images (the original's "
                                                         "--img_path)")
    parser.add_argument("--pose-dir", metavar="DIR", help="test_data.json: folder of the <name>_pose.jpg renders "
                                                          "(--pose_path)")
    parser.add_argument("--prior-pose-dir", metavar="DIR", help="test_data.json, pcdm3: folder of the stage-1 "
                                                                "<name>.txt coordinates (normalized_pose_txt)")
    parser.add_argument("--dataset", metavar="DIR", help="test_pairs.txt: dataset root holding img/ and pose/ "
                                                         "(default: the list's folder)")
    parser.add_argument("--shard", metavar="I/N", help="this process takes pairs I, I+N, I+2N, ... (0 <= I < N), e.g. "
                                                       "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT")
    parser.add_argument("--output-size", choices=("auto", "model", "native"), default="auto",
                        help="model: the model's square, as the original scripts saved it; native: the target pose's "
                             "size (PCDMs) or the source's (SCFM). auto: model for the papers' lists, native for CSV")
    parser.add_argument("--fit", choices=("auto", *FIT_MODES), default="auto",
                        help="how images reach the square; auto: stretch (the originals') for their lists, pad for CSV")
    sampling.add_options(parser, DEFAULTS)
    parser.add_argument("--prior-steps", type=int, default=20, help="pcdm3: stage-1 steps (20)")
    parser.add_argument("--prior-guidance", type=float, default=0.0, help="pcdm3: stage-1 guidance (0, the original)")
    parser.add_argument("--pose-convention", default="fraction",
                        help="pcdm3 without --prior-pose-dir: how keypoints become the prior's 36 numbers")
    parser.add_argument("--paper-rescale", action="store_true",
                        help="pcdm3: stage-3 guidance rescale 2.0 as the paper's script (default 0 = plain guidance)")
    parser.add_argument("--keep-stages", action="store_true",
                        help="pcdm3: also write stage1/<name>.npy embeddings and stage2/<name> coarse images")
    models_dir.add_file_options(parser, MODEL_OPTIONS)
    devices.add_options(parser, "auto: fp16 on an accelerator for PCDMs (as the original), fp32 otherwise")
    parser.add_argument("--sheet", metavar="DIR", help="also write contact sheets (source | target pose | result | "
                                                       "ground truth) of this shard's pairs; needs no model when "
                                                       "every result exists")
    parser.add_argument("--sheet-rows", type=int, default=8, help="pairs per sheet (default 8)")
    parser.set_defaults(func=_run)


# ------------------------------------------------------------------------------------------- runners
def _model_files(args: argparse.Namespace, options: list[str], family: str) -> dict[str, str]:
    """Every file of `options` (a path, or a name in its model folder); one error lists all missing ones."""
    return models_dir.find_options(args, {option: MODEL_OPTIONS[option] for option in options}, family)


Runner = Callable[[Pair, int], torch.Tensor]  # (pair, seed) -> [3,H,W] 0..1


class PcdmRunner:
    """PCDMs, simplified or three stages; models loaded once."""

    def __init__(self, args: argparse.Namespace, three_stages: bool, model_size: bool, fit: str):
        from ..models.encoders import load_clip_vision, load_dinov2
        from ..models.pcdm.inpaint import InpaintSettings
        from ..models.pcdm.refine import PAPER_GUIDANCE_RESCALE, RefineSettings
        from ..models.pcdm.stages import load_pcdm_checkpoint, load_prior, load_refiner
        from ..models.vae import load_vae

        self.args, self.three_stages, self.model_size = args, three_stages, model_size
        device = devices.chosen_device(args.device)
        dtype = precision_dtype(args.precision, device)
        names = ["stage2" if three_stages else "pcdm", "dinov2", "vae"] + (["prior", "refiner", "clip"] if three_stages else [])
        files = _model_files(args, names, "pcdms-stages" if three_stages else "pcdms")
        self.model = load_pcdm_checkpoint(files[names[0]], dtype).to(device)
        self.dino = load_dinov2(files["dinov2"]).to(device=device, dtype=dtype)
        self.vae = load_vae(files["vae"]).to(device=device, dtype=dtype)
        self.dwpose = None
        self.settings = InpaintSettings(steps=args.steps, guidance_scale=args.guidance, scheduler=args.scheduler,
                                        fit=fit, size=args.resolution)
        if three_stages:
            self.prior = load_prior(files["prior"]).to(device)
            self.refiner = load_refiner(files["refiner"], dtype).to(device)
            self.clip = load_clip_vision(files["clip"]).to(device=device, dtype=dtype)
            self.refine_settings = RefineSettings(
                steps=args.steps, guidance_scale=args.guidance, scheduler=args.scheduler, size=args.resolution,
                fit=fit, guidance_rescale=PAPER_GUIDANCE_RESCALE if args.paper_rescale else 0.0)

    def _source_pose(self, pair: Pair, source: torch.Tensor) -> torch.Tensor:
        if pair.source_pose:
            return render_pose(pair.source_pose, source.shape[-2], source.shape[-1])
        if self.dwpose is None:  # loaded at the first pair that needs it, then kept
            from ..pose.dwpose import load_dwpose

            files = _model_files(self.args, ["dwpose", "detector"], "dwpose")
            self.dwpose = load_dwpose(files["dwpose"], files["detector"])
        from ..pose.conditions import source_pose_renders

        return from_uint8(source_pose_renders(self.dwpose, list(to_uint8(source))))

    def _prior_poses(self, pair: Pair, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if pair.prior_source and pair.prior_target:
            return prior_coordinates(pair.prior_source), prior_coordinates(pair.prior_target)
        from ..pose.conditions import pose_coordinates
        from .pose_files import pose_frame

        if not pair.source_pose:
            raise ValueError(f"{pair.label}: the prior needs the source keypoints: give a source_pose (.json or .txt) "
                             "or, for test_data.json, --prior-pose-dir")
        frames = [pose_frame(pair.source_pose), pose_frame(pair.target_pose)]
        return (pose_coordinates(frames[:1], self.args.pose_convention, "source_pose"),
                pose_coordinates(frames[1:], self.args.pose_convention, "target_pose"))

    def __call__(self, pair: Pair, seed: int) -> torch.Tensor:
        from ..models.pcdm.inpaint import inpaint

        source = read_image(pair.source)
        source_pose = self._source_pose(pair, source)
        target = render_pose(pair.target_pose)
        settings = replace(self.settings, seed=seed)
        embeds = self._stage1(pair, source, seed) if self.three_stages else None
        result = inpaint(self.model, self.vae, self.dino, source, source_pose, target, settings, target_embeds=embeds)
        image = result.canvas[:, :, :, settings.size:] if self.model_size else result.images
        if not self.three_stages:
            return image[0]
        if self.args.keep_stages:
            _save(image[0], os.path.join(self.args.out_dir, "stage2", pair.output))
        from ..models.pcdm.refine import refine

        return refine(self.refiner, self.vae, self.dino, image, source, replace(self.refine_settings, seed=seed))[0]

    def _stage1(self, pair: Pair, source: torch.Tensor, seed: int) -> torch.Tensor:
        from ..models.encoders import encode_clip_embeds
        from ..models.pcdm.prior import sample_prior

        source_xy, target_xy = self._prior_poses(pair, source)
        clip_in = pil_resize(source, (PRIOR_CANVAS, PRIOR_CANVAS)).to(next(self.clip.parameters()).device)
        embeds = sample_prior(self.prior, encode_clip_embeds(self.clip, clip_in).float(), source_xy, target_xy,
                              steps=self.args.prior_steps, guidance=self.args.prior_guidance, seed=seed)
        if self.args.keep_stages:
            folder = os.path.join(self.args.out_dir, "stage1")
            os.makedirs(folder, exist_ok=True)
            np.save(os.path.join(folder, os.path.splitext(pair.output)[0] + ".npy"), embeds.cpu().numpy())
        return embeds


class ScfmRunner:
    def __init__(self, args: argparse.Namespace, model_size: bool, fit: str):
        from ..models.scfm.checkpoint import load_scfm

        if model_size and fit != "stretch":
            raise ValueError("--output-size model writes SCFM's square as the original did, which needs --fit stretch")
        device = devices.chosen_device(args.device)
        dtype = precision_dtype("fp32" if args.precision == "auto" else args.precision, device)  # SCFM ran fp32
        self.model = load_scfm(_model_files(args, ["scfm"], "scfm")["scfm"]).to(device=device, dtype=dtype)
        self.args, self.model_size, self.fit = args, model_size, fit

    def __call__(self, pair: Pair, seed: int) -> torch.Tensor:
        from ..models.scfm.pipeline import SampleSettings, check_batches, place_on_square, transfer
        from ..pose.conditions import scfm_pose_maps

        if not pair.source_pose:
            raise ValueError(f"{pair.label}: SCFM needs the source keypoints (source_pose: OpenPose .json or .txt)")
        image = read_image(pair.source)
        size = self.model.config.image_size
        if self.model_size:  # exactly the stretch fit's own resize, so the result stays on the square
            image = pil_resize(image, (size, size))
        images, sources, targets = check_batches(image, [scfm_pose(pair.source_pose)], [scfm_pose(pair.target_pose)])
        source_maps, target_maps = (scfm_pose_maps(place_on_square(poses, size, self.fit), size)
                                    for poses in (sources, targets))
        settings = SampleSettings(steps=self.args.steps, guidance=self.args.guidance, seed=seed, fit=self.fit,
                                  chunk_size=1)
        return transfer(self.model, images, source_maps, target_maps, settings)[0]


# ------------------------------------------------------------------------------------------- the run
def _save(image: torch.Tensor, path: str) -> None:
    """Write atomically (temporary file, then rename): a killed job never leaves a half image a re-run would skip."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    extension = os.path.splitext(path)[1].lower()
    image_format = Image.registered_extensions().get(extension)
    if image_format is None:
        raise ValueError(f"output {path}: unknown image extension {extension!r}; use .png or .jpg")
    partial = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.partial")
    Image.fromarray(to_uint8(image)).save(partial, format=image_format)
    os.replace(partial, path)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _failures_path(out_dir: str, shard_index: int, shard_count: int) -> str:
    return os.path.join(out_dir, f"failures_{shard_index}of{shard_count}.csv")


def _apply_defaults(args: argparse.Namespace, list_format: str) -> tuple[bool, str]:
    for key, value in DEFAULTS[args.path].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    paper_list = list_format in ("pcdms", "scfm")
    model_size = args.output_size == "model" or (args.output_size == "auto" and paper_list)
    fit = args.fit if args.fit != "auto" else ("stretch" if paper_list else "pad")
    return model_size, fit


def _run(args: argparse.Namespace) -> int:
    list_format = pair_lists.detect_format(args.pairs) if args.format == "auto" else args.format
    model_size, fit = _apply_defaults(args, list_format)
    pairs = pair_lists.read_pairs(args.pairs, list_format, img_dir=args.img_dir, pose_dir=args.pose_dir,
                                  prior_pose_dir=args.prior_pose_dir, dataset=args.dataset)
    shard_index, shard_count = pair_lists.parse_shard(args.shard)
    mine = pair_lists.shard(pairs, shard_index, shard_count)
    os.makedirs(args.out_dir, exist_ok=True)
    todo = [p for p in mine if not os.path.isfile(os.path.join(args.out_dir, p.output))]
    print(f"{args.pairs}: {len(pairs)} pairs; shard {shard_index}/{shard_count}: {len(mine)}; "
          f"{len(mine) - len(todo)} already written, {len(todo)} to generate -> {args.out_dir}", file=sys.stderr)
    failures: list[tuple[Pair, str]] = []
    if todo:
        loaded = time.monotonic()
        runner: Runner = (ScfmRunner(args, model_size, fit) if args.path == "scfm"
                          else PcdmRunner(args, args.path == "pcdm3", model_size, fit))
        start = time.monotonic()
        log.info("models loaded in %.1f s", start - loaded)
        for done, pair in enumerate(todo, 1):
            try:
                _save(runner(pair, args.seed + pair.index), os.path.join(args.out_dir, pair.output))
                status = pair.output
            except Exception as error:  # noqa: BLE001 - one bad pair must not stop a night's run; reported below
                reason = f"{type(error).__name__}: {error}".replace("\n", " ")
                failures.append((pair, reason))
                status = f"FAILED {pair.label}: {reason}"
            elapsed = time.monotonic() - start
            eta = elapsed / done * (len(todo) - done)
            print(f"[{done}/{len(todo)}] {status}  ({elapsed / done:.1f} s/pair, ETA {_duration(eta)})",
                  file=sys.stderr, flush=True)
    _write_failures(_failures_path(args.out_dir, shard_index, shard_count), failures)
    if args.sheet:
        _write_sheets(args, mine)
    print(f"done: {len(todo) - len(failures)} written, {len(mine) - len(todo)} skipped, {len(failures)} failed",
          file=sys.stderr)
    return 1 if failures else 0


def _write_failures(path: str, failures: list[tuple[Pair, str]]) -> None:
    """failures_<I>of<N>.csv lists this shard's failed pairs (index, output, reason); removed when none failed."""
    if not failures:
        if os.path.isfile(path):
            os.remove(path)
        return
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "source", "target_pose", "output", "reason"])
        for pair, reason in failures:
            writer.writerow([pair.index, pair.source, pair.target_pose, pair.output, reason])
    print(f"{len(failures)} pairs failed; listed in {path}", file=sys.stderr)


def _pil(tensor: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(tensor[0]))


def _open(path: str | None, what: str) -> Image.Image | None:
    """A sheet cell through the pack's image reader (upright, bounded); a damaged file leaves it empty, said."""
    if not path or not os.path.isfile(path):
        return None
    try:
        return Image.fromarray(read_image_file(path, what))
    except ImageInputError as error:
        log.warning("sheet: no %s picture: %s", what, error)
        return None


def _write_sheets(args: argparse.Namespace, pairs: list[Pair]) -> None:
    """Pages of `--sheet-rows` written pairs: sheet_<first pair index>.jpg."""
    os.makedirs(args.sheet, exist_ok=True)
    written = [p for p in pairs if os.path.isfile(os.path.join(args.out_dir, p.output))]
    rows_per_sheet = max(1, args.sheet_rows)
    for start in range(0, len(written), rows_per_sheet):
        page = written[start:start + rows_per_sheet]
        rows, labels = [], []
        for pair in page:
            result = _open(os.path.join(args.out_dir, pair.output), "result")
            try:
                pose = _pil(render_pose(pair.target_pose))
            except (OSError, ValueError) as error:
                log.warning("sheet: %s: no target pose picture (%s)", pair.label, error)
                pose = None
            rows.append([_open(pair.source, "source image"), pose, result, _open(pair.ground_truth, "ground truth")])
            labels.append(f"{pair.index}: {pair.output}")
        first = next(image for image in rows[0] if image is not None)
        sheet = contact_sheet(rows, labels, aspect=first.width / first.height)
        name = os.path.join(args.sheet, f"sheet_{page[0].index:06d}.jpg")
        sheet.save(name, quality=92)
        print(name)
