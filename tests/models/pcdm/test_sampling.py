"""The guided denoising loop: CFG formula, halves batched or sequential, rescale, progress and interrupt."""
import pytest
import torch

from posetransfer.models.pcdm.sampling import Branch, denoise, rescale_noise_cfg
from posetransfer.models.pcdm.schedulers import make_scheduler


class Recorder:
    """A linear fake model that remembers every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, encoder_hidden_states, pose_residual):
        self.calls.append((x.clone(), t, encoder_hidden_states.clone(), pose_residual.clone()))
        scale = 1.0 + encoder_hidden_states.mean(dim=(1, 2))[:, None, None, None]
        return 0.1 * x[:, :4] * scale + pose_residual[:, :4]


def _branches(batch=2):
    g = torch.Generator().manual_seed(0)
    concat = torch.randn(batch, 5, 4, 4, generator=g)
    pose = torch.randn(batch, 8, 4, 4, generator=g)
    cond = Branch(concat, {"encoder_hidden_states": torch.randn(batch, 3, 6, generator=g), "pose_residual": pose})
    uncond = Branch(concat, {"encoder_hidden_states": torch.zeros(batch, 3, 6), "pose_residual": pose})
    return cond, uncond


def _run(sequential=False, guidance=2.0, rescale=0.0, progress=None, model=None):
    scheduler = make_scheduler("ddim")
    scheduler.set_timesteps(3)
    cond, uncond = _branches()
    latents = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    return denoise(model or Recorder(), latents, scheduler, cond, uncond, guidance_scale=guidance,
                   guidance_rescale=rescale, sequential_guidance=sequential, progress=progress)


def test_batched_and_sequential_halves_agree():
    torch.testing.assert_close(_run(sequential=False), _run(sequential=True), atol=1e-6, rtol=1e-6)


def test_one_step_is_cfg_formula_with_uncond_first_and_shared_pose():
    model = Recorder()
    scheduler = make_scheduler("ddim")
    scheduler.set_timesteps(1)
    cond, uncond = _branches()
    latents = torch.randn(2, 4, 4, 4)
    out = denoise(model, latents, scheduler, cond, uncond, guidance_scale=3.0)
    (x, t, tokens, pose), = model.calls
    assert x.shape == (4, 9, 4, 4) and torch.equal(tokens[:2], torch.zeros(2, 3, 6))  # [uncond, cond]
    assert torch.equal(pose[:2], pose[2:])  # the pose residual is the same in both halves
    assert torch.equal(x[:, 4:], torch.cat([cond.concat, cond.concat]))
    eps_c = model(torch.cat([latents, cond.concat], 1), t, **cond.kwargs)
    eps_u = model(torch.cat([latents, uncond.concat], 1), t, **uncond.kwargs)
    reference = make_scheduler("ddim")
    reference.set_timesteps(1)
    expected = reference.step(eps_u + 3.0 * (eps_c - eps_u), t, latents).prev_sample
    torch.testing.assert_close(out, expected)


def test_guidance_one_runs_only_the_conditional_half():
    model = Recorder()
    _run(guidance=1.0, model=model)
    assert all(call[0].shape[0] == 2 for call in model.calls)


def test_rescale_formula():
    cond, guided = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3) * 3
    out = rescale_noise_cfg(guided, cond, 0.7)
    item = guided[1] * cond[1].std() / guided[1].std()
    torch.testing.assert_close(out[1], 0.7 * item + 0.3 * guided[1])
    torch.testing.assert_close(rescale_noise_cfg(guided, cond, 0.0), guided)
    assert not torch.allclose(_run(rescale=0.7), _run())


def test_progress_each_step_and_interrupt_raises_inside():
    seen = []
    _run(progress=lambda step, total: seen.append((step, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]

    class Interrupted(Exception):
        pass

    def interrupt(step, total):
        if step == 2:
            raise Interrupted

    model = Recorder()
    with pytest.raises(Interrupted):
        _run(progress=interrupt, model=model)
    assert len(model.calls) == 2
