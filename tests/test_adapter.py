"""The adapter without ComfyUI: devices, dtypes, folders, progress, schema, registration."""
import asyncio

import pytest
import torch

from posetransfer import comfy_entrypoint
from posetransfer.nodes import comfy_adapter as adapter


def test_runs_without_comfyui():
    assert adapter.COMFY_AVAILABLE is False
    assert adapter.torch_device() == torch.device("cpu")
    assert adapter.resolve_dtype("auto") == torch.float32
    assert adapter.resolve_dtype("bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        adapter.resolve_dtype("fp8")


def test_model_folders_use_env_and_name_searched_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path))
    (tmp_path / "pcdms" / "sub").mkdir(parents=True)
    (tmp_path / "pcdms" / "a.pt").write_bytes(b"x")
    (tmp_path / "pcdms" / "sub" / "b.safetensors").write_bytes(b"x")
    assert adapter.model_file_list("pcdms") == ["a.pt", "sub/b.safetensors"]
    assert adapter.resolve_model_file("pcdms", "a.pt") == str(tmp_path / "pcdms" / "a.pt")
    with pytest.raises(FileNotFoundError) as err:
        adapter.resolve_model_file("pcdms", "missing.pt")
    assert "missing.pt" in str(err.value) and str(tmp_path / "pcdms") in str(err.value)


def test_progress_callback_is_a_noop_without_comfyui():
    progress = adapter.progress_callback(3)
    for step in range(1, 4):
        progress(step, 3)


def test_wrap_and_load_model_keeps_module():
    module = torch.nn.Linear(2, 2)
    handle = adapter.wrap_model(module)
    adapter.load_models([handle], memory_required=1024)
    assert handle.model is module and handle.model_size() == 6 * 4


def test_make_schema_defaults_category_and_drops_nothing_known():
    schema = adapter.make_schema(node_id="PoseTransferX", search_aliases=["x"])
    assert schema.category == "PoseTransfer" and schema.search_aliases == ["x"]


def test_entrypoint_lists_prefixed_nodes():
    extension = asyncio.run(comfy_entrypoint())
    nodes = asyncio.run(extension.get_node_list())
    for node in nodes:
        schema = node.define_schema()
        assert schema.node_id.startswith("PoseTransfer")
        assert schema.category.startswith("PoseTransfer")
