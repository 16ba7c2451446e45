"""A tiny SCFM with the full topology (64 x 64 input: sites at 8/4/2, MSFF patches 8/4/2), random weights."""
import pytest
import torch

from posetransfer.models.scfm.config import SCFMConfig
from posetransfer.models.scfm.unet import SCFMUNet

TINY = SCFMConfig(image_size=64, level_channels=(8, 8, 8, 8, 16, 16), embed_channels=32,
                  flow_channels=(4, 8, 16, 32, 32), msff_patch=8, msff_heads=2, msff_layers=1, msff_mlp_ratio=2)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convolutions gain nothing from threads, and on a shared 2-core machine OpenMP spin-waiting makes
    them several times slower; restore the setting for the rest of the session."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomised(config: SCFMConfig = TINY, seed: int = 0) -> SCFMUNet:
    """Eval-mode model whose every weight is random (default init zeroes the output convs, making eps = 0)."""
    gen = torch.Generator().manual_seed(seed)
    model = SCFMUNet(config).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            values = torch.randn(tensor.shape, generator=gen) * 0.2
            tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)
    return model


@pytest.fixture(scope="module")
def tiny_config() -> SCFMConfig:
    return TINY


@pytest.fixture(scope="module")
def tiny_model() -> SCFMUNet:
    return randomised()


@pytest.fixture(scope="module")
def make_model():
    """`make_model(seed)` -> another randomised tiny model."""
    return lambda seed=0: randomised(TINY, seed)


def _inputs(batch: int = 2, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    source = torch.rand(batch, 3, 64, 64, generator=gen) * 2 - 1
    return source, torch.rand(batch, 20, 64, 64, generator=gen), torch.rand(batch, 20, 64, 64, generator=gen)


@pytest.fixture(scope="module")
def tiny_inputs():
    """`tiny_inputs(batch, seed)` -> (source [-1,1], source pose, target pose [0,1]) at 64 x 64."""
    return _inputs
