"""PoseUNet: the residual enters after conv_in; otherwise exactly diffusers' UNet2DConditionModel."""
import pytest
import torch

from posetransfer.models.pcdm.config import UNetConfig
from posetransfer.models.pcdm.unet import PoseUNet

from .conftest import UNET_SIDE_CONFIG, tiny_unet


def _pose_unet(stock):
    model = PoseUNet(UNetConfig.from_state_dict(stock.state_dict(), UNET_SIDE_CONFIG))
    model.unet.load_state_dict(stock.state_dict())
    return model.eval()


def _stock_with_residual(stock, residual, *args, **kwargs):
    """Reference: diffusers' own forward with the residual added to conv_in's output by a hook (PCDMS.md §9)."""
    handle = stock.conv_in.register_forward_hook(lambda module, inputs, output: output + residual)
    try:
        return stock(*args, **kwargs).sample
    finally:
        handle.remove()


@pytest.mark.parametrize("full", [False, True])
def test_matches_stock_forward_plus_conv_in_residual(full):
    stock = tiny_unet(full=full)
    model = _pose_unet(stock)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 8, 16, generator=g)
    tokens = torch.randn(2, 5, 32, generator=g)
    residual = torch.randn(2, 32, 8, 16, generator=g)
    labels = torch.randn(2, 1, 32, generator=g) if full else None
    with torch.no_grad():
        ours = model(x, torch.tensor(981), tokens, pose_residual=residual, class_labels=labels)
        ref = _stock_with_residual(stock, residual, x, 981, tokens,
                                   class_labels=None if labels is None else labels.squeeze(1))
        plain = stock(x, 981, tokens, class_labels=None if labels is None else labels.squeeze(1)).sample
    assert ours.shape == (2, 4, 8, 16)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert (ours - plain).abs().max() > 1e-3  # the residual matters


def test_odd_latent_size_and_per_item_timesteps():
    stock = tiny_unet()
    model = _pose_unet(stock)
    x, tokens = torch.randn(2, 9, 7, 9), torch.randn(2, 3, 32)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, tokens), stock(x, t, tokens).sample, atol=1e-5, rtol=1e-5)


def test_class_label_presence_is_checked():
    simplified, full = _pose_unet(tiny_unet()), _pose_unet(tiny_unet(full=True))
    x, tokens = torch.randn(1, 9, 8, 8), torch.randn(1, 3, 32)
    with pytest.raises(ValueError, match="class_labels"):
        full(x, 1, tokens)
    with pytest.raises(ValueError, match="no class embedding"):
        simplified(x, 1, tokens, class_labels=torch.randn(1, 32))
