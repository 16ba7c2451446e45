"""What the node families share: custom types, categories, and the widgets that mean the same everywhere.

One definition each, so a seed, a precision or a sampler widget reads and behaves alike on every node (the
tooltip-constant habit of kijai/ComfyUI-Sapiens2 `nodes.py`). Input ids and defaults are frozen by shipped
workflows (tests/nodes/node_snapshot.json); the helpers take the id where nodes use different ones.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable, ClassVar

import torch

from ..models.images import FIT_MODES
from ..models.pcdm.schedulers import SCHEDULERS
from .comfy_adapter import (PRECISIONS, io, make_schema, model_file_list, resolve_dtype, resolve_model_file,
                            torch_device, wrap_model)

ModelReader = Callable[[str, torch.dtype], torch.nn.Module]  # (path, dtype) -> module

# ------------------------------------------------------------------------------------------- types
# POSE_KEYPOINT is the type comfyui_controlnet_aux and core ComfyUI use, so their poses plug in directly.
PoseKeypoint = io.Custom("POSE_KEYPOINT")
DWPoseModel = io.Custom("PT_DWPOSE")
PcdmModel = io.Custom("PT_PCDM_MODEL")
PriorModel = io.Custom("PT_PCDM_PRIOR")
RefinerModel = io.Custom("PT_PCDM_REFINER")
PcdmEmbedding = io.Custom("PT_PCDM_EMBEDDING")
Dinov2Model = io.Custom("PT_DINOV2")
ClipVisionModel = io.Custom("PT_CLIP_VISION")
SdVae = io.Custom("PT_SD_VAE")
ScfmModel = io.Custom("PT_SCFM_MODEL")

# ------------------------------------------------------------------------------------------- categories
POSE_CATEGORY = "PoseTransfer/Pose"
PCDMS_CATEGORY = "PoseTransfer/PCDMs"
SCFM_CATEGORY = "PoseTransfer/SCFM"
UTILS_CATEGORY = "PoseTransfer/utils"

# ------------------------------------------------------------------------------------------- tooltips
SEED_TIP = "Noise seed; image i of a batch uses seed + i, so a result does not change with the batch around it."
FIT_TIP = ("How non-square images reach the model's square: pad (whole image, black bars), crop (centre square) or "
           "stretch (the original's plain resize; distorts the person). Results come back at the input's size.")
SEQUENTIAL_GUIDANCE_TIP = ("Run the two guidance halves one after the other instead of as one batch: less memory, "
                           "same result (on GPUs usually a little slower).")
CHUNK_TIP = "Images denoised together. Lower it if you run out of memory; results are the same."
DWPOSE_HINT = ("Download yolox_l.onnx and dw-ll_ucoco_384.onnx (Hugging Face: yzd-v/DWPose) into models/dwpose. "
               "Files comfyui_controlnet_aux already downloaded are found too.")
SQUARE_TIP = "Side of the model's square: 512 for PCDMs_ckpt.pt and the 512 paper models, 256 for the 256 ones."


def precision_input(original: str = "fp16") -> io.Combo.Input:
    """Weight precision of a loader; `original` names what the original code ran, the reference for comparisons."""
    return io.Combo.Input("precision", options=list(PRECISIONS), default="auto",
                          tooltip="Weight precision. auto: ComfyUI's choice for the device (bf16/fp16 on capable "
                                  f"GPUs, fp32 on CPU). The original ran {original}; fp32 is the reference for exact "
                                  "comparisons.")


@dataclass(frozen=True)
class ModelFileInput:
    """A loader's model-file widget and how its file becomes a model, in one place: the widget id (frozen by
    workflows), the model folder it lists and searches, its tooltip, the reader `read(path, dtype)`, where to get a
    missing file (`hint`) and the device the model runs on."""

    id: str
    folder: str
    tooltip: str
    read: ModelReader
    hint: str = ""
    device: Callable[[], torch.device] = torch_device

    def widget(self) -> io.Combo.Input:
        return io.Combo.Input(self.id, options=model_file_list(self.folder), tooltip=self.tooltip)

    def load(self, name: str, precision: str) -> io.NodeOutput:
        """The file `name`, read at the precision widget's dtype for the device and wrapped for ComfyUI's memory
        management; the node-output cache is the model cache."""
        device = self.device()
        path = resolve_model_file(self.folder, name, hint=self.hint)
        return io.NodeOutput(wrap_model(self.read(path, resolve_dtype(precision, device)), device))


def cast_after(read: Callable[[str], torch.nn.Module]) -> ModelReader:
    """A reader without a dtype argument, its whole module cast once read (only the PCDMs stage readers keep some
    heads in float32 and so take the dtype themselves)."""
    return lambda path, dtype: read(path).to(dtype)


@dataclass(frozen=True)
class NodeText:
    """How a declared node is named and found in the node library: those fields of its `io.Schema`, same names."""

    node_id: str
    display_name: str
    category: str
    description: str
    search_aliases: tuple[str, ...]

    def fields(self) -> dict:
        return {**asdict(self), "search_aliases": list(self.search_aliases)}


class ModelLoader(io.ComfyNode):
    """A loader node: its model-file widget (`FILE`) and the precision widget in, one model out (`OUTPUT`).

    A loader only declares `TEXT`, `FILE`, `OUTPUT`, `ORIGINAL_PRECISION` (what the original code ran, named in the
    precision tooltip) and `IS_EXPERIMENTAL`; the schema and `execute` are the same for all of them. The names stay
    clear of the upper-case attributes core's `ComfyNode` defines itself (CATEGORY, EXPERIMENTAL, OUTPUT_NODE, ...)."""

    TEXT: ClassVar[NodeText]
    FILE: ClassVar[ModelFileInput]
    OUTPUT: ClassVar[io.Output]
    ORIGINAL_PRECISION: ClassVar[str] = "fp16"
    IS_EXPERIMENTAL: ClassVar[bool] = False

    @classmethod
    def define_schema(cls) -> io.Schema:
        # A copy of OUTPUT: the schema is rebuilt on every call and core's finalize() sets output ids in place.
        # The file widget is built anew too, so its list shows the files there now.
        return make_schema(**cls.TEXT.fields(), is_experimental=cls.IS_EXPERIMENTAL, outputs=[copy.copy(cls.OUTPUT)],
                           inputs=[cls.FILE.widget(), precision_input(cls.ORIGINAL_PRECISION)])

    @classmethod
    def execute(cls, precision: str = "auto", **file: str) -> io.NodeOutput:
        # ComfyUI passes the file widget under its own id (ckpt_name, clip_name, vae_name: frozen by workflows).
        return cls.FILE.load(file[cls.FILE.id], precision)


def seed_input(tooltip: str = SEED_TIP) -> io.Int.Input:
    return io.Int.Input("seed", default=0, min=0, max=2**63 - 1, control_after_generate=True, tooltip=tooltip)


def fit_input(default: str = "pad", tooltip: str = FIT_TIP) -> io.Combo.Input:
    return io.Combo.Input("fit", options=list(FIT_MODES), default=default, tooltip=tooltip)


def pcdm_sampling_inputs(steps: int, scheduler: str) -> list:
    """Stage-2/3 sampling widgets in PCDM Inpaint's order: steps, guidance, scheduler, seed, fit. Defaults: the
    demo's ddim 50 on the stage-2 nodes, the paper's unipc 20 on the chained stages."""
    return [
        io.Int.Input("steps", default=steps, min=1, max=200,
                     tooltip="Denoising steps (demo: 50 with ddim; paper: 20 with unipc)."),
        io.Float.Input("guidance", default=2.0, min=0.0, max=20.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance scale; PCDMs used 2.0. 1 or less disables guidance."),
        io.Combo.Input("scheduler", options=list(SCHEDULERS), default=scheduler,
                       tooltip="ddim: the demo's DDIM (leading spacing). unipc: the paper's UniPC. euler and "
                               "dpmpp_2m: extra choices."),
        seed_input(),
        fit_input(),
    ]


def square_input(input_id: str, optional: bool = False, minimum: int = 128, maximum: int = 1024) -> io.Int.Input:
    """The model's square side; the id (`resolution` or `size`) and range are frozen per node."""
    return io.Int.Input(input_id, display_name="resolution", default=512, min=minimum, max=maximum, step=64,
                        optional=optional, tooltip=SQUARE_TIP)


def sequential_guidance_input() -> io.Boolean.Input:
    return io.Boolean.Input("sequential_guidance", default=False, optional=True, tooltip=SEQUENTIAL_GUIDANCE_TIP)
