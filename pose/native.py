"""OpenCV, run natively when this Python already has it; the pack never installs it (ARCHITECTURE decision 8).

The DWPose path reproduces three of OpenCV's kernels in numpy, bit for bit: the linear resize, the crop warp and
the drawing primitives (the peer and the models' training data used them). When `cv2` imports, those same calls
run natively instead: the same pixels, from OpenCV's SIMD code, several times faster. Most ComfyUI installs
have it already (comfyui_controlnet_aux and many other packs require it). The tests hold the numpy kernels
against OpenCV: the resize and the drawing are the same either way. The warp is not always: OpenCV changed it
between versions (the fixed-point path of 4.x, IPP on x86 in 5.x), and OpenCV 5 takes IPP's general routine,
which numpy does not reproduce, for matrices with a ~1e-17 off the diagonal. The native warp is the installed
OpenCV's, as the peer's is in the same environment; the numpy one follows `imageops.WARP_REFERENCE`.

POSETRANSFER_OPENCV=0 keeps to numpy.
"""
from __future__ import annotations

import logging
import os
from types import ModuleType

log = logging.getLogger(__name__)
ENV_VAR = "POSETRANSFER_OPENCV"
_NEEDED = ("resize", "warpAffine", "fillConvexPoly", "circle", "line", "INTER_LINEAR", "__version__")
_UNSET = object()
_module: ModuleType | None | object = _UNSET


def _import_opencv() -> ModuleType | None:
    if os.environ.get(ENV_VAR, "").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        import cv2
    except Exception as error:  # a half-installed or mismatched wheel raises more than ImportError
        if not isinstance(error, ModuleNotFoundError):
            log.info("DWPose: OpenCV is installed but does not import (%s); using the numpy kernels", error)
        return None
    if not all(hasattr(cv2, name) for name in _NEEDED):  # e.g. the namespace stub two clashing wheels leave
        log.info("DWPose: the installed cv2 lacks %s; using the numpy kernels",
                 ", ".join(n for n in _NEEDED if not hasattr(cv2, n)))
        return None
    return cv2


def opencv() -> ModuleType | None:
    """The `cv2` module when it is installed and usable (and not turned off), else None. Decided once."""
    global _module
    if _module is _UNSET:
        _module = _import_opencv()
    return _module  # type: ignore[return-value]


def use_opencv(enabled: bool) -> bool:
    """Turn the native kernels on (when `cv2` imports) or off for this process; returns whether they are on.
    For tests and benches that compare the two."""
    global _module
    _module = _import_opencv() if enabled else None
    return _module is not None


def kernels() -> str:
    """What resamples and draws, in words for the console."""
    cv2 = opencv()
    return f"OpenCV {cv2.__version__} (installed)" if cv2 is not None else "numpy (OpenCV-exact)"
