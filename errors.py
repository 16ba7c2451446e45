"""The base of the pack's own errors: input a user can fix (a model file, a pose, an image).

Every message names the file or input, what was found, what was expected and what to do. ComfyUI shows an
error as `<module>.<class>: <message>`, and a custom node's module name is the path of its folder; the classes
therefore report the short module name `PoseTransfer`, so users read `PoseTransfer.CheckpointError: ...`.
"""
from __future__ import annotations

DISPLAY_MODULE = "PoseTransfer"


class PoseTransferError(ValueError):
    """Bad input the user can act on. A ValueError, so callers that handle bad values keep working."""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.__module__ = DISPLAY_MODULE


PoseTransferError.__module__ = DISPLAY_MODULE


class ImageInputError(PoseTransferError):
    """An image file or IMAGE value that cannot be used (truncated, too large, wrong shape)."""
