"""Import the pack the way ComfyUI does: as a package loaded from the repository root.

ComfyUI imports `custom_nodes/<folder>/__init__.py` under a name derived from the folder, so the
pack only uses relative imports. Tests load it under the fixed name ``posetransfer`` so that
``import posetransfer.models.checkpoints`` works whatever the checkout folder is called.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "posetransfer"


def _load_pack() -> None:
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        PACKAGE, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)


_load_pack()
