"""ComfyUI node classes of the pack, one module per family, registered through `comfy_entrypoint`."""
from __future__ import annotations

from . import convert, loaders, pcdm, pcdm_stages, pose, scfm
from .comfy_adapter import ComfyExtension

NODES = [*loaders.NODES, *pose.NODES, *pcdm.NODES, *pcdm_stages.NODES, *scfm.NODES, *convert.NODES]


class PoseTransferExtension(ComfyExtension):
    async def get_node_list(self) -> list:
        return list(NODES)


async def comfy_entrypoint() -> PoseTransferExtension:
    return PoseTransferExtension()
