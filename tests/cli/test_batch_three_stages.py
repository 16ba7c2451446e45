"""`batch pcdm3` on PCDMs' test_data.json with tiny random stage files: the stage scripts' names and files, and a
shard's output identical to the unsharded run's."""
import json
import os

import numpy as np
from PIL import Image

from ..models.pcdm.conftest import dino_file, full_file, vae_file  # noqa: F401  (fixtures)
from ..nodes.test_pcdm_stages_nodes import models_dir  # noqa: F401  (fixture: prior, full stage 2, refiner, CLIP)
from .test_batch_cli import _png, _run


def test_three_stages_over_test_data_json(tmp_path, monkeypatch, models_dir):  # noqa: F811
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(models_dir))
    img, pose, txt = tmp_path / "train_all_png", tmp_path / "openpose_all_img", tmp_path / "normalized_pose_txt"
    rng = np.random.default_rng(0)
    names = ["fashionWOMENa", "fashionWOMENb", "fashionMENc"]
    for i, name in enumerate(names):
        _png(img / f"{name}.png", 64, 44, i)
        _png(pose / f"{name}_pose.jpg", 64, 44, 10 + i)
        txt.mkdir(exist_ok=True)
        np.savetxt(txt / f"{name}.txt", rng.random((18, 2)))
    entries = [{"source_image": f"{a}.jpg", "target_image": f"{b}.jpg"} for a, b in zip(names, names[1:] + names[:1])]
    (tmp_path / "test_data.json").write_text(json.dumps(entries))
    common = ["--img-dir", str(img), "--pose-dir", str(pose), "--prior-pose-dir", str(txt), "--steps", "1",
              "--prior-steps", "2", "--resolution", "64", "--device", "cpu"]
    whole = tmp_path / "whole"
    assert _run(["batch", "pcdm3", str(tmp_path / "test_data.json"), str(whole), "--keep-stages", *common]) == 0
    outputs = sorted(n for n in os.listdir(whole) if n.endswith(".png"))
    assert outputs == ["fashionMENc_to_fashionWOMENa.png", "fashionWOMENa_to_fashionWOMENb.png",
                       "fashionWOMENb_to_fashionMENc.png"]
    with Image.open(whole / outputs[1]) as image:
        assert image.size == (64, 64)  # the model square, as stage 3 saved it
    assert np.load(whole / "stage1" / "fashionWOMENa_to_fashionWOMENb.npy").shape == (1, 32)
    assert (whole / "stage2" / "fashionWOMENa_to_fashionWOMENb.png").is_file()
    shard = tmp_path / "shard"
    assert _run(["batch", "pcdm3", str(tmp_path / "test_data.json"), str(shard), "--shard", "1/2", *common]) == 0
    assert os.listdir(shard) == ["fashionWOMENb_to_fashionMENc.png"]
    assert (shard / outputs[2]).read_bytes() == (whole / outputs[2]).read_bytes()
