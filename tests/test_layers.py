"""Layering: the command line and the model-file lookup never import the ComfyUI node layer."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package, forbidden", [
    ("cli", ("..nodes", "comfy", "folder_paths", "comfy_api")),
    ("model_files", ("..nodes", "..models", "..pose", "torch", "comfy", "folder_paths")),
])
def test_package_does_not_import(package, forbidden):
    for path in sorted((ROOT / package).glob("*.py")):
        bad = [name for name in _imports(path) if name.split(".")[0] in {f.split(".")[0] for f in forbidden if
                                                                         not f.startswith(".")}
               or any(name == f or name.startswith(f + ".") for f in forbidden if f.startswith("."))]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_the_native_module_imports_opencv():
    """OpenCV is optional (never installed by the pack): `pose/native.py` alone imports it, inside a try."""
    importers = [path.relative_to(ROOT).as_posix() for folder in ("pose", "models", "nodes", "cli", "metrics",
                                                                  "model_files")
                 for path in sorted((ROOT / folder).rglob("*.py")) if "cv2" in _imports(path)]
    assert importers == ["pose/native.py"]
