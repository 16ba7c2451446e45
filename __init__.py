"""ComfyUI-PoseTransfer: pose-guided person image synthesis (PCDMs, SCFM) with DWPose extraction."""
from .nodes import comfy_entrypoint

WEB_DIRECTORY = "./web"  # served at /extensions/<pack folder>/: the node help pages, web/docs/<node id>.md
__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
