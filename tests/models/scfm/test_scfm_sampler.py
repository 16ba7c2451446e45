"""SCFM guided DDIM against a literal transcription of the original's `ddim_steps`."""
import pytest
import torch

from posetransfer.models.scfm import sampler


def test_schedule_matches_the_original():
    assert sampler.ddim_timesteps(50) == list(range(980, -1, -20))
    assert sampler.ddim_timesteps(4) == [750, 500, 250, 0]
    assert sampler.ddim_timesteps(3) == [666, 333, 0]  # the original's range would add 999
    with pytest.raises(ValueError, match="steps"):
        sampler.ddim_timesteps(0)
    bar = sampler.alpha_bar(torch.tensor([-1, 0, 999]))
    assert bar.dtype == torch.float64
    assert bar[0] == 1.0 and bar[1] == 1 - 1e-4
    assert torch.isclose(bar[2], torch.prod(1 - torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64)))


def test_single_draw_noise_equals_the_originals_global_draw():
    torch.manual_seed(123)
    want = torch.randn(3, 3, 8, 8)
    assert torch.equal(sampler.initial_noise(3, 8, 123, per_item=False), want)
    per_item = sampler.initial_noise(3, 8, 123)
    assert torch.equal(per_item[1], sampler.initial_noise(1, 8, 124)[0])


def _reference_ddim(model, source, source_pose, target_pose, noise, steps, scale):
    """diffusion.ddim_steps: unbatched cond/null passes, float64 update, eta 0."""
    b = torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64)

    def compute_alpha(t):
        return (1 - torch.cat([torch.zeros(1, dtype=torch.float64), b])).cumprod(0).index_select(0, t + 1).view(-1, 1, 1, 1)

    seq = range(0, 1000, 1000 // steps)
    seq_next = [-1] + list(seq[:-1])
    xt, n = noise, noise.shape[0]
    condition = model.prepare_condition(source, source_pose, target_pose)
    for i, j in zip(reversed(seq), reversed(seq_next)):
        t, next_t = torch.ones(n) * i, torch.ones(n) * j
        at, at_next = compute_alpha(t.long()), compute_alpha(next_t.long())
        x = torch.cat([xt, target_pose], 1)
        logits, null_logits = model(x, t, condition), model(x, t, None)
        et = (null_logits + (logits - null_logits) * scale)[:, :3]
        x0_t = (xt - et * (1 - at).sqrt()) / at.sqrt()
        xt = at_next.sqrt() * x0_t + (1 - at_next).sqrt() * et
    return (torch.clamp(xt, -1.0, 1.0) + 1.0) / 2.0


def test_sample_matches_the_original_loop(tiny_model, tiny_inputs):
    source, source_pose, target_pose = tiny_inputs(2, 12)
    noise = sampler.initial_noise(2, 64, 5)
    calls = []
    with torch.no_grad():
        got = sampler.sample(tiny_model, source, source_pose, target_pose, noise, steps=2,
                             progress=lambda step, total: calls.append((step, total)))
        want = _reference_ddim(tiny_model, source, source_pose, target_pose, noise, 2, 2.0)
    assert calls == [(1, 2), (2, 2)]
    assert got.dtype == torch.float32 and got.shape == (2, 3, 64, 64)
    assert 0.0 <= got.min() and got.max() <= 1.0
    assert torch.allclose(got, want.float(), atol=1e-5)


def test_guidance_one_uses_the_conditional_pass_only(tiny_model, tiny_inputs):
    source, source_pose, target_pose = tiny_inputs(1, 13)
    noise = sampler.initial_noise(1, 64, 6)
    with torch.no_grad():
        got = sampler.sample(tiny_model, source, source_pose, target_pose, noise, steps=1, guidance=1.0)
        want = _reference_ddim(tiny_model, source, source_pose, target_pose, noise, 1, 1.0)
    assert torch.allclose(got, want.float(), atol=1e-5)


def test_interrupt_from_progress_stops_sampling(tiny_model, tiny_inputs):
    class Interrupted(Exception):
        pass

    def progress(step, total):
        if step == 1:
            raise Interrupted

    source, source_pose, target_pose = tiny_inputs(1, 14)
    with pytest.raises(Interrupted):
        sampler.sample(tiny_model, source, source_pose, target_pose, sampler.initial_noise(1, 64, 0), steps=5,
                       progress=progress)


def test_mismatched_batches_are_rejected(tiny_model, tiny_inputs):
    source, source_pose, target_pose = tiny_inputs(2, 15)
    with pytest.raises(ValueError, match="batch"):
        sampler.sample(tiny_model, source, source_pose[:1], target_pose, sampler.initial_noise(2, 64, 0), steps=1)
