"""Packaging rules: requirements never name torch, match pyproject, and install.py never adds a second onnxruntime;
the test command runs in a checkout under the repository's own name."""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
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


def test_the_tests_run_in_a_checkout_named_as_users_clone_it(tmp_path):
    """`ComfyUI-PoseTransfer` is no identifier, so pytest can only import the checkout's __init__.py (for the
    rootdir's package node) as a module outside any package: every test errored there until tests/conftest.py handed
    it the pack."""
    checkout = tmp_path / "ComfyUI-PoseTransfer"
    skipped = shutil.ignore_patterns(".*", "__pycache__", "tests", "bench", "workflows", "web")
    shutil.copytree(ROOT, checkout, ignore=skipped)
    (checkout / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "conftest.py", checkout / "tests")
    (checkout / "tests" / "test_probe.py").write_text("def test_probe():\n    from posetransfer.models import images\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_probe.py"],
                         cwd=checkout, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-3000:]
