"""The one image-file reader, used by the command line (issue #10, symptoms 8 and 10): EXIF orientation,
truncated and huge files."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from posetransfer.models.images import MAX_IMAGE_PIXELS, read_image_file
from posetransfer.errors import ImageInputError


def _pixels(height=4, width=6):
    return np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3) * 3


def test_exif_orientation_is_applied_as_comfyui_loadimage_does(tmp_path):
    pixels = _pixels()
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    Image.fromarray(pixels).save(path, exif=exif, quality=100, subsampling=0)
    plain = tmp_path / "plain.png"
    Image.fromarray(pixels).save(plain)
    upright = read_image_file(str(path))
    assert upright.shape == (6, 4, 3) and upright.dtype == np.uint8
    np.testing.assert_allclose(upright.astype(int), np.rot90(pixels, k=-1).astype(int), atol=4)
    np.testing.assert_array_equal(read_image_file(str(plain)), pixels)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "depth.png"
    Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.uint16)).save(path)
    np.testing.assert_array_equal(read_image_file(str(path))[0, :, 0], [0, 100, 255])


def test_truncated_and_non_image_files_are_named(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:400])
    with pytest.raises(ImageInputError, match="cut.png cannot be read as an image .*truncated"):
        read_image_file(str(cut))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageInputError, match="notes.png cannot be read as an image"):
        read_image_file(str(text))
    with pytest.raises(ImageInputError, match="source image not found: .*nope.png"):
        read_image_file(str(tmp_path / "nope.png"), "source image")


def _png_header_only(path, width, height):
    """A tiny PNG that declares `width` x `height` (a decompression bomb's header; no data is needed)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return str(path)


@pytest.mark.parametrize("width, height", [(12000, 9000), (30000, 30000)])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, width, height):
    path = _png_header_only(tmp_path / "bomb.png", width, height)
    assert width * height > MAX_IMAGE_PIXELS
    with pytest.raises(ImageInputError, match=rf"bomb.png.*{MAX_IMAGE_PIXELS}.*[Rr]esize it first"):
        read_image_file(path)
