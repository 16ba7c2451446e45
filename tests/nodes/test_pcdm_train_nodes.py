"""`pcdm-train` for each stage, one step on a tiny model and a tiny people folder: the written safetensors file
loads in that stage's loader node (no-ComfyUI adapter mode) and generates."""
import argparse
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from posetransfer.cli import pcdm_train
from posetransfer.nodes import loaders, pcdm, pcdm_stages

from ..models.pcdm.conftest import TINY_SIZE, TINY_UNET, randomise
from ..models.pcdm.conftest import dino_file, full_file, simplified_file, vae_file  # noqa: F401  (fixtures)
from .test_pcdm_stages_nodes import EMBED, PRIOR_ARGS, REFINE_ARGS, _image, _pose, handles, models_dir  # noqa: F401

pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """Two people x two photos (+ pose render and OpenPose JSON each), and stage-2 results for every pair."""
    root = tmp_path_factory.mktemp("people")
    rng = np.random.default_rng(0)

    def noise():
        return rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    for person in ("anna", "ben"):
        (root / person).mkdir()
        for index, frame in enumerate(_pose(2, seed=len(person))):
            for suffix in ("", "_pose"):
                Image.fromarray(noise()).save(root / person / f"{person}{index}{suffix}.png")
            (root / person / f"{person}{index}.json").write_text(json.dumps(frame))
    coarse = tmp_path_factory.mktemp("coarse")
    for person in ("anna", "ben"):
        for a, b in ((0, 1), (1, 0)):
            Image.fromarray(noise()).save(coarse / f"{person}{a}_to_{person}{b}.png")
    return root, coarse


def _train(models_dir, out, stage, init, *extra):
    parser = argparse.ArgumentParser()
    pcdm_train.register(parser.add_subparsers())
    clip = ["--clip", str(models_dir / "clip_vision" / "CLIP-ViT-H-14.safetensors")]
    encoders = ["--vae", str(models_dir / "vae" / "sd21-base-vae.safetensors"),
                "--dino", str(models_dir / "clip_vision" / "dinov2-giant.safetensors")]
    args = parser.parse_args(["pcdm-train", "--stage", str(stage), *extra, "--init", str(init), *clip, *encoders,
                              "--out", str(out), "--size", str(TINY_SIZE), "--steps", "1", "--lr", "1e-3", "--cpu",
                              "--name", f"trained_s{stage}"])
    assert args.func(args) == 0
    written = out / f"trained_s{stage}.safetensors"
    shutil.copy(written, models_dir / "pcdms" / written.name)
    return load_file(written)


def _changed(original, trained, prefix=""):
    return any(not torch.equal(original[prefix + k].float(), v.float())
               for k, v in trained.items() if prefix + k in original)


def test_stage2_full_model_trains_and_generates(models_dir, people, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(models_dir))
    trained = _train(models_dir, tmp_path, 2, models_dir / "pcdms" / "s2_512.pt", str(people[0]), "--sample-every", "1")
    original = torch.load(models_dir / "pcdms" / "s2_512.pt", weights_only=True)["module"]
    assert set(trained) == set(original) and _changed(original, trained)
    assert Image.open(tmp_path / "samples" / "step0000001.png").size == (4 * TINY_SIZE, 4 * TINY_SIZE)
    _full_stage2_generates("trained_s2.safetensors")


def _full_stage2_generates(name):
    handle = loaders.PCDMLoader.execute(ckpt_name=name, precision="fp32").result[0]
    dino = loaders.DINOv2Loader.execute(clip_name="dinov2-giant.safetensors", precision="fp32").result[0]
    vae = loaders.VAELoader.execute(vae_name="sd21-base-vae.safetensors", precision="fp32").result[0]
    image = pcdm.PCDMInpaint.execute(handle, dino, vae, _image(1), steps=2, guidance=2.0, scheduler="unipc", seed=4,
                                     fit="pad", source_pose_keypoint=_pose(1), target_pose_keypoint=_pose(1, 3),
                                     target_embedding=torch.randn(1, EMBED), resolution=TINY_SIZE).result[0]
    assert image.shape[-1] == 3 and torch.isfinite(image).all()


def test_stage2_starts_from_a_diffusers_unet_folder(models_dir, people, tmp_path, monkeypatch):  # noqa: F811
    """As run_stage2.sh starts from stable-diffusion-2-1-base: its unet/ folder (config.json +
    diffusion_pytorch_model.safetensors; here a tiny UNet saved by diffusers), conv_in widened, new heads."""
    from diffusers import UNet2DConditionModel

    base = randomise(UNet2DConditionModel(**{**TINY_UNET, "in_channels": 4}), 9)
    base.save_pretrained(tmp_path / "sd21-base" / "unet")
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(models_dir))
    trained = _train(models_dir, tmp_path / "out", 2, tmp_path / "sd21-base", str(people[0]))
    assert trained["unet.conv_in.weight"].shape == (32, 9, 3, 3)
    assert {k.split(".")[0] for k in trained} == {"unet", "pose_proj", "image_proj_model_p"}
    assert "unet.class_embedding.linear_1.weight" in trained
    # The base weights were the start (one AdamW step at lr 1e-3 moves each by about 1e-3); conv_in's bias is kept.
    kept = {k: v for k, v in base.state_dict().items() if k != "conv_in.weight"}
    assert all(torch.allclose(trained["unet." + k], v, atol=2e-3) for k, v in kept.items())
    _full_stage2_generates("trained_s2.safetensors")


def test_stage2_simplified_model_writes_a_sample_sheet(models_dir, people, tmp_path, simplified_file):  # noqa: F811
    shutil.copy(simplified_file.with_suffix(".json"), tmp_path / "PCDMs_ckpt.json")
    shutil.copy(simplified_file, tmp_path / "PCDMs_ckpt.pt")
    trained = _train(models_dir, tmp_path / "out", 2, tmp_path / "PCDMs_ckpt.pt", str(people[0]), "--sample-every", "1")
    assert any(k.startswith("image_proj_model.") for k in trained)  # the simplified release's layout
    sheet = Image.open(tmp_path / "out" / "samples" / "step0000001.png")
    assert sheet.size == (4 * TINY_SIZE, 4 * TINY_SIZE)  # 4 pairs x [source | pose | generated | target]


def test_stage1_prior_trains_and_generates(models_dir, handles, people, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(models_dir))
    trained = _train(models_dir, tmp_path, 1, models_dir / "pcdms" / "s1_512.pt", str(people[0]))
    original = torch.load(models_dir / "pcdms" / "s1_512.pt", weights_only=True)["module"]
    assert set(trained) == set(original) and _changed(original, trained)
    prior = pcdm_stages.PCDMPriorLoader.execute(ckpt_name="trained_s1.safetensors", precision="fp32").result[0]
    embeds = pcdm_stages.PCDMPrior.execute(prior, handles["clip_vision"], _image(1), _pose(1), _pose(2, 1),
                                          **PRIOR_ARGS).result[0]
    assert embeds.shape == (2, EMBED) and torch.isfinite(embeds).all()


def test_stage3_refiner_trains_and_generates(models_dir, handles, people, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(models_dir))
    trained = _train(models_dir, tmp_path, 3, models_dir / "pcdms" / "s3_512.pt", str(people[0]),
                     "--coarse", str(people[1]), "--sample-every", "1")
    original = torch.load(models_dir / "pcdms" / "s3_512.pt", weights_only=True)["module"]
    assert set(trained) == set(original) and _changed(original, trained)
    assert Image.open(tmp_path / "samples" / "step0000001.png").size == (4 * TINY_SIZE, 4 * TINY_SIZE)
    refiner = pcdm_stages.PCDMRefinerLoader.execute(ckpt_name="trained_s3.safetensors", precision="fp32").result[0]
    image = pcdm_stages.PCDMRefine.execute(refiner, handles["dinov2"], handles["vae"], _image(1, 2), _image(1),
                                          **REFINE_ARGS).result[0]
    assert torch.isfinite(image).all()
