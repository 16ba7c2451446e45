"""Scheduler configs of the originals: DDIM leading+offset (demo), UniPC linspace with sigma_min final (paper)."""
import math

import pytest
import torch

from posetransfer.models.pcdm.schedulers import SCHEDULERS, make_scheduler


def test_ddim_demo_timesteps_and_final_alpha():
    scheduler = make_scheduler("ddim")
    scheduler.set_timesteps(50)
    assert scheduler.timesteps.tolist() == list(range(981, 0, -20))
    # last step: t = 1 -> prev -19 -> alpha_bar_prev = alpha_bar_0 (set_alpha_to_one False), not 1
    assert scheduler.final_alpha_cumprod.item() == pytest.approx(scheduler.alphas_cumprod[0].item())
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float32) ** 2  # scaled_linear
    torch.testing.assert_close(scheduler.alphas_cumprod, torch.cumprod(1 - betas, 0))


def test_ddim_step_is_eta0_formula():
    scheduler = make_scheduler("ddim")
    scheduler.set_timesteps(50)
    x, eps = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    t = 1
    a_t, a_prev = scheduler.alphas_cumprod[t], scheduler.alphas_cumprod[0]
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    torch.testing.assert_close(scheduler.step(eps, t, x).prev_sample, expected)


def test_unipc_paper_timesteps_and_final_sigma():
    scheduler = make_scheduler("unipc")
    scheduler.set_timesteps(20)
    assert scheduler.timesteps.tolist() == [999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400,
                                            350, 300, 250, 200, 150, 100, 50]
    a0 = scheduler.alphas_cumprod[0].item()
    assert scheduler.sigmas[-1].item() == pytest.approx(math.sqrt((1 - a0) / a0), rel=1e-5)
    assert scheduler.config.solver_type == "bh2" and scheduler.config.predict_x0
    assert scheduler.config.lower_order_final and not scheduler.config.disable_corrector


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_choice_runs_with_sd21_betas(name):
    scheduler = make_scheduler(name)
    scheduler.set_timesteps(4)
    assert len(scheduler.timesteps) == 4
    assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.prediction_type == "epsilon"


def test_unknown_scheduler():
    with pytest.raises(ValueError, match="ddim"):
        make_scheduler("plms")
