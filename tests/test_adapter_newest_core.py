"""The adapter inside a stand-in of the newest ComfyUI core (v0.4x with Dynamic VRAM on).

The stand-in reproduces the contracts the adapter relies on, as core's comfy/model_patcher.py (@08d0e51),
main.py (@02018c7) and comfy/model_management.py (@02b2b38) define them:
- main.py rebinds `comfy.model_patcher.CoreModelPatcher` to `ModelPatcherDynamic` after start-up;
- `ModelPatcherDynamic.is_dynamic()` is True; its `load` refuses `full_load`, replaces every parameter and
  buffer of a module without `comfy_cast_weights` by a copy on the load device and keeps the original as a
  backup, and its unload puts the originals back;
- the classic `ModelPatcher` loads partially unless `load_models_gpu(..., force_full_load=True)`, and a
  partial load leaves plain layers on the offload device;
- core's own plain-module loaders call `load_state_dict(..., assign=patcher.is_dynamic())`.
The "GPU" of this machine is the CPU, so moves are recorded, not performed.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from posetransfer.nodes import schema_stub

ADAPTER = Path(__file__).resolve().parents[1] / "nodes" / "comfy_adapter.py"
FULL = 1e32  # what LoadedModel.model_load passes for "no limit"


class ModelPatcher:
    def __init__(self, model, load_device, offload_device):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device
        model.device = offload_device  # core assigns it: modules with a read-only `device` must accept it
        self.loaded_plain_layers = False

    def is_dynamic(self) -> bool:
        return False

    def model_size(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())

    def partially_load(self, device, extra_memory=0.0):
        self.load(device, full_load=extra_memory >= FULL)

    def load(self, device, full_load=False):
        # A partial classic load leaves layers without comfy_cast_weights where they are (core issue #15433).
        self.loaded_plain_layers = full_load
        self.model.device = device

    def detach(self):
        self.model.device = self.offload_device


class ModelPatcherDynamic(ModelPatcher):
    def __init__(self, model, load_device, offload_device):
        super().__init__(model, load_device, offload_device)
        self.backup: dict[str, torch.Tensor] = {}

    def is_dynamic(self) -> bool:
        return True

    def partially_load(self, device, extra_memory=0.0):  # the dynamic patcher ignores the memory budget
        self.load(device)

    def load(self, device, full_load=False):
        assert not full_load and device == self.load_device
        for name, tensor in [*self.model.named_parameters(), *self.model.named_buffers()]:
            owner_name, _, attr = name.rpartition(".")
            owner = self.model.get_submodule(owner_name)
            assert not hasattr(owner, "comfy_cast_weights"), "plain modules only in this stand-in"
            self.backup.setdefault(name, tensor)
            moved = tensor.detach().to(device).clone()
            if isinstance(tensor, torch.nn.Parameter):
                moved = torch.nn.Parameter(moved, requires_grad=tensor.requires_grad)
            setattr(owner, attr, moved)  # what comfy.utils.set_attr_param does
        self.loaded_plain_layers = True
        self.model.device = device

    def detach(self):
        for name, tensor in self.backup.items():
            owner_name, _, attr = name.rpartition(".")
            setattr(self.model.get_submodule(owner_name), attr, tensor)
        self.backup.clear()
        super().detach()


def _newest_core(monkeypatch, calls: list) -> types.ModuleType:
    """Install stand-in `comfy*` and `folder_paths` modules; return the adapter imported against them."""
    def module(name, **attrs):
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    patcher = module("comfy.model_patcher", ModelPatcher=ModelPatcher, ModelPatcherDynamic=ModelPatcherDynamic,
                     CoreModelPatcher=ModelPatcher)  # until main.py rebinds it

    def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                        force_full_load=False):
        calls.append((len(models), memory_required, force_full_load))
        for m in models:
            m.partially_load(m.load_device, FULL if force_full_load else 0.1)

    cpu = torch.device("cpu")
    management = module("comfy.model_management", load_models_gpu=load_models_gpu, get_torch_device=lambda: cpu,
                        unet_offload_device=lambda: cpu, text_encoder_device=lambda: cpu,
                        intermediate_device=lambda: cpu, should_use_bf16=lambda device=None: False,
                        should_use_fp16=lambda device=None: False,
                        throw_exception_if_processing_interrupted=lambda: None)
    module("comfy.utils", ProgressBar=object)
    module("comfy", model_patcher=patcher, model_management=management)
    io = types.SimpleNamespace(**vars(schema_stub.io))
    module("comfy_api")
    module("comfy_api.v0_0_2", ComfyExtension=schema_stub.ComfyExtension, io=io, ui=schema_stub.ui)
    module("folder_paths", folder_names_and_paths={}, models_dir="/nonexistent/models",
           supported_pt_extensions={".pt", ".safetensors"}, get_folder_paths=lambda name: [])
    # A second copy of the adapter inside the pack's package (its relative imports), bound to the stand-ins.
    spec = importlib.util.spec_from_file_location("posetransfer.nodes.adapter_under_newest_core", ADAPTER)
    adapter = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, adapter)
    spec.loader.exec_module(adapter)
    assert adapter.COMFY_AVAILABLE
    return adapter


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4), torch.nn.BatchNorm2d(4)).eval()


def test_dynamic_vram_wraps_loads_runs_and_unloads_like_the_classic_patcher(monkeypatch):
    calls: list = []
    adapter = _newest_core(monkeypatch, calls)
    sys.modules["comfy.model_patcher"].CoreModelPatcher = ModelPatcherDynamic  # main.py, after our import
    model = _tiny_model()
    x = torch.rand(1, 3, 8, 8)
    expected = model(x)
    originals = [p for p in model.parameters()]
    handle = adapter.wrap_model(model)
    assert type(handle) is ModelPatcherDynamic and handle.is_dynamic()

    adapter.load_models([handle], memory_required=123)
    assert calls == [(1, 123, True)] and handle.loaded_plain_layers
    assert all(a is not b for a, b in zip(handle.model.parameters(), originals))  # replaced by loaded copies
    torch.testing.assert_close(handle.model(x), expected, rtol=0, atol=0)

    handle.detach()  # what ComfyUI does when it needs the memory
    assert all(a is b for a, b in zip(handle.model.parameters(), originals))
    adapter.load_models([handle])  # and loads it again for the next run
    torch.testing.assert_close(handle.model(x), expected, rtol=0, atol=0)


def test_classic_patcher_is_loaded_fully_even_when_core_would_load_partially(monkeypatch):
    calls: list = []
    adapter = _newest_core(monkeypatch, calls)
    handle = adapter.wrap_model(_tiny_model())
    assert type(handle) is ModelPatcher and not handle.is_dynamic()
    adapter.load_models([handle], memory_required=7)
    assert calls == [(1, 7, True)] and handle.loaded_plain_layers


def test_transformers_module_under_the_dynamic_patcher(monkeypatch):
    from transformers import Dinov2Config, Dinov2Model

    adapter = _newest_core(monkeypatch, [])
    sys.modules["comfy.model_patcher"].CoreModelPatcher = ModelPatcherDynamic
    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                                     image_size=28, patch_size=14)).eval()
    pixels = torch.rand(1, 3, 28, 28)
    expected = model(pixel_values=pixels).last_hidden_state
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = Dinov2Model(model.config).eval()
    handle = adapter.wrap_model(fresh)  # read-only `device` property: the patcher's assignment must work
    fresh.load_state_dict(state, assign=handle.is_dynamic())  # core's loading contract (comfy/clip_vision.py)
    adapter.load_models([handle])
    torch.testing.assert_close(handle.model(pixel_values=pixels).last_hidden_state, expected, rtol=0, atol=0)
    assert isinstance(handle.model, Dinov2Model)


def test_advanced_inputs_reach_cores_that_know_them_only(monkeypatch):
    adapter = _newest_core(monkeypatch, [])

    class NewestInt(schema_stub.io.Int.Input):  # newest core: Input.__init__(..., advanced: bool = None)
        def __init__(self, id, advanced=None, **kw):
            super().__init__(id, **kw)
            self.advanced = advanced

    newest, old = NewestInt("batch_chunk", optional=True), schema_stub.io.Int.Input("batch_chunk", optional=True)
    adapter.make_schema(node_id="PoseTransferX", inputs=[newest], advanced=["batch_chunk"], is_experimental=True)
    adapter.make_schema(node_id="PoseTransferY", inputs=[old], advanced=["batch_chunk"])
    assert newest.advanced is True and not hasattr(old, "advanced")
    with pytest.raises(ValueError, match="steps"):
        adapter.make_schema(node_id="PoseTransferZ", inputs=[old], advanced=["steps"])
