"""SCFM's full objective: torch VGG19 in torchvision's layout, GFLA's correctness and affine regularisation."""
import math

import pytest
import torch
import torch.nn.functional as F

from posetransfer.models.checkpoints import CheckpointError
from posetransfer.models.scfm.flow_losses import (CORRECTNESS_LAYERS, correctness_loss, regularisation_loss)
from posetransfer.models.scfm.ops import block_extractor, local_attn_reshape, resample2d
from posetransfer.models.scfm.vgg import CONV_INDICES, RELU_NAMES, load_vgg19

TINY_WIDTHS = (4, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8)


def tiny_vgg_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A scaled-down torchvision VGG19 state dict: `features.N.*` at torchvision's indices plus classifier keys."""
    gen = torch.Generator().manual_seed(seed)
    state, cin = {}, 3
    for index, width in zip(CONV_INDICES, TINY_WIDTHS):
        state[f"features.{index}.weight"] = torch.randn(width, cin, 3, 3, generator=gen) * 0.3
        state[f"features.{index}.bias"] = torch.randn(width, generator=gen) * 0.1
        cin = width
    state["classifier.0.weight"] = torch.zeros(4, 8)
    return state


def test_vgg19_layout_and_features_match_a_literal_forward(tmp_path):
    assert CONV_INDICES == (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)  # torchvision's
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    state = tiny_vgg_state()
    torch.save(state, path)
    vgg = load_vgg19(path)
    assert not any(p.requires_grad for p in vgg.parameters())
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    features = vgg(image)
    assert list(features) == [RELU_NAMES[i + 1] for i in CONV_INDICES]
    x, block = image, 0
    for index in CONV_INDICES:
        if index in (5, 10, 19, 28):  # a max-pool precedes the first conv of blocks 2..5
            x, block = F.max_pool2d(x, 2), block + 1
        x = F.relu(F.conv2d(x, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1))
        torch.testing.assert_close(features[RELU_NAMES[index + 1]], x, rtol=0, atol=1e-6)
    assert features["relu5_4"].shape == (2, 8, 2, 2) and features["relu4_1"].shape == (2, 8, 4, 4)
    assert list(vgg(image, up_to="relu2_1")) == ["relu1_1", "relu1_2", "relu2_1"]


def test_vgg19_loader_names_a_wrong_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3), "features.0.bias": torch.zeros(4)}, path)
    with pytest.raises(CheckpointError, match="not a VGG19 file.*features.2.weight"):
        load_vgg19(path)


def _literal_correctness(target, source, flow):
    """PerceptualCorrectness.calculate_loss element by element (float64)."""
    b, c, h, w = target.shape
    flow = F.interpolate(flow, [h, w])
    warped = resample2d(source, flow)
    total = 0.0
    for n in range(b):
        for y in range(h):
            for x in range(w):
                t = target[n, :, y, x]
                best = max(float((source[n, :, v, u] / (source[n, :, v, u].norm() + 1e-8)) @ (t / (t.norm() + 1e-8)))
                           for v in range(h) for u in range(w))
                s = warped[n, :, y, x]
                cos = float(s @ t / max(float(s.norm() * t.norm()), 1e-8))
                total += math.exp(-cos / (best + 1e-8))
    return total / (b * h * w) - math.exp(-1)


def test_correctness_matches_the_literal_formula_and_is_zero_for_the_best_flow():
    gen = torch.Generator().manual_seed(2)
    sides = {"relu5_4": 2, "relu5_1": 2, "relu4_1": 4}
    target = {k: torch.rand(2, 5, s, s, generator=gen, dtype=torch.float64) for k, s in sides.items()}
    source = {k: torch.rand(2, 5, s, s, generator=gen, dtype=torch.float64) for k, s in sides.items()}
    flows = [torch.randn(2, 2, s, s, generator=gen, dtype=torch.float64) for s in (1, 2, 4)]
    want = sum(_literal_correctness(target[k], source[k], f) for k, f in zip(CORRECTNESS_LAYERS, flows))
    assert correctness_loss(target, source, flows).item() == pytest.approx(want, abs=1e-10)
    # Where any sample equals the best match (uniform features: the Gaussian warp is a blur, not a copy), 0.
    uniform = {k: v[..., :1, :1].expand_as(v).contiguous() for k, v in source.items()}
    assert abs(correctness_loss(uniform, uniform, flows).item()) < 1e-7  # the 1e-8 guards


def test_correctness_gradient_reaches_the_flow_only():
    gen = torch.Generator().manual_seed(3)
    target = {k: torch.rand(1, 4, 4, 4, generator=gen, dtype=torch.float64) for k in CORRECTNESS_LAYERS}
    source = {k: torch.rand(1, 4, 4, 4, generator=gen, dtype=torch.float64) for k in CORRECTNESS_LAYERS}
    flows = [(torch.rand(1, 2, 4, 4, generator=gen, dtype=torch.float64) * 0.6 + 0.2).requires_grad_()
             for _ in range(3)]
    assert torch.autograd.gradcheck(lambda *f: correctness_loss(target, source, list(f)), flows)


def _original_affine(flow, k):
    """AffineRegularizationLoss as written (conv with K^T K, LocalAttnReshape, BlockExtractor, avg-pool x k^2)."""
    import numpy as np

    temp = np.arange(k)
    A = np.ones([k * k, 3])
    A[:, 0] = temp.repeat(k)
    A[:, 1] = temp.repeat(k).reshape((k, k)).transpose().reshape(k ** 2)
    K = A @ np.linalg.inv(A.T @ A) @ A.T - np.identity(k ** 2)
    kernel = torch.from_numpy(K.T @ K).view(k * k, 1, k, k).to(flow)
    b, _, h, w = flow.shape
    xs, ys = torch.arange(w).view(1, -1).expand(h, -1), torch.arange(h).view(-1, 1).expand(-1, w)
    grid = flow + torch.stack([xs, ys]).to(flow)
    total = 0
    for axis in range(2):
        g = grid[:, axis:axis + 1]
        results = F.conv2d(g, kernel)
        shuffled = local_attn_reshape(results, k)
        offsets = torch.zeros(b, 2, *results.shape[-2:], dtype=flow.dtype) + float(k // 2)
        total = total + torch.mean(F.avg_pool2d(block_extractor(g, offsets, k) * shuffled, k, k)) * k ** 2
    return total


def test_regularisation_matches_the_original_procedure_and_vanishes_for_affine_flows():
    gen = torch.Generator().manual_seed(4)
    flows = [torch.randn(2, 2, s, s, generator=gen, dtype=torch.float64) for s in (2, 4, 8)]
    want = sum(_original_affine(f, k) for f, k in zip(flows, (2, 2, 3)))
    assert regularisation_loss(flows).item() == pytest.approx(want.item(), rel=1e-12)
    # = mean over windows of the least-squares affine residual (checked on the 8x8 flow with window 3).
    xs, ys = torch.arange(8.).view(1, -1).expand(8, -1), torch.arange(8.).view(-1, 1).expand(-1, 8)
    g = flows[2] + torch.stack([xs, ys]).double()
    cells = torch.tensor([[r, c, 1.0] for r in range(3) for c in range(3)], dtype=torch.float64)
    residuals = []
    for n in range(2):
        for y in range(6):
            for x in range(6):
                values = g[n, :, y:y + 3, x:x + 3].reshape(2, 9).T
                fit = torch.linalg.lstsq(cells, values).solution
                residuals.append(((cells @ fit - values) ** 2).sum())
    assert _original_affine(flows[2], 3).item() == pytest.approx(torch.stack(residuals).mean().item(), rel=1e-10)
    ys, xs = torch.meshgrid(torch.arange(8.), torch.arange(8.), indexing="ij")
    affine = torch.stack([0.3 * xs - 0.2 * ys + 1.5, 0.1 * xs + 0.4 * ys - 2.0])[None].double()
    assert regularisation_loss([affine[..., ::4, ::4], affine[..., ::2, ::2], affine]).abs().item() < 1e-10
