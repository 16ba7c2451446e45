"""Test-pair lists in the formats the originals read, as one list of `Pair`s for `batch` (and its sheets).

- PCDMs `test_data.json`: `[{"source_image": "a.jpg", "target_image": "b.jpg"}, ...]`; images are
  `<img dir>/<name .png>`, pose renders `<pose dir>/<name>_pose.jpg`, stage-1 coordinates (three stages)
  `<prior pose dir>/<name>.txt`. Output `<source stem>_to_<target stem>.png` (stage{2,3}_batchtest_*.py).
- GFLA/PIDM `test_pairs.txt` as SCFM reads it: `target,source` per line, paths under the dataset root
  (`img/MEN/Denim/id_00000080/01_1_front.jpg`), keypoints in `pose/... .txt` (18 rows `x y`, -1 = missing,
  in the 256-wide frame whose 40 px white margins the loader cuts: the 176 x 256 picture). Output
  `<fashion source>_2_<fashion target>_vis.png` (SCFM inference.py / fashion_data.py). With several sources on
  a line the original drew one at random; the first is used here.
- A plain CSV: `source,target_pose,output[,source_pose[,ground_truth]]`, with or without that header row;
  paths relative to the CSV's folder. Poses are rendered pose images, OpenPose JSON, or keypoint .txt files.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass

FORMATS = ("auto", "pcdms", "scfm", "csv")
CSV_COLUMNS = ("source", "target_pose", "output", "source_pose", "ground_truth")
GFLA_MARGIN = 40.0  # white columns each side of the 176-wide DeepFashion picture in the keypoint frame
GFLA_FRAME = (176, 256)  # (width, height) of the keypoints after the margin is cut


@dataclass(frozen=True)
class Pair:
    """One line of a test list. Poses are file paths: an image (a render), .json (OpenPose) or .txt (keypoints)."""

    index: int  # position in the whole list: seeds and shards use it, so a pair's result never depends on the shard
    source: str
    target_pose: str
    output: str  # file name inside the output folder
    source_pose: str | None = None
    ground_truth: str | None = None
    prior_source: str | None = None  # stage-1 coordinate files (PCDMs normalized_pose_txt), three stages only
    prior_target: str | None = None

    @property
    def label(self) -> str:
        return f"pair {self.index} ({os.path.basename(self.source)} -> {os.path.basename(self.target_pose)})"


def detect_format(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".json"):
        return "pcdms"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".txt"):
        return "scfm"
    raise ValueError(f"{path}: cannot tell the list format from the extension; pass --format pcdms, scfm or csv")


def read_pairs(path: str, list_format: str = "auto", *, img_dir: str | None = None, pose_dir: str | None = None,
               prior_pose_dir: str | None = None, dataset: str | None = None) -> list[Pair]:
    """All pairs of a list file, in file order (see the module docstring for the formats and folders)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pair list not found: {path}")
    list_format = detect_format(path) if list_format == "auto" else list_format
    if list_format == "pcdms":
        return _pcdms_pairs(path, img_dir, pose_dir, prior_pose_dir)
    if list_format == "scfm":
        return _scfm_pairs(path, dataset)
    if list_format == "csv":
        return _csv_pairs(path)
    raise ValueError(f"list format must be one of {FORMATS}, got {list_format!r}")


def _pcdms_pairs(path: str, img_dir: str | None, pose_dir: str | None, prior_dir: str | None) -> list[Pair]:
    if not img_dir or not pose_dir:
        raise ValueError(f"{path} is a PCDMs test_data.json: give --img-dir (the dataset's train_all_png/) and "
                         "--pose-dir (its openpose_all_img/ renders), as the original's --img_path/--pose_path")
    with open(path, encoding="utf-8") as handle:
        entries = json.load(handle)
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of {{source_image, target_image}} entries")
    pairs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"source_image", "target_image"} <= set(entry):
            raise ValueError(f"{path}: entry {index} is {entry!r}; expected source_image and target_image keys")
        source, target = entry["source_image"], entry["target_image"]
        source_png, target_png = source.replace(".jpg", ".png"), target.replace(".jpg", ".png")
        output = os.path.basename(source_png).replace(".png", "") + "_to_" + os.path.basename(target_png)
        pairs.append(Pair(
            index, os.path.join(img_dir, source_png), os.path.join(pose_dir, target.replace(".jpg", "_pose.jpg")),
            output, source_pose=os.path.join(pose_dir, source.replace(".jpg", "_pose.jpg")),
            ground_truth=os.path.join(img_dir, target_png),
            prior_source=os.path.join(prior_dir, source.replace(".jpg", ".txt")) if prior_dir else None,
            prior_target=os.path.join(prior_dir, target.replace(".jpg", ".txt")) if prior_dir else None))
    return pairs


def fashion_name(path: str) -> str:
    """`img/MEN/Denim/id_00000080/01_1_front.png` -> `fashionMENDenimid0000008001_1front.png` (as fashion_data.py)."""
    parts = os.path.join("fashion", path.split("img/")[-1]).split("/")
    if len(parts) < 5:
        raise ValueError(f"{path}: expected a DeepFashion path like img/MEN/Denim/id_00000080/01_1_front.jpg")
    parts[3] = parts[3].replace("_", "")
    parts[4] = parts[4].split("_")[0] + "_" + "".join(parts[4].split("_")[1:])
    return "".join(parts)


def _existing(root: str, relative: str) -> str:
    """`root/relative` as .png (what the original's lmdb held) or .jpg, whichever exists (the .png if neither)."""
    stem = os.path.splitext(os.path.join(root, relative))[0]
    for suffix in (".png", ".jpg", ".jpeg"):
        if os.path.isfile(stem + suffix):
            return stem + suffix
    return stem + ".png"


def _scfm_pairs(path: str, dataset: str | None) -> list[Pair]:
    root = dataset or os.path.dirname(os.path.abspath(path))
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = [f.strip() for f in line.strip().split(",") if f.strip()]
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f"{path}: line {len(pairs) + 1} {line.strip()!r} has no source; expected target,source")
            target, source = fields[0].replace(".jpg", ".png"), fields[1].replace(".jpg", ".png")
            output = (os.path.splitext(fashion_name(source))[0] + "_2_" + os.path.splitext(fashion_name(target))[0]
                      + "_vis.png")
            keypoints = lambda p: os.path.join(root, p.replace("img/", "pose/").replace(".png", ".txt"))  # noqa: E731
            pairs.append(Pair(len(pairs), _existing(root, source), keypoints(target), output,
                              source_pose=keypoints(source), ground_truth=_existing(root, target)))
    return pairs


def _csv_pairs(path: str) -> list[Pair]:
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and rows[0][0].strip().lower() == "source":
        header = [cell.strip().lower() for cell in rows[0]]
        unknown = set(header) - set(CSV_COLUMNS)
        if unknown or not {"source", "target_pose", "output"} <= set(header):
            raise ValueError(f"{path}: header {header}; columns must be from {CSV_COLUMNS}, with source, target_pose "
                             "and output")
        rows = [dict(zip(header, (c.strip() for c in row))) for row in rows[1:]]
    else:
        rows = [dict(zip(CSV_COLUMNS, (c.strip() for c in row))) for row in rows]

    def resolve(value: str | None) -> str | None:
        return os.path.join(base, value) if value else None

    pairs = []
    for index, row in enumerate(rows):
        if not row.get("source") or not row.get("target_pose") or not row.get("output"):
            raise ValueError(f"{path}: row {index + 1} {row} needs source, target_pose and output")
        pairs.append(Pair(index, resolve(row["source"]), resolve(row["target_pose"]), row["output"],
                          source_pose=resolve(row.get("source_pose")), ground_truth=resolve(row.get("ground_truth"))))
    return pairs


def parse_shard(text: str | None) -> tuple[int, int]:
    """`I/N` (0 <= I < N) -> (I, N); None -> (0, 1). Slurm: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT."""
    if not text:
        return 0, 1
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/8), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= I < N (shards are numbered from 0)")
    return index, count


def shard(pairs: list[Pair], index: int, count: int) -> list[Pair]:
    """Every `count`-th pair starting at `index`: shards interleave, so each gets a similar mix of the list."""
    return pairs[index::count]
