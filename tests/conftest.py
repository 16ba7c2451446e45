"""Import the pack the way ComfyUI does: as a package loaded from the repository root.

Tests use the fixed package name ``posetransfer`` (``from posetransfer.models.checkpoints import ...``),
whatever the checkout folder is called; `__main__.py` owns the bootstrap, shared with the command line.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("posetransfer_bootstrap", Path(__file__).resolve().parents[1] / "__main__.py")
_bootstrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bootstrap)
_bootstrap.load_pack()

# The models in the tests are tiny: thread start-up costs more than it saves, and CI has 2 cores.
torch.set_num_threads(1)
