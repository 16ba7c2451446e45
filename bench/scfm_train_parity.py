"""One SCFM training step like the ORIGINAL (zylwithxy/SCFM-guided-DDPM `GaussianDiffusion.training_losses` + train.py),
full size (the original's sizes are hard-wired: no tiny model exists), fp32 CPU.

    extract zylwithxy/SCFM-guided-DDPM to /tmp/scfm_orig as bench/scfm_parity.py says, then
    python bench/scfm_train_parity.py --original /tmp/scfm_orig [--seed 0] [--threads 2]

Builds the original `BeatGANsAutoencModel` on CPU with the pack's ops standing in for its CUDA extensions (as
bench/scfm_parity.py), re-randomises it, loads the same weights into ours through `load_scfm`, and runs one
step of one image pair (both directions, batch 2, as train.py) on each side: the original's own
`training_losses` (MSE + VB + GFLA `PerceptualCorrectness` + 0.0025 x `MultiAffineRegularizationLoss`, from its
`external_function.py`) and train.py's sum, against `models/scfm/train.training_step`. Same draws: our
generator's t, noise and image-dropout mask are handed to the original (its `prob_mask_like` is patched to
return our mask). The VGG19 both sides use is one random full-size VGG19 in torchvision's layout (saved to a
.pth and read back by our `load_vgg19`; the original's `torchvision.models.vgg19(pretrained=True)` is a stand-in
returning the same `features`). Dropout is set to 0 on both sides (its random masks cannot be shared); BatchNorm
runs in training mode. Prints loss terms and gradients of named parameters with max |diff| and max |value|.
About 2 minutes and a few GB of memory on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("scfm_parity", _ROOT / "scfm_parity.py")
scfm_parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scfm_parity)

GRADIENTS = ("input_blocks.0.0.weight", "out.2.weight", "flow_net.output_eight.weight",
             "flow_net.block0.model.2.weight",
             "flow_net.output1.weight", "encoder.input_blocks.0.0.weight", "input_blocks.11.1.target.dispNet.0.weight",
             "cct_block.embeddings_1.patch_embeddings.weight")


def original_diffusion(root: Path, features: torch.nn.Module):
    """The original diffusion.py, with a stand-in torchvision whose vgg19() returns `features`."""
    vgg = types.SimpleNamespace(features=features)
    scfm_parity._module("torchvision")
    sys.modules["torchvision"].models = scfm_parity._module("torchvision.models", vgg19=lambda pretrained=True: vgg)
    sys.modules.pop("diffusion", None)  # import_original stubbed it to build the network alone
    import diffusion

    cuda = torch.nn.Module.cuda
    torch.nn.Module.cuda = lambda module, *a, **k: module  # GaussianDiffusion.__init__ moves its losses to CUDA
    try:
        betas = diffusion.make_beta_schedule("linear", 1000, linear_start=1e-4, linear_end=2e-2)
        return diffusion.create_gaussian_diffusion(betas, [3, 4, 5], predict_xstart=False)
    finally:
        torch.nn.Module.cuda = cuda


class DataParallelLike(torch.nn.Module):
    """training_losses reads `model.module.conf`: the DDP wrapper's attribute."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def no_dropout(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", type=Path, required=True, help="extracted zylwithxy/SCFM-guided-DDPM tree")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    scfm_parity.load_pack()
    from posetransfer.models.scfm.losses import DiffusionTerms
    from posetransfer.models.scfm.train import TrainingForward, training_step
    from posetransfer.models.scfm.vgg import VGG19Features, load_vgg19
    from posetransfer.pose.render import scfm_pose_map

    original, ours, _ = scfm_parity.build(args.original, args.seed)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        torch.save(VGG19Features().state_dict(), Path(folder) / "vgg19-dcbb9e9d.pth")
        vgg = load_vgg19(Path(folder) / "vgg19-dcbb9e9d.pth")
    gaussian = original_diffusion(args.original.resolve(), copy.deepcopy(vgg.features))
    import models.unet_autoenc as unet_autoenc

    for model in (original, ours):
        model.train()
        no_dropout(model)
    gen = torch.Generator().manual_seed(args.seed)
    a, b = (torch.rand(1, 3, 256, 256, generator=gen) * 2 - 1 for _ in range(2))
    pose_a, pose_b = (torch.from_numpy(scfm_pose_map(np.array(points, dtype=np.float64), 256))[None]
                      for points in (scfm_parity.SOURCE_POSE, scfm_parity.TARGET_POSE))
    source, target = torch.cat([a, b]), torch.cat([b, a])
    source_pose, target_pose = torch.cat([pose_a, pose_b]), torch.cat([pose_b, pose_a])

    step_seed = args.seed + 1
    losses = training_step(TrainingForward(ours), DiffusionTerms(), source, source_pose, target_pose, target,
                           torch.Generator().manual_seed(step_seed), 0.1, vgg)
    losses["loss"].backward()

    draws = torch.Generator().manual_seed(step_seed)  # our order: t, noise, dropout
    t = torch.randint(0, 1000, (2,), generator=draws)
    noise = torch.randn(target.shape, generator=draws)
    keep = torch.rand(2, generator=draws) >= 0.1
    unet_autoenc.prob_mask_like = lambda shape, prob, device: keep.to(device)
    terms = gaussian.training_losses(DataParallelLike(original), x_start=target, t=t, cond_input=[source, target_pose],
                                     prob=0.9, noise=noise)
    theirs = terms["loss"].mean() + terms["correctness_gen"] + terms["regularization"]  # train.py
    theirs.backward()

    rows = [("loss (total)", losses["loss"], theirs), ("mse", losses["mse"], terms["mse"].mean()),
            ("vb", losses["vb"], terms["vb"].mean()), ("correctness", losses["correctness"], terms["correctness_gen"]),
            ("0.0025 x regularisation", 0.0025 * losses["regularisation"], terms["regularization"])]
    mine, others = dict(ours.named_parameters()), dict(original.named_parameters())
    rows += [(f"grad {name}", mine[name].grad, others[name].grad) for name in GRADIENTS]
    print(f"{'quantity':<58} {'max |diff|':>11} {'max |value|':>11}")
    for name, value, reference in rows:
        diff = (value.double() - reference.double()).abs().max().item()
        print(f"{name:<58} {diff:11.3e} {reference.double().abs().max().item():11.3e}")
    print(f"keep mask {keep.tolist()}, t {t.tolist()}; {time.perf_counter() - started:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
