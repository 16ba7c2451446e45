"""Model folders without ComfyUI running: the command line's lookup, and the adapter's when ComfyUI is absent.

The models folder is never guessed inside the pack. It is, in this order: the folder given explicitly
(``--models-dir``), ``$POSETRANSFER_MODELS_DIR``, or the ``models/`` folder of the ComfyUI install the pack sits
in (``ComfyUI/custom_nodes/<pack>/../../models``). When that folder belongs to a ComfyUI install, the install's
extra paths file adds search directories as ComfyUI itself does. Newest core (Comfy-Org/ComfyUI ``main.py``
``apply_custom_paths``, version 0.38+, and ``utils/extra_config.py``): ``extra_paths.yaml`` next to ``main.py``
is read; if it exists, a deprecated ``extra_model_paths.yaml`` beside it is ignored, otherwise that one is read.
Each top-level section may set ``base_path`` (``~`` and ``$VARS`` expanded, relative to the yaml's folder) and
``is_default`` (its folders go first); every other key is a model folder name whose value holds one path per
line, joined to ``base_path`` or, without one, taken as absolute or relative to the yaml's folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV_VAR = "POSETRANSFER_MODELS_DIR"
PACK_ROOT = Path(__file__).resolve().parents[1]
# Newest core reads the first file that exists (see the module docstring).
EXTRA_PATHS_FILES = ("extra_paths.yaml", "extra_model_paths.yaml")

# Where other packs keep DWPose ONNX files (comfyui_controlnet_aux downloads into its ckpts tree; kijai uses
# models/detection). Relative to ComfyUI's models folder or its custom_nodes folder.
DWPOSE_MODEL_SUBDIRS = ("detection",)
DWPOSE_PACK_SUBDIRS = (
    "comfyui_controlnet_aux/ckpts/yzd-v/DWPose",
    "comfyui_controlnet_aux/ckpts/hr16/yolox-onnx",
    "comfyui_controlnet_aux/ckpts/hr16/UnJIT-DWPose",
    "comfyui_controlnet_aux/ckpts/hr16/DWPose-TorchScript-BatchSize5",
)


class ModelsDirNotFound(FileNotFoundError):
    """No models folder was given and none was found around the pack."""


@dataclass(frozen=True)
class ModelsRoot:
    """The models folder, how it was found (for messages), and the ComfyUI install it belongs to, if any."""

    models_dir: str
    origin: str
    comfy_dir: str | None = None
    extra_paths_file: str | None = field(default=None, compare=False)

    def folder_dirs(self, folder: str) -> list[str]:
        """Every directory searched for files of `folder` (e.g. "pcdms", "clip_vision"), first match wins."""
        dirs = [os.path.join(self.models_dir, folder)]
        if self.extra_paths_file:
            for path, is_default in read_extra_paths(self.extra_paths_file).get(folder, []):
                if path in dirs:
                    dirs.remove(path)
                if is_default:  # core's add_model_folder_path(..., is_default=True) puts it first
                    dirs.insert(0, path)
                else:
                    dirs.append(path)
        if folder == "dwpose":
            extra = [os.path.join(self.models_dir, d) for d in DWPOSE_MODEL_SUBDIRS]
            if self.comfy_dir:
                extra += [os.path.join(self.comfy_dir, "custom_nodes", d) for d in DWPOSE_PACK_SUBDIRS]
            dirs += [d for d in extra if os.path.isdir(d) and d not in dirs]
        return dirs

    def describe(self) -> str:
        return f"{self.models_dir} ({self.origin})"


def comfy_install_of(models_dir: str) -> str | None:
    """The ComfyUI install whose ``models`` folder `models_dir` is, or None."""
    parent = os.path.dirname(os.path.abspath(models_dir))
    is_models = os.path.basename(os.path.normpath(models_dir)) == "models"
    if is_models and os.path.isfile(os.path.join(parent, "folder_paths.py")):
        return parent
    return None


def extra_paths_file(comfy_dir: str | None) -> str | None:
    """The extra paths file newest core reads in `comfy_dir`, or None."""
    if not comfy_dir:
        return None
    for name in EXTRA_PATHS_FILES:
        path = os.path.join(comfy_dir, name)
        if os.path.isfile(path):
            return path
    return None


def read_extra_paths(yaml_path: str) -> dict[str, list[tuple[str, bool]]]:
    """Folder name -> [(directory, is_default)] from a ComfyUI extra paths file, resolved as core resolves them."""
    import yaml  # a dependency of huggingface_hub and transformers; imported here so lookups without a yaml stay light

    with open(yaml_path, encoding="utf-8") as handle:
        try:
            config = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{yaml_path} is not valid YAML ({error}); ComfyUI cannot read it either. "
                             "Fix or remove the file.") from error
    yaml_dir = os.path.dirname(os.path.abspath(yaml_path))
    found: dict[str, list[tuple[str, bool]]] = {}
    for section in (config.values() if isinstance(config, dict) else ()):
        if not isinstance(section, dict):
            continue
        section = dict(section)
        base_path = section.pop("base_path", None)
        if base_path:
            base_path = os.path.expandvars(os.path.expanduser(str(base_path)))
            if not os.path.isabs(base_path):
                base_path = os.path.abspath(os.path.join(yaml_dir, base_path))
        is_default = bool(section.pop("is_default", False))
        for folder, value in section.items():
            lines = value if isinstance(value, list) else str(value).split("\n")
            for line in (str(v).strip() for v in lines):
                if not line:
                    continue
                if base_path:
                    path = os.path.join(base_path, line)
                elif os.path.isabs(line):
                    path = line
                else:
                    path = os.path.abspath(os.path.join(yaml_dir, line))
                found.setdefault(str(folder), []).append((os.path.normpath(path), is_default))
    return found


def find_models_root(models_dir: str | None = None, *, pack_root: Path = PACK_ROOT) -> ModelsRoot:
    """Resolve the models folder: `models_dir`, then ``$POSETRANSFER_MODELS_DIR``, then the ComfyUI install around
    the pack. Raises `ModelsDirNotFound` naming everything tried."""
    for value, origin in ((models_dir, "--models-dir"), (os.environ.get(ENV_VAR), f"${ENV_VAR}")):
        if value:
            path = os.path.abspath(os.path.expanduser(value))
            if not os.path.isdir(path):
                raise ModelsDirNotFound(f"The models folder {path} (from {origin}) does not exist. Point {origin} at "
                                        "an existing folder laid out like ComfyUI/models.")
            comfy_dir = comfy_install_of(path)
            return ModelsRoot(path, origin, comfy_dir, extra_paths_file(comfy_dir))
    custom_nodes = pack_root.parent
    around = custom_nodes.parent / "models"
    if custom_nodes.name == "custom_nodes" and around.is_dir():
        comfy_dir = str(custom_nodes.parent)
        return ModelsRoot(str(around), f"the ComfyUI install at {comfy_dir}", comfy_dir, extra_paths_file(comfy_dir))
    raise ModelsDirNotFound(
        "No models folder. Tried: --models-dir (not given); "
        f"${ENV_VAR} (not set); a ComfyUI install around the pack ({pack_root} is not in a ComfyUI custom_nodes "
        f"folder with a models folder beside it). Pass --models-dir /path/to/ComfyUI/models or set {ENV_VAR}.")


def folder_hint(folder: str, root: ModelsRoot) -> str:
    """What to do when a file is missing from `folder`; the extra paths advice only where ComfyUI reads such a file."""
    hint = f"Put the file in {os.path.join(root.models_dir, folder)}"
    if root.extra_paths_file:
        hint += f", or list the folder that holds it under '{folder}:' in {root.extra_paths_file}"
    elif root.comfy_dir:  # neither file yet: name the one newest core reads, and the one older cores read
        hint += (f", or list the folder that holds it under '{folder}:' in {root.comfy_dir}{os.sep}extra_paths.yaml "
                 "(extra_model_paths.yaml on ComfyUI versions that predate extra_paths.yaml)")
    return hint + "."


def find_in(root: ModelsRoot, folder: str, name: str, *, hint: str = "") -> str:
    """Full path of `name` (a file name in `folder`, or an absolute path); the error names every directory searched,
    the models folder and how it was found, and what to do (`hint`, else where to put the file)."""
    if os.path.isabs(name) and os.path.isfile(name):
        return name
    dirs = root.folder_dirs(folder)
    for directory in dirs:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    searched = "\n  ".join(dirs)
    raise FileNotFoundError(f"Model file '{name}' was not found in the {folder}/ model folder of "
                            f"{root.describe()}. Searched:\n  {searched}\n{hint or folder_hint(folder, root)}")


def find_model_file(folder: str, name: str, models_dir: str | None = None, *, hint: str = "") -> str:
    """`find_in` the models folder `find_models_root(models_dir)` resolves (an absolute path needs none)."""
    if os.path.isabs(name) and os.path.isfile(name):
        return name
    return find_in(find_models_root(models_dir), folder, name, hint=hint)


def list_model_files(folder: str, models_dir: str | None = None) -> list[str]:
    """Files of `folder` relative to their search directory (sub-folders included), sorted; [] without a models
    folder, so combo lists stay empty rather than failing."""
    try:
        dirs = find_models_root(models_dir).folder_dirs(folder)
    except ModelsDirNotFound:
        return []
    found = set()
    for root in dirs:
        for dirpath, subdirs, files in os.walk(root, followlinks=True):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            rel = os.path.relpath(dirpath, root)
            found.update(f if rel == "." else os.path.join(rel, f) for f in files if not f.startswith("."))
    return sorted(found)
