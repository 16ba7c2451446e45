"""SCFM model semantics: timestep embedding, sites, the null pass, MSFF attention, batching."""
import math

import torch
import torch.nn.functional as F

from posetransfer.models.scfm.blocks import timestep_embedding
from posetransfer.models.scfm.msff import ChannelAttention
from posetransfer.models.scfm.site import FlowSite


def _x(target_pose, seed):
    noise = torch.randn(target_pose.shape[0], 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    return torch.cat([noise, target_pose], 1)


def test_timestep_embedding_is_cos_first():
    t = torch.tensor([0.0, 37.5])
    emb = timestep_embedding(t, 8)
    freqs = torch.exp(-math.log(10000.0) * torch.arange(4) / 4)
    assert torch.allclose(emb[:, :4], torch.cos(t[:, None] * freqs))
    assert torch.allclose(emb[:, 4:], torch.sin(t[:, None] * freqs))


def test_flow_net_scales_and_mask_range(tiny_model, tiny_inputs):
    with torch.no_grad():
        condition = tiny_model.prepare_condition(*tiny_inputs(2, 4))
    assert {level: tuple(f.shape) for level, f in condition.flows.items()} == {3: (2, 2, 8, 8), 4: (2, 2, 4, 4), 5: (2, 2, 2, 2)}
    assert all(0 <= m.min() and m.max() <= 1 and m.shape[1] == 1 for m in condition.masks.values())
    assert sorted(condition.features) == [10, 11, 13, 14, 16, 17]


def test_null_items_skip_every_site_and_batching_is_exact(tiny_model, tiny_inputs):
    source, source_pose, target_pose = tiny_inputs(2, 5)
    x = _x(target_pose, 6)
    t = torch.tensor([500.0, 500.0])
    with torch.no_grad():
        condition = tiny_model.prepare_condition(source, source_pose, target_pose)
        batched = tiny_model(torch.cat([x, x]), torch.cat([t, t]), condition)
        guided = tiny_model(x, t, condition)
        unguided = tiny_model(x, t, None)
        other_source = tiny_model.prepare_condition(-source, source_pose, target_pose)
        guided_other = tiny_model(x, t, other_source)
    assert torch.allclose(batched[:2], guided, atol=1e-5)
    assert torch.allclose(batched[2:], unguided, atol=1e-5)
    assert (guided - unguided).abs().max() > 1e-2  # the sites matter ...
    assert (guided_other - guided).abs().max() > 1e-3  # ... and read the source image


def test_forward_is_deterministic(tiny_model, tiny_inputs):
    source, source_pose, target_pose = tiny_inputs(1, 7)
    x = _x(target_pose, 8)
    with torch.no_grad():
        runs = [tiny_model(x, torch.tensor([20.0]), tiny_model.prepare_condition(source, source_pose, target_pose))
                for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def _quiet_site(channels, level):
    """A site whose calibration displacement is zero (dispNet zeroed)."""
    site = FlowSite(channels, level).eval()
    torch.nn.init.zeros_(site.target.dispNet[0].weight)
    torch.nn.init.zeros_(site.target.dispNet[0].bias)
    return site


def test_level5_site_is_a_bilinear_warp_by_the_flow():
    site = _quiet_site(4, 5)
    gen = torch.Generator().manual_seed(9)
    hidden, feature = torch.randn(1, 4, 6, 6, generator=gen), torch.randn(1, 4, 6, 6, generator=gen)
    flow = torch.zeros(1, 2, 6, 6)
    flow[:, 0] = 1.0  # constant: the Gaussian recalibration of a constant flow leaves it unchanged
    with torch.no_grad():
        out = site(hidden, (feature, flow, torch.ones(1, 1, 6, 6)))
    shifted = torch.cat([feature[..., 1:], feature[..., -1:]], dim=-1)  # sample x+1, border repeated
    assert torch.allclose(out, hidden + shifted, atol=1e-5)


def test_level3_site_attention_averages_the_block_twice():
    # Uniform softmax (last conv zeroed): o = avg_pool_k(w * S) = (1/k^2) * sum_i (1/k^2) S_i, k = 3.
    site = _quiet_site(4, 3)
    head = site.target.attn0.fully_connect_layer[2]
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    gen = torch.Generator().manual_seed(10)
    hidden, feature = torch.randn(1, 4, 5, 5, generator=gen), torch.randn(1, 4, 5, 5, generator=gen)
    mask = torch.rand(1, 1, 5, 5, generator=gen)
    with torch.no_grad():
        out = site(hidden, (feature, torch.zeros(1, 2, 5, 5), mask))
    neighbourhood = F.avg_pool2d(F.pad(feature, (1, 1, 1, 1), mode="replicate"), 3, 1)  # mean of 3x3, border clamped
    warped = neighbourhood / 9.0
    assert torch.allclose(out, hidden + hidden * (1 - mask) + warped * mask, atol=1e-5)


def test_site_without_condition_is_identity():
    hidden = torch.randn(2, 4, 4, 4)
    assert torch.equal(FlowSite(4, 4)(hidden, None), hidden)


def test_msff_channel_attention_matches_the_formula():
    torch.manual_seed(11)
    channels, heads, tokens = (4, 4, 6), 3, 5
    attention = ChannelAttention(channels, heads, 0.0).double().eval()
    queries = [torch.randn(2, tokens, c, dtype=torch.float64) for c in channels]
    kv = torch.randn(2, tokens, sum(channels), dtype=torch.float64)
    got = attention(queries, kv)
    for index, (query, out) in enumerate(zip(queries, got), start=1):
        heads_out = []
        for h in range(heads):
            q = getattr(attention, f"query{index}")[h](query).transpose(1, 2)  # (B,C_i,T)
            k, v = attention.key[h](kv), attention.value[h](kv)  # (B,T,KV)
            scores = q @ k / math.sqrt(sum(channels))  # (B,C_i,KV)
            mean = scores.mean(dim=(1, 2), keepdim=True)
            var = scores.var(dim=(1, 2), unbiased=False, keepdim=True)
            probs = torch.softmax((scores - mean) / torch.sqrt(var + 1e-5), dim=2)
            heads_out.append(probs @ v.transpose(1, 2))  # (B,C_i,T)
        want = getattr(attention, f"out{index}")(torch.stack(heads_out).mean(0).transpose(1, 2))
        assert torch.allclose(out, want, atol=1e-12)
