"""The one image converter: ComfyUI IMAGE tensors <-> model tensors <-> uint8 arrays, square fitting and PIL-exact
resizing."""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..errors import ImageInputError

logger = logging.getLogger(__name__)
# Image files are read up to 100 megapixels: above every phone camera's default output; as float RGB such an
# image already takes 1.2 GB. Larger files (or decompression bombs, whose header claims far more) are refused.
MAX_IMAGE_PIXELS = 100_000_000


def comfy_to_bchw(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """IMAGE [B,H,W,C] in 0..1 (C = 1, 3 or 4) -> float32 RGB [B,3,H,W] in 0..1; alpha is dropped."""
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
        raise ImageInputError(f"{name}: expected an IMAGE of shape [B,H,W,C] with C in (1,3,4), got "
                              f"{tuple(image.shape)}. Connect an image (a mask or latent is not one).")
    if 0 in image.shape:
        raise ImageInputError(f"{name}: the IMAGE has no pixels (shape {tuple(image.shape)}); check the node that "
                              "made it.")
    if image.shape[-1] == 1:
        image = image.expand(*image.shape[:-1], 3)
    return finite_pixels(image[..., :3].movedim(-1, 1).float(), name)


def finite_pixels(images: torch.Tensor, name: str = "image") -> torch.Tensor:
    """`images` with NaN and -inf set to 0 and +inf to 1, saying so once per call (a broken upstream node or
    decoder, typically an fp16 overflow, makes them; every later step would turn them into black or noise)."""
    finite = torch.isfinite(images)
    if bool(finite.all()):
        return images
    bad = int((~finite).sum())
    logger.warning("%s: %d of %d pixel values are NaN or infinite (an upstream node overflowed?); using 0 for NaN "
                   "and -inf, 1 for +inf.", name, bad, images.numel())
    return torch.nan_to_num(images, nan=0.0, posinf=1.0, neginf=0.0)


def bchw_to_comfy(images: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] in 0..1 -> IMAGE [B,H,W,3]."""
    return images.clamp(0, 1).movedim(1, -1)


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """0..1 -> -1..1 (ToTensor + Normalize(0.5, 0.5) of the originals)."""
    return images * 2.0 - 1.0


def from_signed(images: torch.Tensor) -> torch.Tensor:
    return (images / 2.0 + 0.5).clamp(0, 1)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[..., 3, H, W] in 0..1 -> uint8 [..., H, W, 3] (clamped, rounded half to even): what image files, PIL and
    the pose toolkit (DWPose, renderers) take."""
    return (images.movedim(-3, -1).clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)


def from_uint8(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 [..., H, W, 3] (an array or a list of same-sized arrays) -> float32 [..., 3, H, W] in 0..1."""
    array = np.stack(images) if isinstance(images, (list, tuple)) else np.asarray(images)
    # np.require copies read-only arrays (PIL images), which torch.from_numpy warns about. Contiguous NCHW: a
    # channels-last view would send convolutions down another kernel and move results by round-off.
    return torch.from_numpy(np.require(array, requirements=("C", "W"))).movedim(-1, -3).contiguous().float() / 255.0


def read_image(path: str | os.PathLike, what: str = "image") -> torch.Tensor:
    """An image file -> float32 RGB [1,3,H,W] in 0..1, upright (see `read_image_file`)."""
    return from_uint8(read_image_file(path, what))[None]


def read_image_file(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """The one image-file reader: any format and mode PIL reads (grayscale, 16-bit, palette, alpha) -> uint8 RGB
    (H, W, 3), rotated as its EXIF orientation says (as ComfyUI's LoadImage), at most `MAX_IMAGE_PIXELS`. The
    first frame of an animation. Errors name the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageInputError(f"{what} not found: {path}")
    try:
        with warnings.catch_warnings():
            # PIL warns (and refuses at twice its limit) on its own bound; ours is checked before decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageInputError(
                        f"{path} is {width} x {height} = {width * height} pixels, over the limit of {MAX_IMAGE_PIXELS}."
                        " Resize it first (a person photo needs no more than a few megapixels).")
                return _rgb_array(ImageOps.exif_transpose(image))
    except ImageInputError:
        raise
    except Image.DecompressionBombError as error:  # beyond PIL's own refusal limit
        raise ImageInputError(f"{path}: {error} Images are read up to {MAX_IMAGE_PIXELS} pixels; resize it "
                              "first.") from None
    except Exception as error:  # noqa: BLE001 - PIL's decoders raise OSError, SyntaxError, ValueError, zlib errors
        raise ImageInputError(f"{path} cannot be read as an image ({type(error).__name__}: {error}). It is truncated, "
                              "damaged or not an image: open it in an image viewer, or export it again.") from None


def _rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode.startswith("I"):  # 16/32-bit integer grayscale: PIL's convert("RGB") would clip it at 255
        values = np.asarray(image, dtype=np.float64)
        scale = 257.0 if values.max(initial=0) > 255 else 1.0
        gray = np.clip(np.round(values / scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB")).copy()


def pil_resize(images: torch.Tensor, size: tuple[int, int], resample: int = Image.BICUBIC) -> torch.Tensor:
    """Resize [B,3,H,W] 0..1 to `size` = (H, W) with PIL on uint8, as the original preprocessing did.

    torch's bicubic uses a different kernel (a = -0.75 vs PIL's -0.5) and no antialiasing, so parity with
    the released models' training data needs PIL.
    """
    resized = [np.asarray(Image.fromarray(item).resize((size[1], size[0]), resample)) for item in to_uint8(images)]
    return from_uint8(resized).to(images.device)


FIT_MODES = ("pad", "crop", "stretch")


@dataclass(frozen=True)
class SquareFit:
    """How an H x W image was placed on a `size` square, so results can be put back at H x W."""

    height: int
    width: int
    size: int
    mode: str

    def _scaled(self) -> tuple[int, int]:
        if self.mode == "stretch":
            return self.size, self.size
        scale = (min if self.mode == "pad" else max)(self.size / self.height, self.size / self.width)
        return max(1, round(self.height * scale)), max(1, round(self.width * scale))

    def _offset(self) -> tuple[int, int]:
        sh, sw = self._scaled()
        return (self.size - sh) // 2, (self.size - sw) // 2

    def apply(self, images: torch.Tensor, fill: float = 0.0, resize=None) -> torch.Tensor:
        """[B,C,H,W] -> [B,C,size,size]: scale keeping aspect, then pad (with `fill`) or centre-crop."""
        resize = resize or _bicubic
        sh, sw = self._scaled()
        scaled = resize(images, (sh, sw))
        oy, ox = self._offset()
        if self.mode == "crop":
            return scaled[..., -oy:-oy + self.size, -ox:-ox + self.size]
        out = images.new_full((*images.shape[:2], self.size, self.size), fill)
        out[..., oy:oy + sh, ox:ox + sw] = scaled
        return out

    def restore(self, square: torch.Tensor, resize=None) -> torch.Tensor:
        """[B,C,size,size] model output -> [B,C,H,W] at the input's aspect; cropped areas come back black."""
        resize = resize or _bicubic
        sh, sw = self._scaled()
        oy, ox = self._offset()
        if self.mode == "crop":
            canvas = square.new_zeros((*square.shape[:2], sh, sw))
            canvas[..., -oy:-oy + self.size, -ox:-ox + self.size] = square
            return resize(canvas, (self.height, self.width))
        return resize(square[..., oy:oy + sh, ox:ox + sw], (self.height, self.width))

    def map_points(self, xy: np.ndarray) -> np.ndarray:
        """Pixel coordinates (…,2) in the H x W image -> pixels of the square."""
        sh, sw = self._scaled()
        oy, ox = self._offset()
        return xy * np.array([sw / self.width, sh / self.height]) + np.array([ox, oy])


def square_fit(height: int, width: int, size: int, mode: str = "pad") -> SquareFit:
    if mode not in FIT_MODES:
        raise ValueError(f"fit mode must be one of {FIT_MODES}, got {mode!r}")
    return SquareFit(height, width, size, mode)


def pil_square(images: torch.Tensor, size: int, mode: str, fill: float = 0.0) -> tuple[torch.Tensor, SquareFit]:
    """[B,C,H,W] 0..1 -> ([B,C,size,size], fit), resized with PIL bicubic on uint8 as the originals' preprocessing
    (and the released models' training data) did; `fill` for pad borders."""
    fit = square_fit(images.shape[-2], images.shape[-1], size, mode)
    return fit.apply(images, fill=fill, resize=pil_resize), fit


def _bicubic(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
