"""SCFM weights: original key accounting, safe loading of the training container, strict errors."""
import os
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

from posetransfer.models.checkpoints import CheckpointError
from posetransfer.models.scfm import checkpoint as ck
from posetransfer.models.scfm.config import SCFMConfig
from posetransfer.models.scfm.unet import SCFMUNet


@pytest.fixture
def forward(tiny_inputs):
    return lambda model: _forward(model, tiny_inputs)


def _forward(model, tiny_inputs, seed=3):
    source, source_pose, target_pose = tiny_inputs(2, seed)
    x = torch.cat([torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed)), target_pose], 1)
    with torch.no_grad():
        return model(x, torch.tensor([980.0, 20.0]), model.prepare_condition(source, source_pose, target_pose))


def test_full_size_original_layout_matches_published_counts():
    with torch.device("meta"):
        model = SCFMUNet(SCFMConfig())
    canonical = model.state_dict()
    # SCFM.md §2/§6: 175,041,364 used parameters; the `ema` dict has 1188 entries, 194,168,223 elements.
    assert sum(p.numel() for p in model.parameters()) == 175_041_364
    original = ck.original_state_dict(canonical, SCFMConfig())
    assert len(original) == 1188
    assert sum(v.numel() for v in original.values()) == 194_168_223
    assert original["flow_net.jump0.model.2.weight"] is original["flow_net.jump0.conv1.weight"]
    assert {"input_blocks.11.1.target.attn1.fully_connect_layer.0.weight", "middle_block.1.target.attn2.fully_connect_layer.2.bias",
            "encoder.time_embed.2.weight", "output_blocks.12.0.cond_emb_layers.1.weight",
            "encoder.input_blocks.5.0.emb_layers.1.weight"} <= set(original)
    assert set(ck.canonical_state_dict(original)) == set(canonical)
    assert SCFMConfig.from_state_dict(original) == SCFMConfig()


def test_tiny_config_is_read_back_from_shapes(tiny_model, tiny_config):
    assert SCFMConfig.from_state_dict(tiny_model.state_dict()) == tiny_config


class _StubbedConfig:
    """Pickled under a module name that does not exist here, like the original's tensorfn/pydantic config."""

    def __init__(self):
        self.lr = 2e-5


def _save_with_foreign_class(obj, path):
    package, module = types.ModuleType("config"), types.ModuleType("config.diffconfig")
    _StubbedConfig.__module__, _StubbedConfig.__qualname__ = "config.diffconfig", "DiffusionConfig"
    module.DiffusionConfig, package.diffconfig = _StubbedConfig, module
    sys.modules.update({"config": package, "config.diffconfig": module})
    try:
        torch.save(obj, path)
    finally:
        del sys.modules["config.diffconfig"], sys.modules["config"]


def test_training_container_with_pickled_config_loads_safely(tmp_path, tiny_model, tiny_config, forward):
    original = ck.original_state_dict(tiny_model.state_dict(), tiny_config)
    path = tmp_path / "last.pt"
    _save_with_foreign_class({"model": original, "ema": original, "scheduler": {"step": 7},
                              "optimizer": {"state": {}, "param_groups": [{"lr": 2e-5}]}, "conf": _StubbedConfig()}, path)
    assert "config.diffconfig" not in sys.modules
    loaded = ck.load_scfm(path)
    assert "config.diffconfig" not in sys.modules  # stubbed, never imported
    assert not loaded.training
    assert torch.equal(forward(loaded), forward(tiny_model))


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch scfm_payload_ran",))


def test_code_running_payload_is_refused_and_never_run(tmp_path, tiny_model, tiny_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    original = ck.original_state_dict(tiny_model.state_dict(), tiny_config)
    path = tmp_path / "evil.pt"
    torch.save({"model": original, "ema": original, "conf": _Payload()}, path)
    with pytest.raises(CheckpointError, match="system"):
        ck.load_scfm(path)
    assert not (tmp_path / "scfm_payload_ran").exists()


def test_model_only_dict_and_canonical_safetensors_load(tmp_path, tiny_model, tiny_config, forward):
    original = ck.original_state_dict(tiny_model.state_dict(), tiny_config)
    torch.save({"model": original}, tmp_path / "model.pt")
    canonical = ck.canonical_state_dict(original)
    save_file({k: v.contiguous() for k, v in canonical.items()}, str(tmp_path / "scfm.safetensors"))
    want = forward(tiny_model)
    assert torch.equal(forward(ck.load_scfm(tmp_path / "model.pt")), want)
    assert torch.equal(forward(ck.load_scfm(tmp_path / "scfm.safetensors")), want)


def test_either_alias_name_is_accepted(tiny_model, tiny_config):
    original = ck.original_state_dict(tiny_model.state_dict(), tiny_config)
    for dropped in ("conv1", "model.2"):
        partial = {k: v for k, v in original.items() if f"jump0.{dropped}." not in k}
        assert torch.equal(ck.canonical_state_dict(partial)["flow_net.jump0.conv1.weight"],
                           tiny_model.flow_net.jump0.conv1.weight)


def test_alias_pair_with_different_values_is_an_error(tiny_model, tiny_config):
    original = ck.original_state_dict(tiny_model.state_dict(), tiny_config)
    original["flow_net.jump1.model.2.bias"] = original["flow_net.jump1.conv1.bias"] + 1
    with pytest.raises(CheckpointError, match="jump1.conv1.bias"):
        ck.canonical_state_dict(original)


def test_missing_and_unknown_keys_are_named(tiny_model, tiny_config):
    original = ck.original_state_dict(tiny_model.state_dict(), tiny_config)
    del original["input_blocks.11.1.target.dispNet.0.weight"]
    original["input_blocks.11.1.target.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as error:
        ck.build_scfm(original, source="broken.pt")
    message = str(error.value)
    assert "dispNet.0.weight" in message and "target.extra.weight" in message and "broken.pt" in message


def test_dead_key_rules():
    assert ck.is_dead_key("output_blocks.3.0.cond_emb_layers.1.bias")
    assert ck.is_dead_key("output_blocks.4.1.target.attn0.fully_connect_layer.0.weight")  # level 4 uses attn1
    assert not ck.is_dead_key("output_blocks.4.1.target.attn1.fully_connect_layer.0.weight")
    assert ck.is_dead_key("output_blocks.1.1.target.attn2.fully_connect_layer.2.weight")  # k = 1: constant softmax
    assert not ck.is_dead_key("input_blocks.11.1.target.attn0.fully_connect_layer.2.bias")
    assert not ck.is_dead_key("input_blocks.10.0.emb_layers.1.weight")
