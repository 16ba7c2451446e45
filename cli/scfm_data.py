"""SCFM training data from a folder: photos of the same person with their OpenPose keypoints, as training pairs.

Layout: one sub-folder per person (or outfit); each image `name.png|jpg|jpeg|webp` has its keypoints in
`name.json` beside it (OpenPose JSON / one POSE_KEYPOINT frame, e.g. written by the pack's `pose` command).
Every ordered pair of images inside a sub-folder is a training pair, used in both directions as the original.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from ..models.images import read_image
from ..models.scfm.pipeline import PoseInput, fit_source, place_on_square
from ..pose.conditions import scfm_body_points, scfm_pose_maps
from ..pose.formats import load_openpose_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def find_pairs(data_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Ordered (source, target) image pairs of the same person; raises when there is nothing to train on."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder not found: {root}")
    pairs, missing = [], []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        # `<stem>_pose.png` is the render the `pose` command writes beside its JSON, not a photo
        images = sorted(p for p in person.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_pose"))
        missing += [str(p) for p in images if not p.with_suffix(".json").is_file()]
        images = [p for p in images if p.with_suffix(".json").is_file()]
        pairs += [(a, b) for a in images for b in images if a != b]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images have no keypoints JSON beside them (same name, .json), e.g. "
                                f"{missing[0]}. Extract them with the pack's `pose` command first.")
    if not pairs:
        raise ValueError(f"no training pairs in {root}: put at least two images (+ .json keypoints) of the same person "
                         "in each sub-folder.")
    return pairs


def _load_example(path: Path) -> tuple[torch.Tensor, PoseInput]:
    keypoints = path.with_suffix(".json")
    frame = load_openpose_json(keypoints)[0]
    return read_image(path), PoseInput(scfm_body_points(frame, str(keypoints)), frame.height, frame.width)


class PairFolder:
    """`models.scfm.train.TrainingPairs` read from a folder (layout above); raises at once if it holds no pairs."""

    def __init__(self, data_dir: str | os.PathLike):
        self.pairs = find_pairs(data_dir)

    def __len__(self) -> int:
        return len(self.pairs)

    def batch(self, indices: Sequence[int], size: int, fit_mode: str) -> tuple[torch.Tensor, ...]:
        """Both directions of each pair: (source [-1,1], source pose maps, target pose maps, target [-1,1])."""
        sources, source_poses, targets, target_poses = [], [], [], []
        for index in indices:
            first, second = (_load_example(path) for path in self.pairs[index])
            for (src, src_pose), (tgt, tgt_pose) in ((first, second), (second, first)):
                sources.append(fit_source(src, size, fit_mode)[0])
                targets.append(fit_source(tgt, size, fit_mode)[0])
                source_poses.append(src_pose)
                target_poses.append(tgt_pose)
        return (torch.cat(sources), _maps(source_poses, size, fit_mode), _maps(target_poses, size, fit_mode),
                torch.cat(targets))


def _maps(poses: list[PoseInput], size: int, fit_mode: str) -> torch.Tensor:
    return scfm_pose_maps(place_on_square(poses, size, fit_mode), size)
