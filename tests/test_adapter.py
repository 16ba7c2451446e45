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


def test_patcher_can_assign_device_on_modules_with_a_read_only_device_property():
    from transformers import Dinov2Config, Dinov2Model

    model = Dinov2Model(Dinov2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, image_size=28))
    with pytest.raises(AttributeError):
        model.device = torch.device("meta")
    adapter._allow_device_assignment(model)
    model.device = torch.device("meta")  # what ComfyUI's ModelPatcher.load does
    assert isinstance(model, Dinov2Model) and model.device == torch.device("cpu")
    plain = torch.nn.Linear(1, 1)
    adapter._allow_device_assignment(plain)
    assert type(plain) is torch.nn.Linear


def test_without_a_models_folder_combos_are_empty_and_lookups_say_what_was_tried(monkeypatch):
    from posetransfer.model_files import folders

    if folders.PACK_ROOT.parent.name == "custom_nodes":
        pytest.skip("this checkout sits in a ComfyUI install, whose models folder is found")
    monkeypatch.delenv("POSETRANSFER_MODELS_DIR", raising=False)
    assert adapter.model_file_list("pcdms") == [] and adapter.model_folder_paths("pcdms") == []
    with pytest.raises(folders.ModelsDirNotFound, match="POSETRANSFER_MODELS_DIR"):
        adapter.resolve_model_file("pcdms", "PCDMs_ckpt.pt")
