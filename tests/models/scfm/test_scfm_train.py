"""SCFM training: the objective's formulas, the original's schedule on the shared loop, and few-step runs on a tiny
synthetic dataset (resumable, bf16). Data-parallel runs: tests/models/test_training_distributed.py; the command
line and the loader node: tests/nodes/test_scfm_train_nodes.py."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from posetransfer.cli.scfm_data import PairFolder, find_pairs
from posetransfer.models.scfm.checkpoint import load_scfm
from posetransfer.models.scfm.losses import DiffusionTerms, diffusion_loss
from posetransfer.models.scfm.train import SCFMObjective, initial_model, loop_settings
from posetransfer.models.scfm.vgg import load_vgg19
from posetransfer.models.training import TrainingSetupError, learning_rate, make_accelerator, train_loop

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
    short = loop_settings(steps=1000)
    assert (short.warmup, short.ema_decay, short.ema_start) == (50, pytest.approx(0.99), 50)
    assert (short.lr, short.weight_decay, short.max_grad_norm) == (2e-5, 0.0, 1.0)  # Adam, clipped to 1
    assert learning_rate(short, 1) == pytest.approx(2e-5 * (0.04 + 0.96 / 50))
    assert learning_rate(short, 50) == learning_rate(short, 1000) == pytest.approx(2e-5)
    full = loop_settings(steps=2_400_000)  # the original's run: its own constants
    assert (full.warmup, full.ema_decay) == (5000, 0.9999)
    assert loop_settings(steps=1000, warmup=7, ema_decay=0.5, batch_size=3).warmup == 7


def test_vgg_is_required_unless_the_correctness_loss_is_off(tiny_config):
    with pytest.raises(ValueError, match="VGG19"):
        SCFMObjective(initial_model(config=tiny_config))
    assert SCFMObjective(initial_model(config=tiny_config), lambda_correctness=0.0).vgg is None


@pytest.fixture
def pairs(tmp_path, tiny_config):
    _dataset(tmp_path / "data")
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "person0" / "0_pose.png")  # the `pose` command's render: no photo
    return PairFolder(tmp_path / "data", tiny_config.image_size)


@pytest.fixture
def vgg(tmp_path):
    torch.save(tiny_vgg_state(), tmp_path / "vgg19.pth")
    return load_vgg19(tmp_path / "vgg19.pth")


def test_few_steps_train_resume_and_load(tmp_path, tiny_config, pairs, vgg):
    assert len(pairs) == 4
    item = pairs[1]
    assert item.first.shape == item.second.shape == (3, 64, 64) and item.first_pose.shape == (20, 64, 64)
    out = tmp_path / "run"
    seen = []
    settings = loop_settings(steps=2, batch_size=1, warmup=3, save_every=2, sample_every=2)
    train_loop(SCFMObjective(initial_model(config=tiny_config), vgg, sample_steps=2), pairs, settings, out,
               name="scfm", log=lambda step, values: seen.append((step, values)))
    assert [step for step, _ in seen] == [1, 2] and all(math.isfinite(v["loss"]) for _, v in seen)
    parts = seen[0][1]
    assert {"mse", "vb", "diffusion", "correctness", "regularisation"} <= set(parts)
    assert parts["loss"] == pytest.approx(parts["diffusion"] + parts["correctness"] + 0.0025 * parts["regularisation"],
                                          rel=1e-5)
    assert parts["lr"] == pytest.approx(2e-5 * (0.04 + 0.96 / 3))
    # [source | target pose | generated | target] for the 4 first pairs
    assert Image.open(out / "samples" / "step0000002.png").size == (4 * 64, 4 * 64)
    first = load_file(out / "state" / "model.safetensors")
    # During the warm-up the EMA is a plain copy of the weights (the original's accumulate(..., 0)).
    published = load_file(out / "scfm.safetensors")
    assert all(torch.equal(published[k], first["model." + k]) for k in published)
    # Resume: only step 3 runs, from the saved weights and optimizer state; from the warm-up's last step on
    # the EMA averages.
    train_loop(SCFMObjective(initial_model(config=tiny_config), vgg), pairs, loop_settings(
        steps=3, batch_size=1, warmup=3, ema_decay=0.5, save_every=10), out, name="scfm",
        log=lambda step, values: seen.append((step, values)))
    assert [step for step, _ in seen] == [1, 2, 3]
    second = load_file(out / "state" / "model.safetensors")
    assert any(not torch.equal(first[k], second[k]) for k in first)  # step 3 updated the weights
    model = load_scfm(out / "scfm.safetensors")  # through the pack's reader
    assert model.config == tiny_config
    for key, value in model.state_dict().items():
        if value.is_floating_point() and key in dict(model.named_parameters()):
            assert torch.allclose(value, 0.5 * first["model." + key] + 0.5 * second["model." + key], atol=1e-7)


def test_one_bf16_step_on_the_cpu(tmp_path, tiny_config, pairs, vgg):
    settings = loop_settings(steps=1, batch_size=1, warmup=0, mixed_precision="bf16")
    model = initial_model(config=tiny_config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    train_loop(SCFMObjective(model, vgg), pairs, settings, tmp_path / "bf16", name="scfm",
               accelerator=make_accelerator(settings, cpu=True), log=lambda step, values: seen.append(values))
    assert math.isfinite(seen[0]["loss"])
    written = load_file(tmp_path / "bf16" / "scfm.safetensors")
    assert all(v.dtype == torch.float32 for v in written.values() if v.is_floating_point())  # float32 master weights
    assert any(not torch.equal(before[k], written[k]) for k in written if written[k].is_floating_point())


def test_fp16_needs_a_gpu():
    with pytest.raises(TrainingSetupError, match="bf16"):
        make_accelerator(loop_settings(steps=1, mixed_precision="fp16"), cpu=True)


def test_output_folder_must_not_be_a_file(tmp_path, tiny_config, pairs):
    (tmp_path / "scfm_last.pt").write_bytes(b"an old checkpoint")
    with pytest.raises(TrainingSetupError, match="--init"):
        train_loop(SCFMObjective(initial_model(config=tiny_config), lambda_correctness=0.0), pairs,
                   loop_settings(steps=1), tmp_path / "scfm_last.pt")


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
        initial_model(str(init))
    assert "SCFM" in str(error.value)
