"""The papers' evaluation protocols: image sizes, resizes, LPIPS input range, batch quirks, result naming.

PCDMs, `caculate_metrics_256.py` / `_512.py` + `metrics.py`: every image (result, ground truth, FID sets) is
read as float32 and resized with cv2 INTER_CUBIC to 176 x 256 (352 x 512); SSIM is `ssim_256`; LPIPS-alex gets
the 0..1 images as they are (the package expects -1..1; reproduced as published); FID over batches of 128 and
LPIPS over batches of 64, the last incomplete batch dropped; the ground truth of `<src>_to_<tgt>.png` is
`<tgt>.png`. FID compares the results with the TRAINING images (`train_lst_256_png`).

SCFM (following PIDM), `utils/metrics.py`: SSIM on the images as read (256 x 256 results against the 256 x 256
bicubic-resized test images); LPIPS and FID on cv2.resize(..., (176, 256)) with OpenCV's default INTER_LINEAR,
LPIPS inputs scaled to -1..1, batches of 64 with the last incomplete one dropped; the ground truth of
`<src>_2_<tgt>_vis.png` is `<tgt>.png`; FID against the training images.

`plain`: the same metrics for your own data: no resize (a result of another size than its ground truth is
resized to it, bicubic), LPIPS inputs -1..1, every image counted, ground truth = same file name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable


def _pcdms_truth(name: str) -> str:
    return name.split("_to_")[-1].replace("jpg", "png")


def _scfm_truth(name: str) -> str:
    return name.split("_2_")[-1].split("_vis")[0] + ".png"


def _same_name(name: str) -> str:
    return name


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str  # the papers' table heading
    ssim_size: tuple[int, int] | None  # (width, height) for SSIM/PSNR; None = as read
    ssim_interpolation: str
    lpips_size: tuple[int, int] | None  # (width, height) for LPIPS and FID
    lpips_interpolation: str
    lpips_signed: bool  # True: -1..1 inputs (what the package expects); False: 0..1 as PCDMs passed them
    fid_batch: int
    lpips_batch: int
    drop_last: bool  # the originals averaged floor(n / batch) full batches only
    truth_name: Callable[[str], str]

    def ground_truth_name(self, result_name: str) -> str:
        return self.truth_name(os.path.basename(result_name))

    def used(self, count: int, batch: int) -> int:
        """How many of `count` items the original's batching used."""
        if not self.drop_last or count < batch:
            return count  # the originals shrank the batch to the data size
        return count // batch * batch


PROTOCOLS = {
    "pcdms-256": Protocol("pcdms-256", "DeepFashion (256 x 176), PCDMs protocol", (176, 256), "cubic", (176, 256),
                          "cubic", False, 128, 64, True, _pcdms_truth),
    "pcdms-512": Protocol("pcdms-512", "DeepFashion (512 x 352), PCDMs protocol", (352, 512), "cubic", (352, 512),
                          "cubic", False, 128, 64, True, _pcdms_truth),
    "scfm": Protocol("scfm", "DeepFashion (256 x 176), SCFM/PIDM protocol", None, "cubic", (176, 256), "linear",
                     True, 64, 64, True, _scfm_truth),
    "plain": Protocol("plain", "Results vs ground truth (plain protocol)", None, "cubic", None, "cubic", True, 50, 50,
                      False, _same_name),
}
