"""Noise schedulers for the PCDMs UNets (SD2.1-base betas, epsilon prediction), built from diffusers (PCDMS.md §7)."""
from __future__ import annotations

from typing import Any

# SD2.1-base `scheduler_config.json` (a PNDM config); every PCDMs stage-2/3 scheduler was derived from it.
SD21_BASE_SCHEDULE: dict[str, Any] = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    steps_offset=1, prediction_type="epsilon",
)
SCHEDULERS = ("ddim", "unipc", "euler", "dpmpp_2m")


def make_scheduler(name: str) -> Any:
    """A fresh diffusers scheduler; call `set_timesteps(steps)` on it before sampling.

    ddim: the demo's `DDIMScheduler` (spacing "leading" + offset 1: 981, 961, ..., 1 at 50 steps; the last step
        lands on alpha_bar_0 because set_alpha_to_one is False), eta 0.
    unipc: the paper's `UniPCMultistepScheduler.from_config(SD2.1-base)` (bh2, order 2, "linspace": 999, 949, ...).
        diffusers 0.24 (the original's pin) ended on sigma(t=0); current diffusers defaults to zero, so
        `final_sigmas_type="sigma_min"` restores the original.
    euler / dpmpp_2m: extra choices with SD2.1-base betas, "linspace" spacing as from_config gives them.
    """
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

    if name == "ddim":
        return DDIMScheduler(**SD21_BASE_SCHEDULE, clip_sample=False, set_alpha_to_one=False, timestep_spacing="leading")
    if name == "unipc":
        return UniPCMultistepScheduler(**SD21_BASE_SCHEDULE, solver_order=2, solver_type="bh2", predict_x0=True,
                                       lower_order_final=True, timestep_spacing="linspace", final_sigmas_type="sigma_min")
    if name == "euler":
        return EulerDiscreteScheduler(**SD21_BASE_SCHEDULE, timestep_spacing="linspace")
    if name == "dpmpp_2m":
        return DPMSolverMultistepScheduler(**SD21_BASE_SCHEDULE, algorithm_type="dpmsolver++", solver_order=2,
                                           timestep_spacing="linspace")
    raise ValueError(f"unknown scheduler {name!r}; choose one of {SCHEDULERS}")
