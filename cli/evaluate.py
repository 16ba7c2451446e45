"""Scores a results folder against the ground truth (SSIM, PSNR, LPIPS, FID) as the papers' metric scripts did.

Every result is paired with its ground truth by the protocol's naming (PCDMs <src>_to_<tgt>.png, SCFM
<src>_2_<tgt>_vis.png, plain: same name). Nothing is downloaded: LPIPS and FID run only with the local weight files
given (the table says which flag enables a missing column). Writes per_pair.csv and summary.json, and prints the
table as the papers lay it out.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from typing import Iterator

import numpy as np
import torch

from ..metrics import fid as fid_metric
from ..metrics.protocols import PROTOCOLS, Protocol
from ..metrics.resize import read_image, resize
from ..metrics.ssim import paper_ssim, psnr, window51_ssim
from .devices import chosen_device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
INCEPTION_SOURCE = ("pt_inception-2015-12-05-6726825d.pth from github.com/mseitzer/pytorch-fid/releases "
                    "(tag fid_weights)")
LPIPS_SOURCE = ("torchvision's alexnet-owt-7be5be79.pth (download.pytorch.org/models/) and the lpips package's "
                "lpips/weights/v0.1/alex.pth (github.com/richzhang/PerceptualSimilarity)")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate", help="SSIM / LPIPS / FID of results vs ground truth with the papers' protocols",
        description=__doc__)
    parser.add_argument("results", help="folder of generated images")
    parser.add_argument("ground_truth", help="folder of the real target images (e.g. DeepFashion test_lst_256_png)")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="plain",
                        help="pcdms-256 / pcdms-512: PCDMs' caculate_metrics_*.py; scfm: SCFM/PIDM's utils/metrics.py; "
                             "plain (default): no resizing, every image counted")
    parser.add_argument("--fid-real", help="real images for FID: a folder (the papers used the TRAINING images) or an "
                                           ".npz with mu/sigma (ours or the originals' cached *_statistics.npz); "
                                           "default: the ground-truth folder")
    parser.add_argument("--save-fid-stats", metavar="NPZ", help="write the real set's FID statistics here for reuse")
    parser.add_argument("--inception", help=f"FID Inception weights: {INCEPTION_SOURCE}")
    parser.add_argument("--lpips-backbone", help="LPIPS AlexNet features: torchvision's alexnet-owt-7be5be79.pth (or "
                                                 "one file holding an LPIPS state dict)")
    parser.add_argument("--lpips-weights", help="LPIPS linear layers: the lpips package's weights/v0.1/alex.pth")
    parser.add_argument("--out", help="folder for per_pair.csv and summary.json (default: <results>_metrics)")
    parser.add_argument("--method", help="row name in the table (default: the results folder's name)")
    parser.add_argument("--all-images", action="store_true",
                        help="count every image, not only the originals' full batches of 64/128")
    parser.add_argument("--device", help="torch device for LPIPS/FID (default: the available accelerator, else cpu)")
    parser.set_defaults(func=_run)


def list_images(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."))


def match_ground_truth(results: list[str], truth_dir: str, protocol: Protocol) -> tuple[list[tuple[str, str]], list[str]]:
    """(result, ground truth) pairs by the protocol's naming, and the results without a ground truth."""
    pairs, missing = [], []
    for result in results:
        name = protocol.ground_truth_name(result)
        candidates = [name] + [os.path.splitext(name)[0] + s for s in IMAGE_SUFFIXES]
        found = next((os.path.join(truth_dir, c) for c in candidates if os.path.isfile(os.path.join(truth_dir, c))), None)
        if found:
            pairs.append((result, found))
        else:
            missing.append(result)
    return pairs, missing


def _weights(path: str | None, flag: str, source: str) -> str | None:
    if path and not os.path.isfile(path):
        raise FileNotFoundError(f"{flag} {path}: file not found. Get {source} and give its local path.")
    return path


def _metric_images(paths: list[str], protocol: Protocol) -> Iterator[np.ndarray]:
    """0..1 float32 images at the protocol's LPIPS/FID size, as the scripts prepared them."""
    for path in paths:
        yield resize(read_image(path), protocol.lpips_size, protocol.lpips_interpolation) / 255.0


def score_pairs(pairs: list[tuple[str, str]], protocol: Protocol, lpips_model: torch.nn.Module | None,
                device: torch.device) -> list[dict]:
    """Per pair: the papers' SSIM, GFLA's 51-window SSIM, PSNR, and LPIPS (None without weights)."""
    rows = []
    for number, (result_path, truth_path) in enumerate(pairs, 1):
        result, truth = read_image(result_path), read_image(truth_path)
        size = protocol.ssim_size or (truth.shape[1], truth.shape[0])  # plain/SCFM: the ground truth's own size
        result_s = resize(result, size, protocol.ssim_interpolation) / 255.0
        truth_s = resize(truth, size, protocol.ssim_interpolation) / 255.0
        row = {"result": os.path.basename(result_path), "ground_truth": os.path.basename(truth_path),
               "ssim": paper_ssim(result_s, truth_s), "ssim_w51": window51_ssim(result_s, truth_s),
               "psnr": psnr(result_s, truth_s), "lpips": None}
        if lpips_model is not None:
            size = protocol.lpips_size or (truth.shape[1], truth.shape[0])
            pair = [resize(image, size, protocol.lpips_interpolation) / 255.0 for image in (result, truth)]
            tensors = [torch.from_numpy(image).movedim(-1, 0)[None].float().to(device) for image in pair]
            if protocol.lpips_signed:
                tensors = [t * 2 - 1 for t in tensors]
            with torch.no_grad():
                row["lpips"] = float(lpips_model(*tensors)[0])
        rows.append(row)
        if number % 200 == 0 or number == len(pairs):
            print(f"  {number}/{len(pairs)} pairs scored", file=sys.stderr, flush=True)
    return rows


def _fid(args: argparse.Namespace, protocol: Protocol, results: list[str], device: torch.device) -> dict:
    model = fid_metric.load_fid_inception(args.inception).to(device)
    batch = protocol.fid_batch

    def stats(paths: list[str], what: str) -> tuple[np.ndarray, np.ndarray, int]:
        used = paths if args.all_images else paths[:protocol.used(len(paths), batch)]
        print(f"  FID features of {len(used)} {what} images", file=sys.stderr, flush=True)
        features = fid_metric.activations(model, _metric_images(used, protocol), batch_size=batch, device=device)
        return (*fid_metric.statistics(features), len(used))

    real = args.fid_real or args.ground_truth
    if os.path.isfile(real) and real.lower().endswith(".npz"):
        mu_real, sigma_real = fid_metric.load_statistics(real)
        real_count = None
    else:
        mu_real, sigma_real, real_count = stats(list_images(real), "real")
    if args.save_fid_stats:
        fid_metric.save_statistics(args.save_fid_stats, mu_real, sigma_real)
    mu, sigma, count = stats(results, "generated")
    return {"fid": fid_metric.frechet_distance(mu, sigma, mu_real, sigma_real), "fid_images": count,
            "fid_real": os.path.abspath(real), "fid_real_images": real_count}


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarise(rows: list[dict], protocol: Protocol, all_images: bool) -> dict:
    lpips_values = [r["lpips"] for r in rows if r["lpips"] is not None]
    used = len(lpips_values) if all_images else protocol.used(len(lpips_values), protocol.lpips_batch)
    return {"pairs": len(rows), "ssim": _mean([r["ssim"] for r in rows]),
            "ssim_w51": _mean([r["ssim_w51"] for r in rows]), "psnr": _mean([r["psnr"] for r in rows]),
            "lpips": _mean(lpips_values[:used]), "lpips_pairs": used, "lpips_all_pairs": _mean(lpips_values)}


def format_table(summary: dict, method: str, title: str) -> str:
    """The papers' layout: one row per method, FID | SSIM | LPIPS (+ PSNR)."""
    def cell(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    width = max(len(method), len("Method"))
    lines = [f"{title}: {summary['pairs']} pairs",
             f"{'Method':<{width}}  {'FID':>8}  {'SSIM':>7}  {'LPIPS':>7}  {'PSNR':>7}",
             f"{method:<{width}}  {cell(summary.get('fid'), 3):>8}  {cell(summary['ssim'], 4):>7}  "
             f"{cell(summary['lpips'], 4):>7}  {cell(summary['psnr'], 2):>7}",
             "FID and LPIPS: lower is better; SSIM and PSNR: higher is better."]
    if summary.get("fid") is None:
        lines.append(f"FID needs --inception ({INCEPTION_SOURCE}).")
    if summary["lpips"] is None:
        lines.append(f"LPIPS needs --lpips-backbone and --lpips-weights ({LPIPS_SOURCE}).")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    protocol = PROTOCOLS[args.protocol]
    inception = _weights(args.inception, "--inception", INCEPTION_SOURCE)
    backbone = _weights(args.lpips_backbone, "--lpips-backbone", LPIPS_SOURCE)
    linear = _weights(args.lpips_weights, "--lpips-weights", LPIPS_SOURCE)
    if linear and not backbone:
        raise ValueError("--lpips-weights needs --lpips-backbone too (the AlexNet features)")
    results = list_images(args.results)
    pairs, missing = match_ground_truth(results, args.ground_truth, protocol)
    for path in missing[:10]:
        print(f"no ground truth for {os.path.basename(path)} (expected {protocol.ground_truth_name(path)} in "
              f"{args.ground_truth})", file=sys.stderr)
    if not pairs:
        raise ValueError(f"no result in {args.results} has a ground truth in {args.ground_truth} under the "
                         f"{protocol.name} naming; check --protocol")
    device = chosen_device(args.device)
    lpips_model = None
    if backbone:
        from ..metrics.lpips import load_lpips

        lpips_model = load_lpips(backbone, linear).to(device)
    print(f"scoring {len(pairs)} pairs ({len(missing)} results without ground truth), protocol {protocol.name}",
          file=sys.stderr)
    rows = score_pairs(pairs, protocol, lpips_model, device)
    summary = {"protocol": protocol.name, "method": args.method or os.path.basename(os.path.normpath(args.results)),
               "results": os.path.abspath(args.results), "ground_truth": os.path.abspath(args.ground_truth),
               "missing_ground_truth": len(missing), **summarise(rows, protocol, args.all_images),
               "fid": None, "inception": inception, "lpips_backbone": backbone, "lpips_weights": linear}
    if inception:
        summary.update(_fid(args, protocol, results, device))
    out = args.out or os.path.normpath(args.results) + "_metrics"
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "per_pair.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    print(format_table(summary, summary["method"], protocol.title))
    print(f"per-pair scores: {os.path.join(out, 'per_pair.csv')}; summary: {os.path.join(out, 'summary.json')}")
    return 0
