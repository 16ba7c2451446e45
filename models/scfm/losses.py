"""SCFM's training objective (diffusion.py `training_losses`, improved-DDPM formulas), SCFM.md §5.

loss = MSE(eps) + VB, where VB is the variational-bound term that trains the learned-range variance
(log var = frac * log beta_t + (1 - frac) * log beta~_t, frac = (v + 1) / 2) with the mean prediction frozen.
In bits per dimension, KL for t > 0 and the discretised decoder NLL at t = 0. The original adds GFLA's
VGG19 sampling-correctness and flow-regularisation losses; those need torchvision VGG19 weights and are not
part of this objective.
"""
from __future__ import annotations

import math

import torch

from .sampler import betas

IMAGE_CHANNELS = 3


class DiffusionTerms:
    """float64 schedule quantities of the 1000-step linear schedule, indexed by integer timesteps."""

    def __init__(self) -> None:
        beta = betas()
        alphas = 1 - beta
        self.betas = beta
        self.alpha_bar = alphas.cumprod(0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        variance = beta * (1 - alpha_bar_prev) / (1 - self.alpha_bar)
        # The posterior variance is 0 at t = 0; the log uses the t = 1 value there (clipped).
        self.posterior_log_variance = torch.log(torch.cat([variance[1:2], variance[1:]]))
        self.posterior_coef_x0 = beta * alpha_bar_prev.sqrt() / (1 - self.alpha_bar)
        self.posterior_coef_xt = (1 - alpha_bar_prev) * alphas.sqrt() / (1 - self.alpha_bar)

    def at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values[t.cpu()].to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ab = self.at(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.at(self.posterior_coef_x0, t, x0) * x0 + self.at(self.posterior_coef_xt, t, x_t) * x_t


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log p(x) of 8-bit images in [-1,1] under a Gaussian discretised into 256 bins (edges at +-1 open)."""
    centred = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _approx_standard_normal_cdf(inv_std * (centred + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_std * (centred - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def diffusion_loss(terms: DiffusionTerms, output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                   noise: torch.Tensor) -> dict[str, torch.Tensor]:
    """output [B,6,H,W] (eps, variance interpolant v in [-1,1]) -> per-item "mse", "vb" and "loss" [B]."""
    eps, v = output[:, :IMAGE_CHANNELS], output[:, IMAGE_CHANNELS:]
    mse = ((noise - eps) ** 2).flatten(1).mean(1)
    eps = eps.detach()  # the VB term trains only the variance
    ab = terms.at(terms.alpha_bar, t, x_t)
    min_log = terms.at(terms.posterior_log_variance, t, x_t)
    max_log = terms.at(torch.log(terms.betas), t, x_t)
    frac = (v + 1) / 2
    log_variance = frac * max_log + (1 - frac) * min_log
    pred_x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
    model_mean = terms.posterior_mean(pred_x0, x_t, t)
    true_mean = terms.posterior_mean(x0, x_t, t)
    kl = normal_kl(true_mean, min_log, model_mean, log_variance).flatten(1).mean(1) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * log_variance).flatten(1).mean(1) / math.log(2.0)
    vb = torch.where(t.to(kl.device) == 0, nll, kl)
    return {"mse": mse, "vb": vb, "loss": mse + vb}
