"""Import the pack the way ComfyUI does: as a package loaded from the repository root.

Tests use the fixed package name ``posetransfer`` (``from posetransfer.models.checkpoints import ...``),
whatever the checkout folder is called; `__main__.py` owns the bootstrap, shared with the command line.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("posetransfer_bootstrap", Path(__file__).resolve().parents[1] / "__main__.py")
_bootstrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bootstrap)
_pack = _bootstrap.load_pack()
# pytest >= 8 also imports the checkout's own __init__.py, for the package node of the rootdir. When the folder's name
# is not an identifier (ComfyUI-PoseTransfer, as users clone it) it can only name that module "__init__", outside any
# package, where the pack's relative imports fail and every test errors; it takes a module already under that name.
sys.modules.setdefault("__init__", _pack)

from posetransfer.pose import native  # noqa: E402  (after the bootstrap above)

# The models in the tests are tiny: thread start-up costs more than it saves, and CI has 2 cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def numpy_kernels():
    """The DWPose kernels in numpy by default, whether or not this environment has OpenCV: that is the code the
    tests hold against OpenCV. Tests of the native path (`pose/native.py`) ask for `opencv_kernels`."""
    native.use_opencv(False)
    yield
    native.use_opencv(False)


@pytest.fixture
def opencv_kernels():
    """OpenCV's own calls for the resize, warp and drawing; skipped where `cv2` is not installed."""
    pytest.importorskip("cv2")
    assert native.use_opencv(True), "cv2 imports but the pack does not use it"
    yield
