"""ComfyUI-PoseTransfer: pose-guided person image synthesis (PCDMs, SCFM) with DWPose extraction."""
from .nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
