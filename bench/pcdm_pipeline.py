"""Time and peak memory of the three PCDMs stages at full size, with random weights.

    python bench/pcdm_pipeline.py                                   # CPU fp32, 2 steps (what CI machines can run)
    python bench/pcdm_pipeline.py --device cuda --dtype fp16 --steps 20

Each stage is built and run in its own process (the chain loads one stage at a time): stage 1 = CLIP ViT-H/14
encode + prior (UnCLIP, no guidance), stage 2 = full inpainting at 512 (source | target canvas, UniPC, guidance 2),
stage 3 = refine at 512 (UniPC, guidance 2); the output of an earlier stage is replaced by random data.
Floor = steps x one bare forward of the stage's denoiser at the batch the loop uses (doubled under guidance,
fastest of three); `stage/floor` includes the encoders and the VAE, `loop/floor` the sampling loop alone. On a
shared machine other processes inflate the loop but not the fastest bare forward, so `loop/in-loop forwards`
(time in the loop over time inside its denoiser calls, measured together) is the loop's overhead proper; the
load average is printed beside. Peak memory covers building and running the stage, weights
included: CUDA max allocated, or on CPU the peak resident set (sampled every 5 ms) above the process's start.
Prints numbers only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

# The pack uses relative imports: load it as the package `posetransfer` with its own bootstrap (__main__.py).
_spec = importlib.util.spec_from_file_location("posetransfer_bootstrap", Path(__file__).resolve().parents[1] / "__main__.py")
_bootstrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bootstrap)
_bootstrap.load_pack()
from posetransfer.models.checkpoints import Kind  # noqa: E402
from posetransfer.models.encoders import encode_clip_embeds  # noqa: E402
from posetransfer.models.pcdm.config import UNetConfig  # noqa: E402
from posetransfer.models.pcdm.heads import ImageProjection  # noqa: E402
from posetransfer.models.pcdm.inpaint import InpaintSettings, inpaint  # noqa: E402
from posetransfer.models.pcdm.stages import PcdmRefiner, PcdmStage2  # noqa: E402
from posetransfer.models.pcdm.config import PriorConfig  # noqa: E402
from posetransfer.models.pcdm.prior import sample_prior  # noqa: E402
from posetransfer.models.pcdm.prior_transformer import PosePriorTransformer  # noqa: E402
from posetransfer.models.pcdm.refine import RefineSettings, refine  # noqa: E402
from posetransfer.models.pcdm.unet import PoseUNet  # noqa: E402

SD21_BASE_UNET = dict(block_out_channels=(320, 640, 1280, 1280),
                      down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                      up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, layers_per_block=2,
                      out_channels=4, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20))


# ------------------------------------------------------------------------------------------ full-size models
def _random(module: torch.nn.Module, device: str, dtype: torch.dtype) -> torch.nn.Module:
    # Random N(0, 0.02) weights with unit norm scales keep activations finite (default init zeroes some outputs).
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.dim() == 1 and "norm" in name and name.endswith("weight"):
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02)
    return module.to(device=device, dtype=dtype).eval().requires_grad_(False)


def clip_vision_h(device, dtype):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    config = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                              patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu")
    return _random(CLIPVisionModelWithProjection(config), device, dtype)


def dinov2_giant(device, dtype):
    from transformers import Dinov2Config, Dinov2Model
    config = Dinov2Config(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, patch_size=14,
                          image_size=518, use_swiglu_ffn=True, layerscale_value=1.0)
    return _random(Dinov2Model(config), device, dtype)


def sd_vae(device, dtype):
    from diffusers import AutoencoderKL
    return _random(AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                                 up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4),
                   device, dtype)


def unet(in_channels, class_dim, device, dtype):
    config = UNetConfig(**SD21_BASE_UNET, in_channels=in_channels, class_embed_input_dim=class_dim)
    return _random(PoseUNet(config), device, dtype)


def stage2_model(device, dtype):
    from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
    pose_proj = _random(ControlNetConditioningEmbedding(320, 3, (16, 32, 96, 256)), device, dtype)
    return PcdmStage2(unet(9, 1024, device, dtype), pose_proj,
                      _random(ImageProjection(1536, 768, 1024), device, dtype), Kind.PCDM_STAGE2)


def stage3_model(device, dtype):
    return PcdmRefiner(unet(8, None, device, dtype), _random(ImageProjection(1536, 768, 1024), device, dtype))


# ------------------------------------------------------------------------------------------ measuring
class PeakMemory:
    """Peak memory of a block: CUDA max allocated, or the CPU resident set sampled by a thread."""

    def __init__(self, device: str):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self, base: int) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss() - base)

    def __enter__(self) -> "PeakMemory":
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, args=(self._rss(),), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn, *args, **kwargs) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    _sync(device)
    return time.perf_counter() - start, out


class LoopClock:
    """The sampling loop's wall time (denoiser's first call to the last progress tick) and the part of it spent
    inside the denoiser's forward. Measured together, their ratio is our loop's overhead even on a busy machine."""

    def __init__(self, denoiser: torch.nn.Module, device: str):
        self.device, self.start, self.end, self.forward_s, self._entered = device, None, None, 0.0, None
        self._hooks = [denoiser.register_forward_pre_hook(self._enter), denoiser.register_forward_hook(self._leave)]

    def _enter(self, *_):
        _sync(self.device)
        self._entered = time.perf_counter()
        if self.start is None:
            self.start = self._entered

    def _leave(self, *_):
        _sync(self.device)
        self.forward_s += time.perf_counter() - self._entered

    def progress(self, step: int, total: int) -> None:
        _sync(self.device)
        self.end = time.perf_counter()

    def close(self) -> tuple[float, float]:
        for hook in self._hooks:
            hook.remove()
        return self.end - self.start, self.forward_s


@torch.no_grad()
def floor(device: str, steps: int, denoiser, *inputs, **kwargs) -> float:
    """steps x the fastest of three bare forwards (after a warm-up), the least disturbed by other processes."""
    denoiser(*inputs, **kwargs)
    return steps * min(timed(device, denoiser, *inputs, **kwargs)[0] for _ in range(3))


def report(name: str, stage_s: float, clock: LoopClock, floor_s: float, peak: int) -> None:
    loop_s, forward_s = clock.close()
    print(f"{name:<24} stage {stage_s:7.2f} s  loop {loop_s:7.2f} s  floor {floor_s:7.2f} s  "
          f"stage/floor {stage_s / floor_s:5.2f}  loop/floor {loop_s / floor_s:5.2f}  "
          f"loop/in-loop forwards {loop_s / forward_s:5.3f}  peak {peak / 2**30:6.2f} GiB  "
          f"load {os.getloadavg()[0]:.1f}", flush=True)


# ------------------------------------------------------------------------------------------ stages
def bench_prior(args, dtype, images):
    device = args.device
    with PeakMemory(device) as peak:
        clip = clip_vision_h(device, dtype)
        prior = _random(PosePriorTransformer(PriorConfig(2048, 20, 32, 64)), device, dtype)
        poses = torch.rand(1, 36), torch.rand(1, 36)
        embed = encode_clip_embeds(clip, images)
        floor_s = floor(device, args.steps, prior, torch.randn(1, 1024, device=device), 999, embed,
                        *[p.to(device) for p in poses])
        clock = LoopClock(prior, device)
        stage_s, _ = timed(device, lambda: sample_prior(prior, encode_clip_embeds(clip, images), *poses,
                                                          steps=args.steps, progress=clock.progress))
    report("stage 1 prior (+CLIP-H)", stage_s, clock, floor_s, peak.peak)


def bench_inpaint(args, dtype, images, embeds):
    device = args.device
    with PeakMemory(device) as peak:
        model, vae, dino = stage2_model(device, dtype), sd_vae(device, dtype), dinov2_giant(device, dtype)
        h, w = args.size // 8, args.size // 4
        floor_s = floor(device, args.steps, model.unet, torch.randn(2, 9, h, w, device=device, dtype=dtype), 999,
                        torch.randn(2, 258, 1024, device=device, dtype=dtype),
                        pose_residual=torch.randn(2, 320, h, w, device=device, dtype=dtype),
                        class_labels=torch.randn(2, 1024, device=device, dtype=dtype))
        clock = LoopClock(model.unet, device)
        settings = InpaintSettings(steps=args.steps, scheduler="unipc", size=args.size)
        stage_s, _ = timed(device, inpaint, model, vae, dino, images, images, images, settings, embeds, clock.progress)
    report("stage 2 inpaint (full)", stage_s, clock, floor_s, peak.peak)


def bench_refine(args, dtype, coarse, images):
    device = args.device
    with PeakMemory(device) as peak:
        model, vae, dino = stage3_model(device, dtype), sd_vae(device, dtype), dinov2_giant(device, dtype)
        latents = torch.randn(2, 8, args.size // 8, args.size // 8, device=device, dtype=dtype)
        floor_s = floor(device, args.steps, model.unet, latents, 999, torch.randn(2, 257, 1024, device=device, dtype=dtype))
        clock = LoopClock(model.unet, device)
        stage_s, _ = timed(device, refine, model, vae, dino, coarse, images,
                           RefineSettings(steps=args.steps, size=args.size), clock.progress)
    report("stage 3 refine", stage_s, clock, floor_s, peak.peak)


def _without_stages(argv: list[str]) -> list[str]:
    """Command-line arguments minus `--stages` and its values."""
    out, skipping = [], False
    for arg in argv:
        if arg == "--stages":
            skipping = True
        elif skipping and not arg.startswith("--"):
            continue
        else:
            skipping = False
            out.append(arg)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=512, help="model square side (512 or 256 for the released models)")
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3],
                        help="stages to run, each in its own process; a stage's input from an earlier stage is "
                             "random data of the right shape (timings do not depend on the values)")
    args = parser.parse_args()
    if len(args.stages) > 1:
        # One fresh process per stage: freed weights of an earlier stage would otherwise hide this one's peak.
        for stage in args.stages:
            subprocess.run([sys.executable, __file__, *_without_stages(sys.argv[1:]), "--stages", str(stage)], check=True)
        return 0
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    from diffusers.utils import logging as diffusers_logging
    diffusers_logging.set_verbosity_error()  # casting random models with .to(dtype) is what we mean to do
    torch.manual_seed(0)
    images = torch.rand(1, 3, args.size, args.size)
    print(f"PCDMs stage {args.stages[0]} at {args.size}, {args.device} {args.dtype}, {args.steps} steps, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    with torch.no_grad():
        if args.stages[0] == 1:
            bench_prior(args, dtype, images)
        elif args.stages[0] == 2:
            bench_inpaint(args, dtype, images, torch.randn(1, 1024) * 0.4)
        else:
            bench_refine(args, dtype, torch.rand(1, 3, args.size, args.size), images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
