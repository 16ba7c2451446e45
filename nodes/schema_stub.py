"""A recorder of ComfyUI's V3 node schema, used only when ComfyUI is not importable.

It mirrors the small part of `comfy_api.latest.io` the pack uses (same names and keyword arguments), so
node classes can be defined, their schema inspected and `execute` called in tests and on the command line.
Only `comfy_adapter` imports this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class _Input:
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                 tooltip: str | None = None, lazy: bool | None = None, **options: Any):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.default = options.pop("default", None)
        for key, value in options.items():  # same attribute names as comfy_api (min, max, options, ...)
            setattr(self, key, value)


class _Output:
    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False, **options: Any):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list
        for key, value in options.items():
            setattr(self, key, value)


def _comfy_type(io_type: str, widget: bool = False) -> type:
    input_cls = type("Input", (_Input,), {"io_type": io_type, "is_widget": widget})
    output_cls = type("Output", (_Output,), {"io_type": io_type})
    return type(io_type, (), {"io_type": io_type, "Input": input_cls, "Output": output_cls})


def Custom(io_type: str) -> type:  # noqa: N802 - mirrors io.Custom
    return _comfy_type(io_type)


@dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    hidden: list = field(default_factory=list)
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    not_idempotent: bool = False
    search_aliases: list = field(default_factory=list)


class NodeOutput:
    def __init__(self, *args: Any, ui: Any = None, **_: Any):
        self.args = args
        self.ui = ui

    @property
    def result(self) -> tuple | None:
        return self.args if self.args else None

    def __getitem__(self, index: int) -> Any:
        return self.args[index]


class ComfyNode:
    hidden = SimpleNamespace(unique_id=None, prompt=None)

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        raise NotImplementedError


class ComfyExtension:
    async def on_load(self) -> None:
        return None

    async def get_node_list(self) -> list[type[ComfyNode]]:
        raise NotImplementedError


class _PreviewImage:
    def __init__(self, image: Any, animated: bool = False, cls: Any = None, **_: Any):
        self.image = image


class _PreviewMask(_PreviewImage):
    pass


io = SimpleNamespace(
    ComfyNode=ComfyNode, Schema=Schema, NodeOutput=NodeOutput, Custom=Custom,
    Image=_comfy_type("IMAGE"), Mask=_comfy_type("MASK"), Latent=_comfy_type("LATENT"),
    Int=_comfy_type("INT", widget=True), Float=_comfy_type("FLOAT", widget=True),
    String=_comfy_type("STRING", widget=True), Boolean=_comfy_type("BOOLEAN", widget=True),
    Combo=_comfy_type("COMBO", widget=True),
)
ui = SimpleNamespace(PreviewImage=_PreviewImage, PreviewMask=_PreviewMask)
