"""IMAGE values with non-finite pixels (issue #10, symptom 11): replaced, and said once."""
import logging

import torch

from posetransfer.models.images import comfy_to_bchw


def test_nan_and_inf_pixels_are_replaced_and_reported_once(caplog):
    image = torch.full((2, 4, 5, 3), 0.5)
    image[0, 0, 0, 0], image[1, 1, 1, 1], image[1, 2, 2, 2] = float("nan"), float("inf"), float("-inf")
    with caplog.at_level(logging.WARNING):
        out = comfy_to_bchw(image, "source_image")
    assert out[0, 0, 0, 0] == 0 and out[1, 1, 1, 1] == 1 and out[1, 2, 2, 2] == 0
    assert torch.isfinite(out).all() and out[0, 1].eq(0.5).all()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "source_image: 3 of 120 pixel values are NaN or infinite" in warnings[0].getMessage()


def test_finite_images_pass_silently(caplog):
    with caplog.at_level(logging.WARNING):
        comfy_to_bchw(torch.rand(1, 4, 4, 4), "image")
    assert not caplog.records
