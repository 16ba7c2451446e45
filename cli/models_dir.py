"""The command line's models folder and model files: `--models-dir`, else $POSETRANSFER_MODELS_DIR, else the
models folder of the ComfyUI install the pack sits in (never a folder inside the pack); see model_files/folders.py."""
from __future__ import annotations

import argparse
import os
from typing import Mapping

from ..model_files import folders
from ..model_files.catalogue import FILES, HubFile

HELP = ("folder laid out like ComfyUI/models (default: $POSETRANSFER_MODELS_DIR, else the models folder of the "
        "ComfyUI install this pack is in)")


def add_option(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """`--models-dir` before or after the command; SUPPRESS keeps a subcommand from erasing the top-level value."""
    parser.add_argument("--models-dir", help=HELP, **({} if top_level else {"default": argparse.SUPPRESS}))


def add_file_options(parser: argparse.ArgumentParser, options: Mapping[str, str]) -> None:
    """`--<option>` for each catalogue file (option -> key in model_files/catalogue.py), default its usual name."""
    for option, key in options.items():
        file = FILES[key]
        parser.add_argument(f"--{option}", default=file.name, help=f"{file.what}: a file name in the {file.folder}/ "
                                                                  f"model folder, or a path (default: {file.name})")


def models_dir(args: argparse.Namespace) -> str | None:
    return getattr(args, "models_dir", None)


def find(args: argparse.Namespace, folder: str, name: str, *, hint: str = "") -> str:
    """Full path of model file `name` (a name in `folder`, or an absolute path)."""
    return folders.find_model_file(folder, name, models_dir(args), hint=hint)


def how_to_get(key: str, family: str, root: folders.ModelsRoot) -> str:
    """Where catalogue file `key` comes from, as an instruction: the download command, or the manual steps."""
    file = FILES[key]
    target = os.path.join(root.models_dir, file.folder, file.name)
    if isinstance(file.source, HubFile):
        return f"`python . download {family}` fetches it ({file.source.describe()}; saved as {target})"
    return file.source.instructions(target)


def _find_all(args: argparse.Namespace, wanted: dict[str, tuple[str, str]], family: str) -> dict[str, str]:
    """Resolve `wanted` (option -> (catalogue key, file name)); one error lists every missing file with the
    folders searched and where to get it."""
    root = folders.find_models_root(models_dir(args))
    found, missing = {}, []
    for option, (key, name) in wanted.items():
        file = FILES[key]
        try:
            found[option] = folders.find_in(root, file.folder, name)
        except FileNotFoundError:
            dirs = "\n    ".join(root.folder_dirs(file.folder))
            advice = how_to_get(key, family, root) if name == file.name else folders.folder_hint(file.folder, root)
            missing.append(f"- {name} ({file.what}) is not in {file.folder}/. Searched:\n    {dirs}\n"
                           f"  Get it: {advice}")
    if missing:
        raise FileNotFoundError(f"Missing model files (models folder {root.describe()}):\n" + "\n".join(missing))
    return found


def find_options(args: argparse.Namespace, options: Mapping[str, str], family: str) -> dict[str, str]:
    """The file of each option of `add_file_options` (option -> catalogue key): a path that exists as given, else
    the name in its model folder; one error lists every missing file (the folders searched and where to get each)."""
    wanted = {option: (key, getattr(args, option)) for option, key in options.items()
              if not os.path.isfile(getattr(args, option))}
    found = _find_all(args, wanted, family=family) if wanted else {}
    return {option: found.get(option, getattr(args, option)) for option in options}
