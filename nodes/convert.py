"""Node that rewrites an original checkpoint as safetensors, next to the original."""
from __future__ import annotations

import os

from ..models.convert import convert_to_safetensors
from .comfy_adapter import io, make_schema, model_file_list, resolve_model_file
from .inputs import UTILS_CATEGORY

CONVERTIBLE_FOLDERS = ("pcdms", "scfm", "vae", "clip_vision")
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


def convertible_files() -> list[str]:
    return [f"{folder}/{name}".replace(os.sep, "/") for folder in CONVERTIBLE_FOLDERS
            for name in model_file_list(folder) if name.lower().endswith(_PICKLE_SUFFIXES)]


class ConvertToSafetensors(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return make_schema(
            node_id="PoseTransferConvertToSafetensors",
            display_name="PoseTransfer Convert to safetensors",
            category=UTILS_CATEGORY,
            description="Rewrites an original pickled checkpoint (.pt/.pth/.bin/.ckpt) as a .safetensors file beside it, "
                        "with metadata naming the model kind. Pickles can run code when loaded; safetensors cannot.",
            search_aliases=["convert checkpoint", "pt to safetensors"],
            is_output_node=True,
            inputs=[
                io.Combo.Input("model", options=convertible_files(),
                               tooltip="Original file, as <model folder>/<file>. Only pickled formats are listed."),
                io.Boolean.Input("overwrite", default=False,
                                 tooltip="Replace an existing .safetensors file of the same name."),
            ],
            outputs=[io.String.Output(display_name="path", tooltip="Path of the written .safetensors file.")],
        )

    @classmethod
    def execute(cls, model: str, overwrite: bool = False) -> io.NodeOutput:
        folder, _, name = model.partition("/")
        written = convert_to_safetensors(resolve_model_file(folder, name), overwrite=overwrite)
        return io.NodeOutput(str(written), ui={"text": [str(written)]})


NODES = [ConvertToSafetensors]
