"""Run by ComfyUI-Manager after `pip install -r requirements.txt`; safe to run any number of times.

It only makes the choice requirements.txt cannot express: which onnxruntime wheel DWPose runs on. The CPU
wheel and the GPU wheel install the same `onnxruntime` module and shadow each other
(microsoft/onnxruntime#26996), so an environment must hold exactly one. An existing one is always kept.
"""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys

ONNXRUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                             "onnxruntime-rocm", "onnxruntime-silicon")


def installed_onnxruntimes() -> list[str]:
    present = []
    for name in ONNXRUNTIME_DISTRIBUTIONS:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        present.append(name)
    return present


def cuda_usable() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available() and torch.version.cuda)


def choose_wheel() -> str | None:
    """The onnxruntime distribution to install, or None when one is already there."""
    if installed_onnxruntimes():
        return None
    return "onnxruntime-gpu" if cuda_usable() else "onnxruntime"


def main() -> int:
    present = installed_onnxruntimes()
    if len(present) > 1:
        print(f"[PoseTransfer] warning: {', '.join(present)} are all installed and shadow each other; "
              "uninstall all but one, then reinstall the one you keep (pip install --force-reinstall <name>).")
    wheel = choose_wheel()
    if wheel is None:
        print(f"[PoseTransfer] keeping the installed {present[0]}")
        return 0
    print(f"[PoseTransfer] installing {wheel} for DWPose")
    return subprocess.call([sys.executable, "-m", "pip", "install", wheel])


if __name__ == "__main__":
    sys.exit(main())
