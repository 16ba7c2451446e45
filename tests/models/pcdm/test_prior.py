"""PCDMs stage-1 prior: key layout, token order, x0 sampling with UnCLIP, normalisation, guidance, loading.

The references below are written from PCDMS.md §3.3/§7 with plain tensor maths (no diffusers blocks), so
they check our module against the documented architecture, not against itself.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from posetransfer.models.checkpoints import CheckpointError
from posetransfer.models.noise import seeded_noise
from posetransfer.models.pcdm import prior as prior_mod
from posetransfer.models.pcdm.prior import CLIP_EMBED_MEAN, CLIP_EMBED_STD, sample_prior
from posetransfer.models.pcdm.stages import build_prior, load_prior

WIDTH, LAYERS, EMB, POSE_HIDDEN = 64, 2, 1024, 512


def original_prior_shapes(width=WIDTH, layers=LAYERS):
    """Key names and shapes of a stage-1 file, as listed in PCDMS.md §3.3 (no prefix)."""
    shapes = {"positional_embedding": (1, 6, width), "prd_embedding": (1, 1, width),
              "time_embedding.linear_1.weight": (width, width), "time_embedding.linear_1.bias": (width,),
              "time_embedding.linear_2.weight": (width, width), "time_embedding.linear_2.bias": (width,),
              "norm_out.weight": (width,), "norm_out.bias": (width,),
              "proj_to_clip_embeddings.weight": (EMB, width), "proj_to_clip_embeddings.bias": (EMB,)}
    for name in ("pose_encoder", "pose_encoder1"):
        shapes.update({f"{name}.net.0.weight": (POSE_HIDDEN, 36), f"{name}.net.0.bias": (POSE_HIDDEN,),
                       f"{name}.net.3.weight": (POSE_HIDDEN,), f"{name}.net.3.bias": (POSE_HIDDEN,),
                       f"{name}.net.4.weight": (EMB, POSE_HIDDEN), f"{name}.net.4.bias": (EMB,),
                       f"{name}.net.6.weight": (EMB,), f"{name}.net.6.bias": (EMB,)})
    for name in ("proj_in", "embedding_proj", "encoder_hidden_states_proj", "encoder_hidden_states_proj1"):
        shapes.update({f"{name}.weight": (width, EMB), f"{name}.bias": (width,)})
    for n in range(layers):
        b = f"transformer_blocks.{n}."
        for norm in ("norm1", "norm3"):
            shapes.update({b + norm + ".weight": (width,), b + norm + ".bias": (width,)})
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            shapes.update({f"{b}attn1.{proj}.weight": (width, width), f"{b}attn1.{proj}.bias": (width,)})
        shapes.update({b + "ff.net.0.proj.weight": (4 * width, width), b + "ff.net.0.proj.bias": (4 * width,),
                       b + "ff.net.2.weight": (width, 4 * width), b + "ff.net.2.bias": (width,)})
    return shapes


def random_prior_state(seed=0, **kw):
    """Random weights in the original layout, rounded through fp16 like the released file."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in original_prior_shapes(**kw).items():
        value = torch.randn(shape, generator=gen) * 0.05
        if "norm" in key and key.endswith("weight") or ".net.3.weight" in key or ".net.6.weight" in key:
            value = value + 1.0
        state[key] = value.half()
    return state


def save_deepspeed(path, state):
    torch.save({"module": state, "global_steps": 1000, "ds_version": "0.10.0", "dp_world_size": 8}, path)
    return str(path)


# ------------------------------------------------------------------------------------- reference maths
def _ln(x, sd, key):
    return F.layer_norm(x, x.shape[-1:], sd[key + ".weight"], sd[key + ".bias"], 1e-5)


def _lin(x, sd, key):
    return x @ sd[key + ".weight"].T + sd[key + ".bias"]


def reference_forward(sd, x_t, t, src_emb, src_pose, tgt_pose, heads):
    """Stage1_PriorTransformer.forward written out: six tokens, biased self-attention blocks, last token read out."""
    sd = {k: v.float() for k, v in sd.items()}

    def mlp(p, name):
        h = F.gelu(_lin(p, sd, name + ".net.0"))
        return _ln(_lin(_ln(h, sd, name + ".net.3"), sd, name + ".net.4"), sd, name + ".net.6")

    width = sd["proj_in.weight"].shape[0]
    half = width // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    angle = torch.full((x_t.shape[0],), float(t))[:, None] * freqs[None]
    t_proj = torch.cat([torch.cos(angle), torch.sin(angle)], -1)  # flip_sin_to_cos=True
    time = _lin(F.silu(_lin(t_proj, sd, "time_embedding.linear_1")), sd, "time_embedding.linear_2")
    tokens = torch.stack([
        _lin(mlp(src_pose, "pose_encoder"), sd, "encoder_hidden_states_proj"),
        _lin(mlp(tgt_pose, "pose_encoder1"), sd, "encoder_hidden_states_proj1"),
        _lin(src_emb, sd, "embedding_proj"),
        time,
        _lin(x_t, sd, "proj_in"),
        sd["prd_embedding"][0, 0].expand(x_t.shape[0], -1),
    ], 1) + sd["positional_embedding"]
    n = 0
    while f"transformer_blocks.{n}.norm1.weight" in sd:
        b = f"transformer_blocks.{n}."
        h = _ln(tokens, sd, b + "norm1")
        q, k, v = (_lin(h, sd, b + "attn1." + p).unflatten(-1, (heads, -1)).transpose(1, 2) for p in ("to_q", "to_k", "to_v"))
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v
        tokens = tokens + _lin(attn.transpose(1, 2).flatten(2), sd, b + "attn1.to_out.0")
        h = _ln(tokens, sd, b + "norm3")
        tokens = tokens + _lin(F.gelu(_lin(h, sd, b + "ff.net.0.proj")), sd, b + "ff.net.2")
        n += 1
    return _lin(_ln(tokens, sd, "norm_out")[:, -1], sd, "proj_to_clip_embeddings")


def reference_sample(forward, src_emb, src_pose, tgt_pose, steps, seed, guidance=0.0):
    """UnCLIP (squaredcos_cap_v2, fixed_small_log, x0, clip 10) from the DDPM formulas; item i's noise from seed + i."""
    def alpha_bar(x):
        return math.cos((x + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = torch.tensor([min(1 - alpha_bar((i + 1) / 1000) / alpha_bar(i / 1000), 0.999) for i in range(1000)])
    acp = torch.cumprod(1 - betas, 0)
    ts = np.round(np.arange(steps) * (999 / (steps - 1)))[::-1].astype(int).tolist()
    gens = [torch.Generator().manual_seed(seed + i) for i in range(src_emb.shape[0])]
    x = torch.stack([torch.randn(EMB, generator=g) for g in gens])
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else t - 1
        x0 = forward(x, t, src_emb, src_pose, tgt_pose)
        if guidance > 1:
            x0_u = forward(x, t, torch.zeros_like(src_emb), src_pose, tgt_pose)
            x0 = x0_u + guidance * (x0 - x0_u)
        x0 = x0.clamp(-10, 10)
        a_t, a_prev = acp[t], (acp[prev] if prev >= 0 else torch.tensor(1.0))
        beta = betas[t] if prev == t - 1 else 1 - a_t / a_prev
        x = (a_prev.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t)) * x
        if t > 0:
            std = torch.exp(0.5 * torch.log(torch.clamp((1 - a_prev) / (1 - a_t) * beta, min=1e-20)))
            x = x + std * torch.stack([torch.randn(EMB, generator=g) for g in gens])
    return x * 0.415 - 0.016


def conditions(batch=1, seed=5):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, EMB, generator=gen) * 0.4, torch.rand(batch, 36, generator=gen),
            torch.rand(batch, 36, generator=gen))


@pytest.fixture(scope="module")
def state():
    return random_prior_state()


@pytest.fixture(scope="module")
def model(state):
    return build_prior(state, {"num_attention_heads": 4}, source="tiny")


# ------------------------------------------------------------------------------------- tests
def test_module_keys_are_the_original_names(state):
    model = build_prior(state)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == original_prior_shapes()
    assert model.config.num_heads == WIDTH // 64 and model.config.num_layers == LAYERS


def test_forward_matches_the_documented_token_order(model, state):
    src_emb, src_pose, tgt_pose = conditions(batch=2)
    x_t = torch.randn(2, EMB, generator=torch.Generator().manual_seed(1))
    ours = model(x_t, 733, src_emb, src_pose, tgt_pose)
    ref = reference_forward(state, x_t, 733, src_emb, src_pose, tgt_pose, heads=4)
    assert ours.shape == (2, EMB)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)
    swapped = reference_forward(state, x_t, 733, src_emb, tgt_pose, src_pose, heads=4)
    assert (ours - swapped).abs().max() > 1e-3  # source and target pose tokens are not interchangeable


@pytest.mark.parametrize("guidance", [0.0, 3.0])
def test_sampling_matches_unclip_reference_and_denormalises(model, state, guidance):
    src_emb, src_pose, tgt_pose = conditions(batch=2)
    ours = sample_prior(model, src_emb, src_pose, tgt_pose, steps=4, guidance=guidance, seed=11)
    ref = reference_sample(lambda *a: reference_forward(state, *a, heads=4), src_emb, src_pose, tgt_pose, 4, 11, guidance)
    torch.testing.assert_close(ours, ref, atol=5e-5, rtol=1e-4)
    assert ours.dtype == torch.float32 and ours.shape == (2, EMB)


def test_output_is_x0_denormalised_with_pcdm_constants(model, monkeypatch):
    # A model that always predicts x0 = 0 (normalised) must end at exactly the mean after the last step (t = 0).
    monkeypatch.setattr(type(model), "forward", lambda self, x, *a: torch.zeros_like(x))
    out = sample_prior(model, *conditions(), steps=3, seed=0)
    torch.testing.assert_close(out, torch.full((1, EMB), CLIP_EMBED_MEAN))
    assert (CLIP_EMBED_MEAN, CLIP_EMBED_STD) == (-0.016, 0.415)


def test_seeded_determinism_and_batch_independence(model):
    src_emb, src_pose, tgt_pose = conditions(batch=2)
    a = sample_prior(model, src_emb, src_pose, tgt_pose, steps=3, seed=7)
    b = sample_prior(model, src_emb, src_pose, tgt_pose, steps=3, seed=7)
    c = sample_prior(model, src_emb, src_pose, tgt_pose, steps=3, seed=8)
    single = sample_prior(model, src_emb[1:], src_pose[1:], tgt_pose[1:], steps=3, seed=8)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    torch.testing.assert_close(a[1], single[0])  # item i uses seed + i whatever the batch


def test_initial_draw_is_the_shared_noise_helper(model, monkeypatch):
    seen = {}
    original = prior_mod.make_prior_scheduler

    def spy():
        scheduler = original()
        step = scheduler.step

        def first_step(output, t, sample, **kw):
            seen.setdefault("x_T", sample.clone())
            return step(output, t, sample, **kw)
        scheduler.step = first_step
        return scheduler
    monkeypatch.setattr(prior_mod, "make_prior_scheduler", spy)
    sample_prior(model, *conditions(batch=3), steps=2, seed=4)
    assert torch.equal(seen["x_T"], seeded_noise((3, EMB), 4))


def test_broadcast_and_batch_errors(model):
    src_emb, src_pose, tgt_pose = conditions(batch=3)
    out = sample_prior(model, src_emb[:1], src_pose[:1], tgt_pose, steps=2)
    assert out.shape == (3, EMB)
    with pytest.raises(ValueError, match="batch sizes"):
        sample_prior(model, src_emb[:2], src_pose, tgt_pose, steps=2)
    with pytest.raises(ValueError, match="at least 2"):
        sample_prior(model, src_emb, src_pose, tgt_pose, steps=1)


def test_loads_deepspeed_and_safetensors_files(tmp_path, state):
    src = conditions()
    x_t = torch.randn(1, EMB)
    from_pt = load_prior(save_deepspeed(tmp_path / "s1_512.pt", state))
    save_file(state, str(tmp_path / "prior.safetensors"))
    from_st = load_prior(str(tmp_path / "prior.safetensors"))
    assert from_pt.proj_in.weight.dtype == torch.float32
    assert torch.equal(from_pt(x_t, 5, *src), from_st(x_t, 5, *src))


def test_side_config_sets_heads_and_bad_heads_error(tmp_path, state):
    path = save_deepspeed(tmp_path / "s1.pt", state)
    (tmp_path / "s1.json").write_text('{"num_attention_heads": 4, "attention_head_dim": 16}')
    assert load_prior(path).config.num_heads == 4
    (tmp_path / "s1.json").write_text('{"num_attention_heads": 3}')
    with pytest.raises(CheckpointError, match="heads"):
        load_prior(path)


def test_stage2_file_given_to_prior_loader_names_its_kind(tmp_path):
    stage2 = {"unet.conv_in.weight": torch.zeros(8, 9, 3, 3), "unet.class_embedding.linear_1.weight": torch.zeros(8, 4),
              "pose_proj.conv_in.weight": torch.zeros(4, 3, 3, 3), "image_proj_model_p.net.0.weight": torch.zeros(4, 4)}
    path = save_deepspeed(tmp_path / "s1_512.pt", stage2)
    with pytest.raises(CheckpointError, match="stage-2 inpainting model.*stage-1 prior"):
        load_prior(path)


def test_missing_block_weight_is_named(tmp_path, state):
    broken = dict(state)
    del broken["transformer_blocks.1.attn1.to_k.bias"]
    with pytest.raises(CheckpointError, match="transformer_blocks.1.attn1.to_k.bias"):
        build_prior(broken, source="broken.pt")
