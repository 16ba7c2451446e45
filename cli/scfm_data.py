"""SCFM training data from a folder: photos of the same person with their OpenPose keypoints, as training pairs.

Layout: one sub-folder per person (or outfit); each image `name.png|jpg|jpeg|webp` has its keypoints in
`name.json` beside it (OpenPose JSON / one POSE_KEYPOINT frame, e.g. written by the pack's `pose` command).
Every ordered pair of images inside a sub-folder is a training pair, used in both directions as the original.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..models.images import read_image
from ..models.scfm.pipeline import PoseInput, fit_source, place_on_square
from ..models.scfm.train import ScfmPair
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
    """SCFM training pairs (`models.scfm.train.ScfmPair`) read from a folder (layout above), fitted to the model's
    `size` x `size` square with `fit_mode`; raises at once if the folder holds no pairs."""

    def __init__(self, data_dir: str | os.PathLike, size: int, fit_mode: str = "stretch"):
        self.pairs = find_pairs(data_dir)
        self.size, self.fit_mode = size, fit_mode

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> ScfmPair:
        (first, first_pose), (second, second_pose) = (_load_example(path) for path in self.pairs[index])
        # one at a time: two photos of a person may differ in size
        first, second = (fit_source(image, self.size, self.fit_mode)[0][0] for image in (first, second))
        maps = scfm_pose_maps(place_on_square([first_pose, second_pose], self.size, self.fit_mode), self.size)
        return ScfmPair(first, maps[0], second, maps[1], index=index)
