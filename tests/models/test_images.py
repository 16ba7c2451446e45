"""The one image converter: uint8 <-> float round trips, rounding, batch and single-image shapes, files."""
import numpy as np
import torch
from PIL import Image

from posetransfer.models.images import from_uint8, pil_resize, read_image, to_uint8


def test_uint8_round_trip_and_rounding():
    levels = np.random.default_rng(0).integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)
    images = from_uint8(levels)
    assert images.shape == (2, 3, 5, 4) and images.dtype == torch.float32 and images.is_contiguous()
    assert np.array_equal(to_uint8(images), levels) and np.array_equal(to_uint8(images[1]), levels[1])
    assert torch.equal(from_uint8(list(levels)), images)
    # clamped, and rounded to the nearest level (half to even, as numpy and torch round)
    odd = torch.tensor([-0.5, 0.5 / 255, 1.5 / 255, 100.4 / 255, 2.0]).view(1, 1, 5).expand(3, 1, 5)
    assert to_uint8(odd)[0, :, 0].tolist() == [0, 0, 2, 100, 255]


def test_read_image_and_pil_resize_match_pil(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (6, 8, 4), dtype=np.uint8)
    Image.fromarray(array, "RGBA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.shape == (1, 3, 6, 8) and np.array_equal(to_uint8(image[0]), array[..., :3])
    expected = np.asarray(Image.fromarray(array[..., :3]).resize((4, 3), Image.BICUBIC))
    assert np.array_equal(to_uint8(pil_resize(image, (3, 4))[0]), expected)
