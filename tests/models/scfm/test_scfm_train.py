"""SCFM training: the objective's formulas, and a few-step resumable run on a tiny synthetic dataset."""
import argparse
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from posetransfer.cli import scfm as scfm_cli
from posetransfer.models.scfm.checkpoint import load_scfm
from posetransfer.models.scfm.losses import DiffusionTerms, diffusion_loss
from posetransfer.cli.scfm_data import PairFolder, find_pairs
from posetransfer.models.scfm.train import TrainSettings, learning_rate, train
from posetransfer.models.scfm.vgg import load_vgg19

from .test_scfm_flow_losses import tiny_vgg_state

BODY = [[32, 10], [32, 18], [26, 18], [24, 28], [23, 36], [38, 18], [40, 28], [41, 36], [28, 38],
        [28, 48], [28, 58], [36, 38], [36, 48], [36, 58], [30, 8], [34, 8], [-1, -1], [-1, -1]]


def test_loss_is_zero_for_a_perfect_prediction_and_positive_otherwise():
    terms = DiffusionTerms()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 4, 4, generator=gen) * 2 - 1
    noise = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64).float()
    t = torch.tensor([10, 700])
    x_t = terms.q_sample(x0, t, noise)
    # eps exact and v = -1 (log variance = the true posterior's): MSE and KL both vanish.
    perfect = torch.cat([noise, -torch.ones_like(noise)], 1)
    losses = diffusion_loss(terms, perfect, x0, x_t, t, noise)
    assert losses["loss"].abs().max() < 1e-4
    # v = +1 picks log beta_t: KL = 0.5 * (r - 1 - log r) / ln 2 with r = beta~_t / beta_t.
    wider = diffusion_loss(terms, torch.cat([noise, torch.ones_like(noise)], 1), x0, x_t, t, noise)["vb"]
    ratio = torch.exp(terms.posterior_log_variance[t] - torch.log(terms.betas[t]))
    want = 0.5 * (ratio - 1 - torch.log(ratio)) / math.log(2.0)
    assert torch.allclose(wider.double(), want, rtol=1e-3)
    # t = 0 uses the discretised decoder NLL (bits per dim), positive.
    t0 = torch.tensor([0, 0])
    assert (diffusion_loss(terms, perfect, x0, terms.q_sample(x0, t0, noise), t0, noise)["vb"] > 0).all()


def _dataset(root):
    for person in range(2):
        folder = root / f"person{person}"
        folder.mkdir(parents=True)
        for index in range(2):
            rng = np.random.default_rng(person * 10 + index)
            Image.fromarray(rng.integers(0, 256, (72, 56, 3), dtype=np.uint8)).save(folder / f"{index}.png")
            flat = []
            for x, y in BODY:
                flat += [0, 0, 0] if x < 0 else [x * 56 / 64 + index, y * 72 / 64, 1.0]
            (folder / f"{index}.json").write_text(json.dumps(
                {"people": [{"pose_keypoints_2d": flat}], "canvas_width": 56, "canvas_height": 72}))


def test_data_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_pairs(tmp_path / "absent")
    (tmp_path / "solo").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "solo" / "a.png")
    with pytest.raises(FileNotFoundError, match="a.png"):
        find_pairs(tmp_path)


def test_default_schedule_reaches_its_rate_and_averages_over_the_run():
    short = TrainSettings(steps=1000).resolved()
    assert (short.warmup, short.ema_decay) == (50, pytest.approx(0.99))
    assert learning_rate(short, 1) == pytest.approx(2e-5 * (0.04 + 0.96 / 50))
    assert learning_rate(short, 50) == learning_rate(short, 1000) == pytest.approx(2e-5)
    full = TrainSettings(steps=2_400_000).resolved()  # the original's run: its own constants
    assert (full.warmup, full.ema_decay) == (5000, 0.9999)
    assert TrainSettings(steps=1000, warmup=7, ema_decay=0.5).resolved().warmup == 7


def test_vgg_is_required_unless_the_correctness_loss_is_off(tmp_path, tiny_config):
    _dataset(tmp_path / "data")
    with pytest.raises(ValueError, match="VGG19"):
        train(tmp_path / "data", tmp_path / "o.pt", settings=TrainSettings(steps=1), config=tiny_config)


def test_few_steps_train_resume_and_load(tmp_path, tiny_config):
    _dataset(tmp_path / "data")
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "person0" / "0_pose.png")  # the `pose` command's render: no photo
    assert len(find_pairs(tmp_path / "data")) == 4
    torch.save(tiny_vgg_state(), tmp_path / "vgg19.pth")
    vgg = load_vgg19(tmp_path / "vgg19.pth")
    out = tmp_path / "scfm_last.pt"
    seen = []
    settings = TrainSettings(steps=2, batch_pairs=1, warmup=2, save_every=2)
    train(PairFolder(tmp_path / "data"), out, settings=settings, config=tiny_config, vgg=vgg,
          log=lambda step, l: seen.append((step, l)))
    assert [step for step, _ in seen] == [1, 2] and all(math.isfinite(l["loss"]) for _, l in seen)
    parts = seen[0][1]
    assert {"mse", "vb", "diffusion", "correctness", "regularisation"} <= set(parts)
    assert parts["loss"] == pytest.approx(parts["diffusion"] + parts["correctness"] + 0.0025 * parts["regularisation"],
                                          rel=1e-5)
    first = torch.load(out, weights_only=True)
    assert int(first["step"]) == 2 and first["optimizer"]["state"]
    # Resume: only step 3 runs; the optimizer state and weights continue from the file.
    train(PairFolder(tmp_path / "data"), out, settings=TrainSettings(steps=3, batch_pairs=1, warmup=2, save_every=10,
                                                                     lambda_correctness=0.0),
          log=lambda step, l: seen.append((step, l)))
    assert [step for step, _ in seen] == [1, 2, 3]
    second = torch.load(out, weights_only=True)
    assert int(second["step"]) == 3
    changed = [k for k in first["model"] if not torch.equal(first["model"][k], second["model"][k])]
    assert changed  # step 3 updated the weights
    model = load_scfm(out)  # the "ema" entry, through the pack's reader
    assert model.config == tiny_config
    assert all(torch.equal(v, second["ema"][k]) for k, v in model.state_dict().items())


def test_cli_registers_scfm_train(tmp_path, tiny_config):
    parser = argparse.ArgumentParser()
    scfm_cli.register(parser.add_subparsers())
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in vars(tiny_config).items()}))
    _dataset(tmp_path / "data")
    args = parser.parse_args(["scfm-train", str(tmp_path / "data"), "--out", str(tmp_path / "o.pt"), "--config",
                              str(config), "--steps", "1", "--batch-pairs", "1", "--device", "cpu"])
    with pytest.raises(ValueError, match="--vgg PATH"):
        args.func(args)
    torch.save(tiny_vgg_state(), tmp_path / "vgg19.pth")
    args = parser.parse_args(["scfm-train", str(tmp_path / "data"), "--out", str(tmp_path / "o.pt"), "--config",
                              str(config), "--steps", "1", "--batch-pairs", "1", "--device", "cpu",
                              "--vgg", str(tmp_path / "vgg19.pth")])
    assert args.func(args) == 0
    assert load_scfm(tmp_path / "o.pt").config == tiny_config


@pytest.mark.parametrize("damage", ["missing_key", "misshaped_key", "other_family"])
def test_init_file_that_does_not_build_names_the_file(tmp_path, tiny_model, damage):
    """--init goes through the loader node's path (`load_scfm`): a near-miss file gives the pack's error naming it."""
    from safetensors.torch import save_file

    from posetransfer.models.checkpoints import CheckpointError

    weights = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    if damage == "missing_key":
        del weights["out.2.weight"]
    elif damage == "misshaped_key":
        weights["output_blocks.17.0.in_layers.2.weight"] = weights["output_blocks.17.0.in_layers.2.weight"][:4]
    else:
        weights = {"image_proj_model_p.net.0.weight": torch.zeros(4, 3), "unet.conv_in.weight": torch.zeros(8, 8, 3, 3)}
    init = tmp_path / "near_miss.safetensors"
    save_file(weights, str(init))
    with pytest.raises(CheckpointError, match=r"near_miss\.safetensors") as error:
        train(tmp_path / "data", tmp_path / "o.pt", settings=TrainSettings(steps=1, lambda_correctness=0.0), init=str(init))
    assert "SCFM" in str(error.value)
    assert not (tmp_path / "o.pt").exists()
