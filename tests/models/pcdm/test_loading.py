"""Loading stage-2 files in their original containers; kind detection and refusal of the wrong file."""
import pytest
import torch
from safetensors.torch import save_file

from posetransfer.models.checkpoints import CheckpointError, Kind
from posetransfer.models.pcdm.stages import load_pcdm_checkpoint

from .conftest import UNET_SIDE_CONFIG, stage2_state_dict, tiny_unet, write_with_config


def test_simplified_deepspeed_file_loads_every_weight(simplified_file):
    model = load_pcdm_checkpoint(str(simplified_file))
    assert model.kind == Kind.PCDM_SIMPLIFIED and not model.is_full
    assert not model.unet.has_class_embedding
    saved = torch.load(simplified_file, weights_only=True)["module"]
    assert len(saved) == 230  # PCDMS.md §13: the tiny simplified layout
    loaded = {"unet." + k: v for k, v in model.unet.unet.state_dict().items()}
    loaded |= {"pose_proj." + k: v for k, v in model.pose_proj.state_dict().items()}
    loaded |= {"image_proj_model." + k: v for k, v in model.image_proj.state_dict().items()}
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k].float()) for k in saved)
    assert model.dtype == torch.float32


def test_full_stage2_file_and_dtype_cast(full_file):
    model = load_pcdm_checkpoint(str(full_file), dtype=torch.float16)
    assert model.kind == Kind.PCDM_STAGE2 and model.is_full and model.unet.has_class_embedding
    assert model.dtype == torch.float16


def test_flat_safetensors_with_metadata_config(tmp_path):
    import json

    path = tmp_path / "pcdms.safetensors"
    save_file(stage2_state_dict(full=False), str(path), metadata={"config": json.dumps(UNET_SIDE_CONFIG)})
    assert load_pcdm_checkpoint(str(path)).kind == Kind.PCDM_SIMPLIFIED


def test_prior_file_named_like_stage2_is_refused_with_issue_24(tmp_path):
    path = tmp_path / "s2_256.pt"
    torch.save({"module": {"positional_embedding": torch.zeros(1, 6, 16), "prd_embedding": torch.zeros(1, 1, 16),
                           "proj_in.weight": torch.zeros(16, 16)}}, path)
    with pytest.raises(CheckpointError, match="#24") as err:
        load_pcdm_checkpoint(str(path))
    assert "s2_256.pt" in str(err.value) and "prior" in str(err.value)


def test_stage3_file_is_refused(tmp_path):
    path = tmp_path / "s3_512.pt"
    module = {"unet." + k: v for k, v in tiny_unet(in_channels=8).state_dict().items()}
    module |= {"image_proj_model_p.net.0.weight": torch.zeros(16, 24)}
    torch.save({"module": module}, path)
    with pytest.raises(CheckpointError, match="stage-3"):
        load_pcdm_checkpoint(str(path))


def test_missing_weight_is_named(tmp_path):
    sd = stage2_state_dict(full=False)
    del sd["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.weight"]
    path = tmp_path / "broken.pt"
    torch.save({"module": sd}, path)
    write_with_config(path, UNET_SIDE_CONFIG)
    with pytest.raises(CheckpointError, match="attn2.to_v.weight"):
        load_pcdm_checkpoint(str(path))


def test_without_side_config_widths_that_contradict_the_sd21_defaults_are_refused(tmp_path):
    path = tmp_path / "nocfg.pt"
    torch.save({"module": stage2_state_dict(full=False)}, path)
    # shapes do not encode heads: 32-channel blocks cannot have SD2.1's 64-wide heads, so guessing would build a
    # model that loads and computes something else. The error names the side config to write.
    with pytest.raises(CheckpointError) as error:
        load_pcdm_checkpoint(str(path))
    message = str(error.value)
    assert str(path) in message and str(tmp_path / "nocfg.json") in message and '"attention_head_dim"' in message
    (tmp_path / "nocfg.json").write_text('{"attention_head_dim": [2, 4], "norm_num_groups": 8}')
    assert load_pcdm_checkpoint(str(path)).unet.config.attention_head_dim == (2, 4)
    (tmp_path / "nocfg.json").write_text('{"attention_head_dim": [3, 4], "norm_num_groups": 8}')
    with pytest.raises(CheckpointError, match=r"sets attention_head_dim = 3, which does not divide.*Fix"):
        load_pcdm_checkpoint(str(path))