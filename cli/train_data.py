"""Training pairs for `pcdm-train` from disk: the original PCDMs layout or a folder of people.

Original layout (DeepFashion as the PCDMs scripts read it): `train_data.json` = [{"source_image": ...,
"target_image": ...}, ...] relative to an image root; pose renders beside the images with `/train_all_png/`
-> `/openpose_all_img/` and `.png` -> `_pose.jpg`; stage-1 keypoints in `/normalized_pose_txt/` as 18 lines
"x y"; stage-3 inputs `{source stem}_to_{target stem}.png` in the stage-2 results folder.

Folder of people: one sub-folder per person; each photo has its pose as a render `<stem>_pose.png|jpg` or as
OpenPose keypoints `<stem>.json` (the `pose` command writes them), rendered here in PCDMs' style. Every
ordered pair of photos in a sub-folder is a training pair (both directions, as the scripts' pair lists).
Images are resized to the model square with PIL bicubic, as the scripts do.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..models.images import from_uint8, read_image_file
from ..models.pcdm.train import PairItem

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _read_image(path: Path, size: int) -> torch.Tensor:
    """[3,size,size] 0..1, PIL bicubic on uint8 as the scripts' `.resize(size, Image.BICUBIC)`."""
    image = Image.fromarray(read_image_file(path, "training image")).resize((size, size), Image.BICUBIC)
    return from_uint8(np.asarray(image))


def _first_existing(candidates: Sequence[Path], what: str) -> Path:
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{what} not found; looked for {', '.join(str(p) for p in candidates)}")


def _read_keypoint_txt(path: Path) -> torch.Tensor:
    """The scripts' normalized_pose_txt: 18 lines "x y" -> (36,)."""
    values = [float(v) for line in path.read_text().splitlines() if line.strip() for v in line.split()]
    if len(values) != 36:
        raise ValueError(f"{path}: expected 18 lines of 'x y' (36 numbers), found {len(values)} numbers")
    return torch.tensor(values, dtype=torch.float32)


class PairDataset:
    """A list of (source, target) photo pairs, read lazily into `PairItem`s for one stage."""

    def __init__(self, pairs: list[tuple[Path, Path]], stage: int, size: int, *, pose_of, keypoints_of=None,
                 coarse_dir: Path | None = None):
        if not pairs:
            raise ValueError("no training pairs found")
        if stage == 3 and coarse_dir is None:
            raise ValueError("stage 3 trains on stage-2 results: give the folder holding "
                             "'{source stem}_to_{target stem}.png' for every pair (--coarse)")
        self.pairs, self.stage, self.size = pairs, stage, size
        self.pose_of, self.keypoints_of, self.coarse_dir = pose_of, keypoints_of, coarse_dir

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> PairItem:
        source_path, target_path = self.pairs[index]
        item = PairItem(_read_image(source_path, self.size), _read_image(target_path, self.size), index=index)
        if self.stage == 2:
            item.source_pose = self.pose_of(source_path, self.size)
            item.target_pose = self.pose_of(target_path, self.size)
        elif self.stage == 1:
            item.source_keypoints = self.keypoints_of(source_path)
            item.target_keypoints = self.keypoints_of(target_path)
        else:
            name = f"{source_path.stem}_to_{target_path.stem}.png"
            item.coarse = _read_image(_first_existing([self.coarse_dir / name], "stage-2 result"), self.size)
        return item


def original_layout(json_path: str | os.PathLike, image_root: str | os.PathLike, stage: int, size: int,
                    coarse_dir: str | os.PathLike | None = None) -> PairDataset:
    """`train_data.json` + image root as the PCDMs scripts read them."""
    root = Path(image_root)
    entries = json.loads(Path(json_path).read_text())
    if not isinstance(entries, list) or not all({"source_image", "target_image"} <= set(e) for e in entries):
        raise ValueError(f"{json_path}: expected a list of {{'source_image': ..., 'target_image': ...}} entries")

    def image(name: str) -> Path:
        return _first_existing([root / name, root / name.replace(".jpg", ".png")], "training image")

    def pose(path: Path, side: int) -> torch.Tensor:
        render = Path(str(path).replace("/train_all_png/", "/openpose_all_img/").replace(".png", "_pose.jpg"))
        return _read_image(_first_existing([render, path.with_name(path.stem + "_pose.jpg")], "pose render"), side)

    def keypoints(path: Path) -> torch.Tensor:
        text = Path(str(path).replace("/train_all_png/", "/normalized_pose_txt/")).with_suffix(".txt")
        return _read_keypoint_txt(_first_existing([text, path.with_suffix(".txt")], "keypoint file"))

    pairs = [(image(e["source_image"]), image(e["target_image"])) for e in entries]
    return PairDataset(pairs, stage, size, pose_of=pose, keypoints_of=keypoints,
                       coarse_dir=Path(coarse_dir) if coarse_dir else None)


def people_folder(folder: str | os.PathLike, stage: int, size: int, coarse_dir: str | os.PathLike | None = None,
                  pose_convention: str = "fraction") -> PairDataset:
    """One sub-folder per person, each photo with `<stem>_pose.png|jpg` or `<stem>.json` beside it."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder not found: {root}")
    pairs = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(p for p in person.iterdir()
                        if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_pose"))
        pairs += [(a, b) for a in photos for b in photos if a != b]
    if not pairs:
        raise ValueError(f"no training pairs in {root}: put at least two photos of the same person (with their "
                         "poses) in each sub-folder")

    def pose(path: Path, side: int) -> torch.Tensor:
        for suffix in (".png", ".jpg"):
            render = path.with_name(path.stem + "_pose" + suffix)
            if render.is_file():
                return _read_image(render, side)
        from ..pose.conditions import pcdms_renders

        return from_uint8(pcdms_renders([_frame(path)], side, side)[0])

    def keypoints(path: Path) -> torch.Tensor:
        from ..pose.conditions import pose_coordinates

        return pose_coordinates([_frame(path)], pose_convention, name=str(path.with_suffix(".json")))[0]

    return PairDataset(pairs, stage, size, pose_of=pose, keypoints_of=keypoints,
                       coarse_dir=Path(coarse_dir) if coarse_dir else None)


def _frame(photo: Path):
    from ..pose.formats import load_openpose_json

    keypoints = photo.with_suffix(".json")
    if not keypoints.is_file():
        raise FileNotFoundError(f"{photo} has no pose: expected {photo.stem}_pose.png/.jpg or {keypoints.name} beside "
                                "it (the `pose` command writes the JSON)")
    return load_openpose_json(keypoints)[0]
