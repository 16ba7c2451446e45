"""Packaging rules: requirements never name torch, match pyproject, and install.py never adds a second onnxruntime."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_requirements_have_lower_bounds_only_and_no_torch():
    for requirement in _requirements():
        name = re.split(r"[<>=!~ \[]", requirement)[0].lower()
        assert name not in {"torch", "torchvision", "torchaudio", "controlnet-aux", "onnxruntime", "onnxruntime-gpu"}
        assert ">=" in requirement and "<" not in requirement and "==" not in requirement, requirement


def test_pyproject_dependencies_match_requirements():
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert re.findall(r'"([^"]+)"', block) == _requirements()
    for key in ("PublisherId", "DisplayName", "requires-comfyui"):
        assert re.search(rf"^{key} = ", text, re.M), key


@pytest.fixture()
def install_module():
    spec = importlib.util.spec_from_file_location("posetransfer_install", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("present, cuda, expected", [
    ([], False, "onnxruntime"), ([], True, "onnxruntime-gpu"),
    (["onnxruntime-gpu"], False, None), (["onnxruntime"], True, None),
])
def test_install_chooses_one_onnxruntime_and_keeps_an_existing_one(install_module, monkeypatch, present, cuda, expected):
    monkeypatch.setattr(install_module, "installed_onnxruntimes", lambda: list(present))
    monkeypatch.setattr(install_module, "cuda_usable", lambda: cuda)
    assert install_module.choose_wheel() == expected
    calls = []
    monkeypatch.setattr(install_module.subprocess, "call", lambda args: calls.append(args) or 0)
    assert install_module.main() == 0
    assert [c[-1] for c in calls] == ([expected] if expected else [])
