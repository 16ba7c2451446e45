"""Speed and peak memory of PCDMs stage-2 inpainting (simplified model) at full size, with random weights.

    python bench/pcdm_inpaint.py                                   # CPU fp32, 2 steps, 512 px (1024x512 canvas)
    python bench/pcdm_inpaint.py --device cuda --precision fp16 --steps 50

For each guidance mode (both halves in one batch, or one after the other) it prints the whole pipeline
(DINOv2 + VAE encode, pose projection, denoising, decode), the time per denoising step (from the progress
callbacks), and the peak memory, next to the floor: steps x one bare UNet forward of the same guided batch
(shape and dtype). Peak memory: accelerator max-allocated, or on CPU the process's peak resident set
(VmHWM, weights included). Default-initialised weights: values do not change the timings. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
if "posetransfer" not in sys.modules:  # the pack uses relative imports: load it as a package, as ComfyUI does
    _spec = importlib.util.spec_from_file_location("posetransfer", PACK_ROOT / "__init__.py",
                                                   submodule_search_locations=[str(PACK_ROOT)])
    sys.modules["posetransfer"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["posetransfer"])

from posetransfer.models.checkpoints import Kind  # noqa: E402
from posetransfer.models.pcdm.config import UNetConfig  # noqa: E402
from posetransfer.models.pcdm.heads import ImageProjection  # noqa: E402
from posetransfer.models.pcdm.inpaint import InpaintSettings, inpaint  # noqa: E402
from posetransfer.models.pcdm.stages import PcdmStage2  # noqa: E402
from posetransfer.models.pcdm.unet import PoseUNet  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build_models(device: torch.device, dtype: torch.dtype) -> tuple[PcdmStage2, torch.nn.Module, torch.nn.Module]:
    """The released shapes: SD2.1-base UNet (9 in-channels), pose_proj, image_proj_model, SD VAE, DINOv2-giant."""
    from diffusers import AutoencoderKL
    from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
    from transformers import Dinov2Config, Dinov2Model

    unet = PoseUNet(UNetConfig(
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, in_channels=9, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20)))
    model = PcdmStage2(unet, ControlNetConditioningEmbedding(320, 3, (16, 32, 96, 256)),
                       ImageProjection(1536, 768, 1024), Kind.PCDM_SIMPLIFIED)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2)
    dino = Dinov2Model(Dinov2Config(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, patch_size=14,
                                    image_size=518, use_swiglu_ffn=True))
    return tuple(m.to(device=device, dtype=dtype).eval().requires_grad_(False) for m in (model, vae, dino))


def synchronize(device: torch.device) -> None:
    if device.type != "cpu":
        torch.accelerator.synchronize()


def reset_peak(device: torch.device) -> None:
    if device.type != "cpu":
        torch.accelerator.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float:
    if device.type != "cpu":
        return torch.accelerator.max_memory_allocated() / 2**30
    with open("/proc/self/status", encoding="ascii") as status:  # Linux: VmHWM = peak resident set
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    return kib / 2**20


@torch.no_grad()
def floor_seconds(model: PcdmStage2, settings: InpaintSettings, device: torch.device, dtype: torch.dtype) -> float:
    """steps x one bare UNet forward of the guided batch (2 x 9 x S/8 x S/4, 257 tokens, pose residual)."""
    h, w = settings.size // 8, settings.size // 4
    x = torch.randn(2, 9, h, w, device=device, dtype=dtype)
    tokens = torch.randn(2, 257, 1024, device=device, dtype=dtype)
    pose = torch.randn(2, 320, h, w, device=device, dtype=dtype)
    t = torch.tensor(981, device=device)
    model.unet(x, t, tokens, pose_residual=pose)  # warm-up
    synchronize(device)
    repeats = max(2, min(settings.steps, 10))
    start = time.perf_counter()
    for _ in range(repeats):
        model.unet(x, t, tokens, pose_residual=pose)
    synchronize(device)
    return settings.steps * (time.perf_counter() - start) / repeats


def run_pipeline(parts, settings: InpaintSettings, device: torch.device) -> tuple[float, float, float]:
    """(whole pipeline s, s per denoising step, peak GiB)."""
    model, vae, dino = parts
    size = settings.size
    source, source_pose, target = (torch.rand(1, 3, size, size) for _ in range(3))
    stamps: list[float] = []

    def progress(step: int, total: int) -> None:
        synchronize(device)
        stamps.append(time.perf_counter())

    reset_peak(device)
    synchronize(device)
    start = time.perf_counter()
    inpaint(model, vae, dino, source, source_pose, target, settings, progress=progress)
    synchronize(device)
    total = time.perf_counter() - start
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else math.nan
    return total, per_step, peak_gib(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=DTYPES, default="fp32")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--scheduler", default="ddim")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.precision]
    torch.manual_seed(0)
    parts = build_models(device, dtype)
    print(f"device {device}, {args.precision}, {args.steps} steps, {args.size} px (canvas {2 * args.size}x{args.size}),"
          f" scheduler {args.scheduler}, threads {torch.get_num_threads()}")
    print(f"weights: UNet+heads {sum(p.numel() for p in parts[0].parameters()) / 1e6:.1f} M, VAE "
          f"{sum(p.numel() for p in parts[1].parameters()) / 1e6:.1f} M, DINOv2 "
          f"{sum(p.numel() for p in parts[2].parameters()) / 1e6:.1f} M; resident peak so far {peak_gib(device):.2f} GiB")
    base = InpaintSettings(steps=args.steps, guidance_scale=2.0, scheduler=args.scheduler, size=args.size)
    floor = floor_seconds(parts[0], base, device, dtype)
    print(f"floor: {args.steps} x bare UNet forward of (2, 9, {args.size // 8}, {args.size // 4}) {args.precision} "
          f"= {floor:.2f} s ({floor / args.steps:.3f} s per forward)")
    for sequential in (False, True):
        settings = InpaintSettings(**{**base.__dict__, "sequential_guidance": sequential})
        total, per_step, peak = run_pipeline(parts, settings, device)
        mode = "sequential halves" if sequential else "batched halves  "
        print(f"{mode}: pipeline {total:.2f} s ({total / floor:.2f}x floor), {per_step:.3f} s/step "
              f"({per_step * args.steps / floor:.2f}x floor per step), peak {peak:.2f} GiB")


if __name__ == "__main__":
    main()
