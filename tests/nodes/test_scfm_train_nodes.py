"""`scfm-train`, one step on a tiny model and a tiny people folder: the written safetensors file loads in the SCFM
Loader node (no-ComfyUI adapter mode) and generates."""
import argparse
import json
import shutil

import pytest
import torch
from PIL import Image

from posetransfer.cli import scfm_train
from posetransfer.nodes import scfm as nodes

from ..models.scfm.test_scfm_flow_losses import tiny_vgg_state
from ..models.scfm.test_scfm_train import _dataset
from .test_scfm_nodes import BODY, TINY, _image, _pose_keypoint

pytest.importorskip("accelerate")


def test_trained_model_loads_in_the_loader_node_and_generates(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    scfm_train.register(parser.add_subparsers())
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in vars(TINY).items()}))
    _dataset(tmp_path / "data")
    command = ["scfm-train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--config", str(config),
               "--steps", "1", "--batch-pairs", "1", "--cpu", "--sample-every", "1", "--name", "mine"]
    args = parser.parse_args(command)
    with pytest.raises(ValueError, match="--vgg PATH"):
        args.func(args)
    torch.save(tiny_vgg_state(), tmp_path / "vgg19.pth")
    args = parser.parse_args(command + ["--vgg", str(tmp_path / "vgg19.pth")])
    assert args.func(args) == 0
    assert Image.open(tmp_path / "run" / "samples" / "step0000001.png").size == (4 * 64, 4 * 64)

    (tmp_path / "models" / "scfm").mkdir(parents=True)
    shutil.copy(tmp_path / "run" / "mine.safetensors", tmp_path / "models" / "scfm")
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path / "models"))
    handle = nodes.SCFMLoader.execute(ckpt_name="mine.safetensors", precision="fp32").result[0]
    assert handle.model.config == TINY
    image = nodes.SCFMSample.execute(handle, _image(48, 40, 2), _pose_keypoint(BODY, 40, 48),
                                     _pose_keypoint(BODY[::-1].copy(), 40, 48), 3, 2, 2.0, "pad", 1,
                                     nodes.NOISE_MODES[0]).result[0]
    assert image.shape == (1, 48, 40, 3) and torch.isfinite(image).all()
