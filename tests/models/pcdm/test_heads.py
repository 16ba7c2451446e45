"""Pose projection and appearance projection heads: widths from weights, original layer layout."""
import pytest
import torch
import torch.nn.functional as F

from posetransfer.models.pcdm.heads import ImageProjection, build_pose_proj

from .conftest import tiny_image_proj, tiny_pose_proj


def test_pose_proj_rebuilt_from_weights_downsamples_by_eight():
    reference = tiny_pose_proj()
    rebuilt = build_pose_proj(reference.state_dict())
    rebuilt.load_state_dict(reference.state_dict())
    x = torch.rand(2, 3, 64, 128) * 2 - 1
    with torch.no_grad():
        out = rebuilt(x)
        torch.testing.assert_close(out, reference(x))
    assert out.shape == (2, 32, 8, 16)


def test_released_pose_proj_widths():
    from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding

    with torch.device("meta"):
        released = ControlNetConditioningEmbedding(320, 3, (16, 32, 96, 256))
        rebuilt = build_pose_proj(released.state_dict())
    assert sum(p.numel() for p in rebuilt.parameters()) == 1_086_480  # PCDMS.md §3.2


def test_image_projection_formula_and_keys():
    proj = tiny_image_proj()
    assert sorted(proj.state_dict()) == ["net.0.bias", "net.0.weight", "net.3.bias", "net.3.weight",
                                         "net.4.bias", "net.4.weight"]
    sd = proj.state_dict()
    tokens = torch.randn(2, 5, 24)
    hidden = F.layer_norm(F.gelu(tokens @ sd["net.0.weight"].T + sd["net.0.bias"]), (16,),
                          sd["net.3.weight"], sd["net.3.bias"])
    expected = hidden @ sd["net.4.weight"].T + sd["net.4.bias"]
    with torch.no_grad():
        torch.testing.assert_close(proj(tokens), expected)
    assert (ImageProjection.from_state_dict(sd).in_dim, ImageProjection.from_state_dict(sd).out_dim) == (24, 32)
    with pytest.raises(ValueError, match="net.0.weight"):
        ImageProjection.from_state_dict({})


def test_released_image_projection_size():
    assert sum(p.numel() for p in ImageProjection(1536, 768, 1024).parameters()) == 1_969_408
