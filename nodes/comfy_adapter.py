"""The one place that talks to ComfyUI.

Every `comfy_api`, `comfy`, `folder_paths` import of the pack lives here. Without ComfyUI (tests) the same
names give working stand-ins: CPU device, float32, no-op progress, no interrupt, model folders from the
ComfyUI-free lookup in `model_files/folders.py` (which the command line uses directly), and a small recorder
of the V3 schema so node classes can be defined, inspected and executed.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Iterable, Sequence

import torch

from ..model_files import folders
from ..models.precision import PRECISIONS, precision_dtype  # noqa: F401  (nodes import PRECISIONS from here)

try:  # the first numbered API version; `latest` may change without warning (Comfy-Org/ComfyUI#10951)
    from comfy_api.v0_0_2 import ComfyExtension, io, ui
except ImportError:
    try:
        from comfy_api.latest import ComfyExtension, io, ui
    except ImportError:
        ComfyExtension = io = ui = None

if io is not None:
    import comfy.model_management as model_management
    import comfy.model_patcher as model_patcher
    import comfy.utils as comfy_utils
    import folder_paths

    COMFY_AVAILABLE = True
else:
    from . import schema_stub

    ComfyExtension, io, ui = schema_stub.ComfyExtension, schema_stub.io, schema_stub.ui
    model_management = model_patcher = comfy_utils = folder_paths = None
    COMFY_AVAILABLE = False

CATEGORY = "PoseTransfer"


# ----------------------------------------------------------------------------------------- folders
def _register_folder(name: str, extra_dirs: Iterable[str] = (), extensions: Iterable[str] = ()) -> None:
    """Add a model folder without dropping what `extra_model_paths.yaml` already registered under `name`."""
    registered = folder_paths.folder_names_and_paths.get(name)
    paths = list(registered[0]) if registered else []
    for path in (os.path.join(folder_paths.models_dir, name), *extra_dirs):
        if path not in paths:
            paths.append(path)
    # A NEW set: adding to the shared `supported_pt_extensions` would change every core folder.
    exts = set(folder_paths.supported_pt_extensions) | set(extensions)
    if registered:
        exts |= set(registered[1])
    folder_paths.folder_names_and_paths[name] = (paths, exts)


def register_model_folders() -> None:
    if not COMFY_AVAILABLE:
        return
    _register_folder("pcdms")
    _register_folder("scfm")
    custom_nodes = os.path.join(os.path.dirname(folder_paths.models_dir), "custom_nodes")
    dwpose_extra = [os.path.join(folder_paths.models_dir, d) for d in folders.DWPOSE_MODEL_SUBDIRS]
    dwpose_extra += [os.path.join(custom_nodes, d) for d in folders.DWPOSE_PACK_SUBDIRS]
    _register_folder("dwpose", [d for d in dwpose_extra if os.path.isdir(d)], {".onnx"})


def model_folder_paths(folder: str) -> list[str]:
    """Every directory searched for files of `folder` (e.g. "pcdms", "clip_vision")."""
    if COMFY_AVAILABLE:
        return list(folder_paths.get_folder_paths(folder))
    try:
        return folders.find_models_root().folder_dirs(folder)
    except folders.ModelsDirNotFound:
        return []


def model_file_list(folder: str) -> list[str]:
    """Files of `folder`, relative to their search directory, for combo widgets."""
    if COMFY_AVAILABLE:
        return list(folder_paths.get_filename_list(folder))
    return folders.list_model_files(folder)


def resolve_model_file(folder: str, name: str, *, hint: str = "") -> str:
    """Full path of `name` in `folder`; the error lists every directory searched and what to do."""
    if not COMFY_AVAILABLE:
        return folders.find_model_file(folder, name, hint=hint)
    if os.path.isabs(name) and os.path.isfile(name):
        return name
    full = folder_paths.get_full_path(folder, name)
    if full is None:
        searched = "\n  ".join(model_folder_paths(folder)) or "(no directory registered)"
        root = folders.ModelsRoot(folder_paths.models_dir, "ComfyUI", _comfy_dir(),
                                  folders.extra_paths_file(_comfy_dir()))
        raise FileNotFoundError(f"Model file '{name}' was not found in the {folder}/ model folder. "
                                f"Searched:\n  {searched}\n{hint or folders.folder_hint(folder, root)}")
    return full


def _comfy_dir() -> str:
    """The ComfyUI install (where its main.py and extra paths files are)."""
    return os.path.dirname(os.path.abspath(folder_paths.__file__))


def output_directory() -> str:
    """ComfyUI's output folder (./output without ComfyUI)."""
    return folder_paths.get_output_directory() if COMFY_AVAILABLE else os.path.join(os.getcwd(), "output")


def input_directory() -> str:
    """ComfyUI's input folder (./input without ComfyUI)."""
    return folder_paths.get_input_directory() if COMFY_AVAILABLE else os.path.join(os.getcwd(), "input")


# ----------------------------------------------------------------------------------------- devices
def torch_device() -> torch.device:
    return model_management.get_torch_device() if COMFY_AVAILABLE else torch.device("cpu")


def offload_device() -> torch.device:
    return model_management.unet_offload_device() if COMFY_AVAILABLE else torch.device("cpu")


def encoder_device() -> torch.device:
    """Device for frozen auxiliary encoders (core runs CLIP vision on the text-encoder device)."""
    return model_management.text_encoder_device() if COMFY_AVAILABLE else torch.device("cpu")


def intermediate_device() -> torch.device:
    return model_management.intermediate_device() if COMFY_AVAILABLE else torch.device("cpu")


def resolve_dtype(precision: str, device: torch.device | None = None) -> torch.dtype:
    """Map a `precision` combo value to a dtype; "auto" defers to ComfyUI's choice for the device."""
    device = device or torch_device()
    if precision == "auto" and COMFY_AVAILABLE:
        if model_management.should_use_bf16(device):
            return torch.bfloat16
        if model_management.should_use_fp16(device):
            return torch.float16
        return torch.float32
    return precision_dtype(precision, device)


def to_output(tensor: torch.Tensor) -> torch.Tensor:
    """Move a result to where ComfyUI expects node outputs (CPU, float32 unless configured otherwise)."""
    dtype = torch.float32
    if COMFY_AVAILABLE and hasattr(model_management, "intermediate_dtype"):
        dtype = model_management.intermediate_dtype()
    return tensor.to(device=intermediate_device(), dtype=dtype)


# ----------------------------------------------------------------------------------------- progress
def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel; no-op without ComfyUI."""
    if COMFY_AVAILABLE:
        model_management.throw_exception_if_processing_interrupted()


def progress_callback(total: int) -> Callable[[int, int], None]:
    """A `progress(step, total)` callback for `models/` and `pose/` loops.

    Each call ticks ComfyUI's ProgressBar and is an interrupt point: it raises inside the step.
    """
    bar = comfy_utils.ProgressBar(total) if COMFY_AVAILABLE else None

    def progress(step: int, total_steps: int = total) -> None:
        check_interrupt()
        if bar is not None:
            bar.update_absolute(step, total_steps)

    return progress


# ----------------------------------------------------------------------------------------- models
class ModelHandle:
    """Stand-in for ComfyUI's ModelPatcher when ComfyUI is absent: holds the module and its devices."""

    def __init__(self, model: torch.nn.Module, load_device: torch.device, offload_device: torch.device):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device

    def model_size(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.model.parameters(), *self.model.buffers()))


def wrap_model(module: torch.nn.Module, load_device: torch.device | None = None,
               offload: torch.device | None = None) -> Any:
    """Wrap a module in ComfyUI's model patcher so VRAM accounting, offloading and the RAM cache see it.

    Our modules are plain torch / diffusers / transformers modules, not built from `comfy.ops`. Newest core
    wraps its own such models (spandrel upscalers: comfy_extras/nodes_upscale_model.py @30a7443, v0.38-era) in
    `comfy.model_patcher.CoreModelPatcher` and loads them with `load_models_gpu(..., force_full_load=True)`,
    and so do we. `CoreModelPatcher` is looked up at call time because main.py rebinds it to
    `ModelPatcherDynamic` after custom nodes may have been imported (main.py @02018c7, Dynamic VRAM, the
    default on NVIDIA); a CPU load device gets the classic `ModelPatcher` back from its `__new__`. The dynamic
    patcher force-loads every parameter and buffer of a module without `comfy_cast_weights` to the load
    device, keeping the originals as backups it restores on unload (comfy/model_patcher.py @08d0e51;
    core PRs #12433, #12739), so our modules run exactly as under the classic patcher: they are just not
    streamed. Cores before the rebinding (v0.3.64) have no `CoreModelPatcher`: `ModelPatcher` is used.
    """
    load_device = load_device or torch_device()
    offload = offload or offload_device()
    module = module.to(offload).eval()
    if not COMFY_AVAILABLE:
        return ModelHandle(module, load_device, offload)
    _allow_device_assignment(module)
    patcher_cls = getattr(model_patcher, "CoreModelPatcher", model_patcher.ModelPatcher)
    return patcher_cls(module, load_device=load_device, offload_device=offload)


def _allow_device_assignment(module: torch.nn.Module) -> None:
    """Let ComfyUI's patcher assign `module.device` on modules whose class makes it a read-only property.

    transformers and diffusers models compute `device` from their parameters; the patcher records the load
    device by assigning it and fails on them. This instance (only) gets a subclass whose property keeps the
    computed getter and accepts, and ignores, the assignment: the parameters' device stays the truth.
    """
    cls = type(module)
    device = getattr(cls, "device", None)
    if isinstance(device, property) and device.fset is None:
        module.__class__ = type(cls.__name__, (cls,), {"device": property(device.fget, lambda self, value: None),
                                                       "__module__": cls.__module__})


def load_models(handles: Sequence[Any], memory_required: int = 0) -> None:
    """Make room for and load the wrapped models; `memory_required` is the activation estimate in bytes.

    `force_full_load=True`: the classic patcher would otherwise load a plain module partially under low VRAM,
    leaving layers without `comfy_cast_weights` on the CPU (core issue #15433, fixed for upscalers the same
    way in PR #15437); the dynamic patcher ignores it and force-loads plain modules anyway. The final `.to`
    is a no-op when the patcher already placed everything, and moves what a patcher left behind, as core's
    upscaler node does after `load_models_gpu`.
    """
    if COMFY_AVAILABLE:
        model_management.load_models_gpu(list(handles), memory_required=memory_required, force_full_load=True)
    for handle in handles:
        handle.model.to(handle.load_device)


# ----------------------------------------------------------------------------------------- schema
def make_schema(*, advanced: Iterable[str] = (), **fields: Any) -> Any:
    """`io.Schema(**fields)`, dropping fields this ComfyUI predates (e.g. `search_aliases` before 2026).

    `advanced` names inputs the newest frontends fold into an "Advanced Inputs" section (the V3 input
    argument `advanced=`, comfy_api/latest/_io.py since core PR #11939); older cores do not know it, so it is
    set only where their `Input` accepts it and the inputs stay ordinary widgets elsewhere.
    """
    known = getattr(io.Schema, "__dataclass_fields__", None)
    if known is not None:
        fields = {k: v for k, v in fields.items() if k in known}
    fields.setdefault("category", CATEGORY)
    advanced = set(advanced)
    unknown = advanced - {item.id for item in fields.get("inputs", ())}
    if unknown:
        raise ValueError(f"advanced names inputs the node does not have: {sorted(unknown)}")
    for item in fields.get("inputs", ()):
        if item.id in advanced and "advanced" in inspect.signature(type(item).__init__).parameters:
            item.advanced = True
    return io.Schema(**fields)


register_model_folders()
