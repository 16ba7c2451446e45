"""Command line: `python path/to/ComfyUI-PoseTransfer <command> ...` (commands listed by --help; see README)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent
PACKAGE = "posetransfer"


def load_pack():
    """Import the pack as the package `posetransfer`, as ComfyUI imports it from custom_nodes/ (relative imports)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


if __name__ == "__main__":
    # Running a folder puts it first on sys.path; our `models`/`nodes` folders must not shadow other modules.
    if sys.path and Path(sys.path[0]).resolve() == PACK_ROOT:
        sys.path.pop(0)
    load_pack()
    from posetransfer.cli import main

    sys.exit(main())
