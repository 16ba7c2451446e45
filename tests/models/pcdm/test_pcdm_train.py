"""PCDMs training objectives and the loop's data/randomness contract (single process, tiny models)."""
import copy

import torch
import torch.nn.functional as F

from posetransfer.models.encoders import clip_preprocess, encode_dino_pixels
from posetransfer.models.pcdm.train import PairItem, Stage2Objective
from posetransfer.models.training import batch_indices, step_generator


def test_batch_indices_split_each_global_batch_between_ranks_and_cover_each_epoch():
    world, batch, count = 2, 3, 12
    for step in range(4):  # 2 steps per epoch of 12 items
        per_rank = [batch_indices(step, r, world, batch, count, seed=5) for r in range(world)]
        assert not set(per_rank[0]) & set(per_rank[1])
    epoch = [i for step in range(2) for r in range(world) for i in batch_indices(step, r, world, batch, count, 5)]
    assert sorted(epoch) == list(range(count))
    assert batch_indices(3, 1, world, batch, count, 5) == batch_indices(3, 1, world, batch, count, 5)
    assert batch_indices(2, 0, world, batch, count, 5) != batch_indices(2, 0, world, batch, count, 6)
    first, again = (torch.rand(3, generator=step_generator(1, 2, 0)) for _ in range(2))
    assert torch.equal(first, again)


def test_stage2_loss_is_the_scripts_objective(stage2_parts):
    """Recomputed here as stage2_train_inpaint_model.py writes it, from the same draws in the documented order."""
    from diffusers import DDPMScheduler

    model, _, vae, dino = (copy.deepcopy(m) for m in stage2_parts)  # the objective switches them to training
    gen = torch.Generator().manual_seed(0)
    items = [PairItem(*(torch.rand(3, 64, 64, generator=gen) for _ in range(4))) for _ in range(2)]
    objective = Stage2Objective(model, vae, dino, dropout=0.5)
    loss = objective.loss(objective.trainable(), items, torch.Generator().manual_seed(9))["loss"]

    g = torch.Generator().manual_seed(9)
    source = torch.stack([i.source for i in items])
    target = torch.stack([i.target for i in items])
    keep_p = (torch.rand(2, generator=g) >= 0.5).float().view(-1, 1, 1, 1)
    torch.rand(2, generator=g)  # the CLIP-image dropout draw (unused by the simplified model)

    def sample(images):
        dist = vae.encode(images * 2 - 1).latent_dist
        return (dist.mean + dist.std * torch.randn(dist.mean.shape, generator=g)) * 0.18215

    with torch.no_grad():
        latents = sample(torch.cat([source, target], -1))
        masked = sample(torch.cat([source, torch.zeros_like(source)], -1))
        tokens = model.image_proj(encode_dino_pixels(dino, clip_preprocess(source) * keep_p))
    noise = torch.randn(latents.shape, generator=g) + 0.1 * torch.randn(2, 4, 1, 1, generator=g)
    t = torch.randint(0, 1000, (2,), generator=g)
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    noisy = scheduler.add_noise(latents, noise, t)
    mask = torch.cat([torch.ones(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)], dim=3)
    poses = torch.cat([torch.stack([i.source_pose for i in items]), torch.stack([i.target_pose for i in items])], -1)
    pred = model.unet(torch.cat([noisy, mask, masked], 1), t, encoder_hidden_states=tokens,
                      pose_residual=model.pose_proj(poses * 2 - 1))
    want = F.mse_loss(pred.float(), noise.float())
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-7)
    assert keep_p.min() == 0  # this seed drops one source image, so the dropout path is exercised


def test_bf16_checkpointing_and_ema_publish_the_average(stage2_parts, tmp_path):
    from safetensors.torch import load_file

    from posetransfer.models.training import LoopSettings, train_loop

    model, _, vae, dino = (copy.deepcopy(m) for m in stage2_parts)
    objective = Stage2Objective(model, vae, dino)
    gen = torch.Generator().manual_seed(1)
    data = [PairItem(*(torch.rand(3, 64, 64, generator=gen) for _ in range(4)), index=i) for i in range(3)]
    seen = []
    settings = LoopSettings(steps=2, batch_size=1, lr=1e-3, mixed_precision="bf16", gradient_checkpointing=True,
                            ema_decay=0.5, save_every=10)
    weights = train_loop(objective, data, settings, tmp_path, name="s2", log=lambda step, v: seen.append(v))
    assert [round(v["lr"], 6) for v in seen] == [1e-3, 1e-3]
    assert all(torch.isfinite(torch.tensor(v["loss"])) for v in seen)
    assert objective.net.model.unet.unet.down_blocks[0].gradient_checkpointing
    published = load_file(weights)
    raw = load_file(tmp_path / "state" / "model.safetensors")
    ema = load_file(tmp_path / "state" / "ema.safetensors")
    key = "conv_in.weight"
    assert torch.equal(published["unet." + key], ema["model.unet.unet." + key])
    assert not torch.equal(published["unet." + key], raw["model.unet.unet." + key])
