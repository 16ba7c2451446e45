"""FID as the papers computed it: pytorch-fid's Inception-v3 (the TF "2015-12-05" graph ported to PyTorch),
2048-d pool features, mean and covariance, Frechet distance with the product's matrix square root.

The network is built here from the weight file (`pt_inception-2015-12-05-6726825d.pth`, the file pytorch-fid
downloads; its keys are torchvision's Inception3 names) so neither torchvision nor pytorch-fid is needed.
Channel widths are read from the weights, so a scaled-down random network loads through the same path.
pytorch-fid's FID-specific blocks are kept: average pools that exclude padding (Mixed_5*, 6b-e, 7b) and a max
pool in the last block's pool branch (Mixed_7c). Input: 0..1 images, resized to 299 x 299 bilinearly and
scaled to -1..1, as pytorch-fid's `InceptionV3(resize_input=True, normalize_input=True)`.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INCEPTION_SIZE = 299
BN_EPS = 0.001  # torchvision's BasicConv2d


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm -> relu, with the widths of `weight`."""

    def __init__(self, weight_shape: Sequence[int], stride: int = 1, padding: int | tuple[int, int] = 0):
        super().__init__()
        out_ch, in_ch, kh, kw = weight_shape
        self.conv = nn.Conv2d(in_ch, out_ch, (kh, kw), stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _Block(nn.Module):
    """An Inception block whose convolutions are named as torchvision names them; shapes from the weights."""

    # name -> (stride, padding); kernel sizes come from the weights
    LAYOUT: dict[str, tuple[int, int | tuple[int, int]]] = {}

    def __init__(self, weights: Mapping[str, torch.Tensor], prefix: str):
        super().__init__()
        for name, (stride, padding) in self.LAYOUT.items():
            setattr(self, name, BasicConv2d(weights[f"{prefix}{name}.conv.weight"].shape, stride, padding))


class InceptionA(_Block):
    LAYOUT = {"branch1x1": (1, 0), "branch5x5_1": (1, 0), "branch5x5_2": (1, 2), "branch3x3dbl_1": (1, 0),
              "branch3x3dbl_2": (1, 1), "branch3x3dbl_3": (1, 1), "branch_pool": (1, 0)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg_pool(x))], 1)


class InceptionB(_Block):
    LAYOUT = {"branch3x3": (2, 0), "branch3x3dbl_1": (1, 0), "branch3x3dbl_2": (1, 1), "branch3x3dbl_3": (2, 0)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(_Block):
    LAYOUT = {"branch1x1": (1, 0), "branch7x7_1": (1, 0), "branch7x7_2": (1, (0, 3)), "branch7x7_3": (1, (3, 0)),
              "branch7x7dbl_1": (1, 0), "branch7x7dbl_2": (1, (3, 0)), "branch7x7dbl_3": (1, (0, 3)),
              "branch7x7dbl_4": (1, (3, 0)), "branch7x7dbl_5": (1, (0, 3)), "branch_pool": (1, 0)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(_Block):
    LAYOUT = {"branch3x3_1": (1, 0), "branch3x3_2": (2, 0), "branch7x7x3_1": (1, 0), "branch7x7x3_2": (1, (0, 3)),
              "branch7x7x3_3": (1, (3, 0)), "branch7x7x3_4": (2, 0)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(_Block):
    """Mixed_7b (average pool without padding) and, with `max_pool`, Mixed_7c (pytorch-fid's FIDInceptionE_2)."""

    LAYOUT = {"branch1x1": (1, 0), "branch3x3_1": (1, 0), "branch3x3_2a": (1, (0, 1)), "branch3x3_2b": (1, (1, 0)),
              "branch3x3dbl_1": (1, 0), "branch3x3dbl_2": (1, 1), "branch3x3dbl_3a": (1, (0, 1)),
              "branch3x3dbl_3b": (1, (1, 0)), "branch_pool": (1, 0)}

    def __init__(self, weights: Mapping[str, torch.Tensor], prefix: str, max_pool: bool):
        super().__init__(weights, prefix)
        self.max_pool = max_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3), self.branch_pool(pooled)], 1)


STEM = {"Conv2d_1a_3x3": (2, 0), "Conv2d_2a_3x3": (1, 0), "Conv2d_2b_3x3": (1, 1), "Conv2d_3b_1x1": (1, 0),
        "Conv2d_4a_3x3": (1, 0)}
MIXED = {"Mixed_5b": InceptionA, "Mixed_5c": InceptionA, "Mixed_5d": InceptionA, "Mixed_6a": InceptionB,
         "Mixed_6b": InceptionC, "Mixed_6c": InceptionC, "Mixed_6d": InceptionC, "Mixed_6e": InceptionC,
         "Mixed_7a": InceptionD, "Mixed_7b": InceptionE, "Mixed_7c": InceptionE}
UNUSED_PREFIXES = ("fc.", "AuxLogits.")  # the classifier heads; FID stops at the pool


class FidInception(nn.Module):
    """0..1 images [B,3,H,W] -> (B, D) pool_3 features (D = 2048 for the real weights)."""

    def __init__(self, weights: Mapping[str, torch.Tensor]):
        super().__init__()
        for name, (stride, padding) in STEM.items():
            setattr(self, name, BasicConv2d(weights[f"{name}.conv.weight"].shape, stride, padding))
        for name, block in MIXED.items():
            extra = {"max_pool": name == "Mixed_7c"} if block is InceptionE else {}
            setattr(self, name, block(weights, f"{name}.", **extra))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in MIXED:
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def load_fid_inception(path: str) -> FidInception:
    """Build the FID Inception from a local weight file (pytorch-fid's .pth, or a safetensors copy)."""
    from ..models.checkpoints import CheckpointError, load_strict, read_checkpoint

    weights = read_checkpoint(path).state_dict
    try:
        model = FidInception(weights)
    except KeyError as missing:
        raise CheckpointError(
            f"{path} is not an Inception-v3 FID weight file: no {missing} tensor. Use pytorch-fid's "
            "pt_inception-2015-12-05-6726825d.pth (github.com/mseitzer/pytorch-fid releases).") from None
    state = {k: v for k, v in weights.items() if not k.startswith(UNUSED_PREFIXES)}
    for key, value in model.state_dict().items():  # batch-norm step counters: unused in eval, absent in some files
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, value)
    load_strict(model, state, source=path)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def activations(model: Callable[[torch.Tensor], torch.Tensor], images: Iterable[np.ndarray], batch_size: int = 50,
                device: torch.device | str = "cpu", progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Features (N, D) float64 of float (H, W, 3) 0..1 images, `batch_size` at a time."""
    features, batch, done = [], [], 0

    def flush() -> None:
        nonlocal done
        tensor = torch.from_numpy(np.stack(batch)).movedim(-1, 1).float().to(device)
        features.append(model(tensor).double().cpu().numpy().reshape(len(batch), -1))
        done += len(batch)
        batch.clear()
        if progress is not None:
            progress(done)

    for image in images:
        image = np.asarray(image, dtype=np.float32)
        if batch and image.shape != batch[0].shape:  # images of several sizes: a batch holds one size
            flush()
        batch.append(image)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not features:
        raise ValueError("FID needs at least two images in each set, got none")
    return np.concatenate(features)


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) as the originals: `np.mean(act, 0)`, `np.cov(act, rowvar=False)` (N - 1)."""
    if features.shape[0] < 2:
        raise ValueError(f"FID needs at least two images in each set, got {features.shape[0]}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def sqrtm_product(sigma1: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """sqrtm(sigma1 @ sigma2) for covariance matrices (symmetric, positive semi-definite), in float64.

    With S = sqrtm(sigma1): sigma1 sigma2 = S (S sigma2 S) S^-1, and S sigma2 S is symmetric PSD, so
    sqrtm(sigma1 sigma2) = S sqrtm(S sigma2 S) S^+ with symmetric eigendecompositions only (no complex Schur
    form, no imaginary residue). Where sigma1 is singular (fewer images than features) the result is exact on
    its range and its trace, all FID needs, is exact: tr(S M S^+) = tr(M) because M lives on that range."""
    root1 = _psd_sqrt(sigma1)
    inner = _psd_sqrt(root1 @ sigma2 @ root1)
    return root1 @ inner @ np.linalg.pinv(root1, hermitian=True)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"FID statistics differ in size: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape} "
                         "(features of different networks?)")
    diff = mu1 - mu2
    trace_sqrt = float(np.trace(sqrtm_product(sigma1, sigma2)))
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def save_statistics(path: str, mu: np.ndarray, sigma: np.ndarray) -> None:
    """npz with `mu` and `sigma`: the originals' `*_statistics.npz` layout, so either side can reuse the other's."""
    np.savez(path, mu=mu, sigma=sigma)


def load_statistics(path: str) -> tuple[np.ndarray, np.ndarray]:
    """`mu`, `sigma` from an .npz (ours or the originals' cached statistics; no pickles are loaded)."""
    with np.load(path, allow_pickle=False) as data:
        if "mu" not in data or "sigma" not in data:
            raise ValueError(f"{path}: FID statistics need arrays 'mu' and 'sigma', found {sorted(data.files)}")
        return data["mu"], data["sigma"]
