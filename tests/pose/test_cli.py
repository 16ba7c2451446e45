"""`pose` command: image files -> JSON + PNG, and the folder-listing error for missing models."""
import argparse
import json

import numpy as np
import pytest
from PIL import Image

from posetransfer.cli import pose as pose_cli

from .planted_models import detector_model, plant_box, planted_keypoints, pose_model


def _parse(argv):
    parser = argparse.ArgumentParser()
    pose_cli.register(parser.add_subparsers())
    return parser.parse_args(["pose", *argv])


def test_pose_command_writes_json_and_png(tmp_path, capsys):
    rows = np.zeros((8400, 85), np.float32)
    plant_box(rows, [v * 10 for v in (10, 5, 40, 60)], 0.9)  # 64x48 image -> ratio 10
    _, _, sx, sy = planted_keypoints()
    det = detector_model(tmp_path / "det.onnx", rows)
    pose = pose_model(tmp_path / "pose.onnx", sx, sy)
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(image)  # grayscale input
    args = _parse([str(image), "--out-dir", str(tmp_path / "out"), "--pose-model", pose, "--detector", det])
    assert args.func(args) == 0
    data = json.load(open(tmp_path / "out" / "photo.json"))
    assert data["canvas_width"] == 64 and len(data["people"]) == 1
    assert Image.open(tmp_path / "out" / "photo_pose.png").size == (64, 48)
    assert "1 people" in capsys.readouterr().out


def test_missing_model_lists_searched_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path))
    args = _parse(["x.png"])
    with pytest.raises(FileNotFoundError, match="yzd-v/DWPose") as err:
        args.func(args)
    assert str(tmp_path / "dwpose") in str(err.value)
