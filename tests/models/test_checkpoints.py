"""The one checkpoint reader: containers, safety, corrupt files, kind detection, strict loading."""
from __future__ import annotations

import collections
import os
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from posetransfer.models.checkpoints import (
    CheckpointError, Kind, detect_kind, diffusers_weights_file, load_strict, read_checkpoint, split_prefixes,
)


def _weights(*names: str, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(3, 2, generator=generator) for name in names}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _pcdm_simplified() -> dict[str, torch.Tensor]:
    sd = _weights("unet.conv_out.weight", "pose_proj.conv_in.weight", "image_proj_model.net.0.weight")
    sd["unet.conv_in.weight"] = torch.randn(32, 9, 3, 3)
    return sd


def _pcdm_full() -> dict[str, torch.Tensor]:
    sd = _weights("pose_proj.conv_in.weight", "image_proj_model_p.net.0.weight", "unet.class_embedding.linear_1.weight")
    sd["unet.conv_in.weight"] = torch.randn(32, 9, 3, 3)
    return sd


def _pcdm_stage3() -> dict[str, torch.Tensor]:
    sd = _weights("image_proj_model_p.net.0.weight")
    sd["unet.conv_in.weight"] = torch.randn(32, 8, 3, 3)
    return sd


def _pcdm_prior() -> dict[str, torch.Tensor]:
    sd = _weights("proj_in.weight", "transformer_blocks.0.attn1.to_q.weight")
    sd["positional_embedding"] = torch.randn(1, 6, 64)
    sd["prd_embedding"] = torch.randn(1, 1, 64)
    return sd


def _scfm() -> dict[str, torch.Tensor]:
    sd = _weights("cct_block.embeddings_1.position_embeddings", "input_blocks.11.1.target.dispNet.0.weight")
    sd["flow_net.output_eight.weight"] = torch.randn(2, 16, 3, 3)
    return sd


def _tiny_vae() -> dict[str, torch.Tensor]:
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=4, layers_per_block=1)
    return vae.state_dict()


def _tiny_dino() -> dict[str, torch.Tensor]:
    from transformers import Dinov2Config, Dinov2Model
    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, patch_size=14, image_size=28)
    return Dinov2Model(config).state_dict()


def _tiny_clip() -> dict[str, torch.Tensor]:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=28, patch_size=14, projection_dim=8)
    return CLIPVisionModelWithProjection(config).state_dict()


@pytest.mark.parametrize("build, kind", [
    (_pcdm_simplified, Kind.PCDM_SIMPLIFIED), (_pcdm_full, Kind.PCDM_STAGE2), (_pcdm_stage3, Kind.PCDM_STAGE3),
    (_pcdm_prior, Kind.PCDM_PRIOR), (_scfm, Kind.SCFM), (_tiny_vae, Kind.VAE_DIFFUSERS), (_tiny_dino, Kind.DINOV2),
    (_tiny_clip, Kind.CLIP_VISION),
])
def test_kind_detection_from_keys_and_shapes(build, kind, tmp_path):
    sd = build()
    assert detect_kind(sd) is kind
    path = tmp_path / "model.pt"
    torch.save({"module": sd}, path)
    checkpoint = read_checkpoint(path, expect=kind)
    assert checkpoint.kind is kind and checkpoint.container == "module"
    _assert_same(checkpoint.state_dict, sd)


def test_ldm_vae_layout_is_detected():
    sd = _weights("encoder.down.0.block.0.conv1.weight", "decoder.conv_out.weight", "encoder.mid.attn_1.q.weight")
    assert detect_kind(sd) is Kind.VAE_LDM


def test_unrelated_weights_are_unknown(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file(_weights("foo.weight", "bar.bias"), str(path))
    with pytest.raises(CheckpointError, match="not a model this pack recognises.*foo.weight"):
        read_checkpoint(path, expect=Kind.SCFM)


def test_mislabeled_stage2_file_is_reported_as_a_prior(tmp_path):
    path = tmp_path / "s2_256.pt"
    torch.save({"module": _pcdm_prior()}, path)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path, expect=[Kind.PCDM_SIMPLIFIED, Kind.PCDM_STAGE2])
    message = str(error.value)
    assert "stage-1 prior" in message and "PCDMs#24" in message and "s2_256.pt" in message


def test_safetensors_round_trip_with_metadata_config(tmp_path):
    sd = _pcdm_simplified()
    path = tmp_path / "m.safetensors"
    save_file(sd, str(path), metadata={"config": '{"heads": [1, 2]}', "posetransfer_kind": "pcdm_simplified"})
    checkpoint = read_checkpoint(path)
    _assert_same(checkpoint.state_dict, sd)
    assert checkpoint.container == "safetensors" and checkpoint.config == {"heads": [1, 2]}
    assert checkpoint.metadata["posetransfer_kind"] == "pcdm_simplified"


def test_side_json_config_is_read(tmp_path):
    path = tmp_path / "PCDMs_ckpt.pt"
    torch.save({"module": _pcdm_simplified()}, path)
    (tmp_path / "PCDMs_ckpt.json").write_text('{"attention_head_dim": [2, 4]}')
    assert read_checkpoint(path).config == {"attention_head_dim": [2, 4]}


def test_deepspeed_container_with_bookkeeping(tmp_path):
    sd = _pcdm_full()
    container = {
        "module": sd, "buffer_names": [], "optimizer": None, "lr_scheduler": {"last_epoch": 3},
        "param_shapes": [collections.OrderedDict(a=torch.Size([3, 2]))], "global_steps": 10,
        "ds_version": "0.10.0", "ds_config": {"train_batch_size": 8}, "loss_scale": np.float64(65536.0),
        "dp_world_size": 8, "epoch": np.int64(2),
    }
    path = tmp_path / "mp_rank_00_model_states.pt"
    torch.save(container, path)
    checkpoint = read_checkpoint(path)
    assert checkpoint.container == "module" and checkpoint.kind is Kind.PCDM_STAGE2
    _assert_same(checkpoint.state_dict, sd)


def _save_with_foreign_class(path, obj_factory, module_name: str) -> None:
    """Pickle an object of a class living in a module that will not exist when the file is read."""
    module = types.ModuleType(module_name)
    sys.modules[module_name] = module
    try:
        torch.save(obj_factory(module), path)
    finally:
        del sys.modules[module_name]


def test_scfm_training_container_with_pickled_config_object(tmp_path):
    sd = _scfm()

    def make(module):
        class DiffusionConfig:
            def __init__(self):
                self.lr = 2e-5
                self.betas = [1e-4, 2e-2]
        DiffusionConfig.__module__ = module.__name__
        DiffusionConfig.__qualname__ = "DiffusionConfig"
        module.DiffusionConfig = DiffusionConfig
        ema = {k: v + 1 for k, v in sd.items()}
        return {"model": sd, "ema": ema, "scheduler": {"step": 5}, "optimizer": {"state": {}}, "conf": DiffusionConfig()}

    path = tmp_path / "last.pt"
    _save_with_foreign_class(path, make, "config_diffconfig_absent")
    checkpoint = read_checkpoint(path, expect=Kind.SCFM)
    assert checkpoint.container == "ema"
    _assert_same(checkpoint.state_dict, {k: v + 1 for k, v in sd.items()})


class _Payload:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_code_executing_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"module": _pcdm_simplified(), "extra": _Payload(f"touch {marker}")}, path)
    with pytest.raises(CheckpointError, match=r"(os|posix|nt)\.system.*Nothing from it was executed"):
        read_checkpoint(path)
    assert not marker.exists()


def test_protocol_4_and_legacy_format_files_load(tmp_path):
    sd = _pcdm_stage3()
    for name, kwargs in (("p4.pt", {"pickle_protocol": 4}), ("legacy.pt", {"_use_new_zipfile_serialization": False})):
        path = tmp_path / name
        torch.save({"module": sd}, path, **kwargs)
        _assert_same(read_checkpoint(path).state_dict, sd)


def test_truncated_files_give_clear_errors(tmp_path):
    sd = _pcdm_simplified()
    good_st, good_pt = tmp_path / "a.safetensors", tmp_path / "a.pt"
    save_file(sd, str(good_st))
    torch.save({"module": sd}, good_pt)
    for good in (good_st, good_pt):
        data = good.read_bytes()
        bad = tmp_path / ("cut_" + good.name)
        bad.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")


def test_non_weight_containers_are_rejected(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"epoch": 3, "notes": "hi"}, path)
    with pytest.raises(CheckpointError, match="no recognisable weights.*epoch"):
        read_checkpoint(path)


def test_split_prefixes_strips_and_names_stray_keys():
    sd = _pcdm_full()
    parts = split_prefixes(sd, ["unet.", "pose_proj.", "image_proj_model_p."])
    assert set(parts["unet."]) == {"conv_in.weight", "class_embedding.linear_1.weight"}
    assert set(parts["image_proj_model_p."]) == {"net.0.weight"}
    with pytest.raises(CheckpointError, match="belong to no known part.*image_proj_model_p.net.0.weight"):
        split_prefixes(sd, ["unet.", "pose_proj.", "image_proj_model."])


def test_load_strict_names_missing_unexpected_and_misshaped_keys():
    module = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    good = {k: torch.ones_like(v) for k, v in module.state_dict().items()}
    load_strict(module, good)
    assert torch.equal(module[0].weight, torch.ones(3, 2))
    bad = dict(good)
    del bad["1.bias"]
    bad["2.weight"] = torch.zeros(1)
    bad["0.weight"] = torch.zeros(4, 2)
    with pytest.raises(CheckpointError) as error:
        load_strict(module, bad, source="x.pt")
    message = str(error.value)
    assert "1 missing: 1.bias" in message and "1 unexpected: 2.weight" in message
    assert "0.weight (4, 2) (model wants (3, 2))" in message and "from x.pt" in message


@pytest.mark.parametrize("container", ["module", "state_dict", "model", "ema", "flat"])
def test_every_container_round_trips(tmp_path, container):
    sd = _pcdm_stage3()
    path = tmp_path / f"{container}.ckpt"
    torch.save(sd if container == "flat" else {container: sd, "epoch": 1}, path)
    checkpoint = read_checkpoint(path, expect=Kind.PCDM_STAGE3)
    assert checkpoint.container == container
    _assert_same(checkpoint.state_dict, sd)


def test_diffusers_folder_weights_are_found_in_the_folder_or_its_subfolder(tmp_path):
    unet = tmp_path / "sd21" / "unet"
    unet.mkdir(parents=True)
    (unet / "config.json").write_text('{"norm_num_groups": 8}')
    save_file({"conv_in.weight": torch.zeros(2, 4, 3, 3)}, str(unet / "diffusion_pytorch_model.safetensors"))
    weights = diffusers_weights_file(tmp_path / "sd21", "unet")
    assert weights == diffusers_weights_file(unet, "unet") == str(unet / "diffusion_pytorch_model.safetensors")
    assert read_checkpoint(weights).config == {"norm_num_groups": 8}  # config.json is its side config
    with pytest.raises(CheckpointError, match=r"sd21 is not a diffusers model folder: neither it nor its vae/"):
        diffusers_weights_file(tmp_path / "sd21", "vae")
    with pytest.raises(CheckpointError, match="not found"):
        diffusers_weights_file(tmp_path / "absent", "unet")
