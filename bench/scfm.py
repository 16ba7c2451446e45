"""SCFM speed and memory: guided DDIM per-step time vs the floor (one bare guided denoiser forward per step).

Usage: python bench/scfm.py [--batch 1 8] [--steps 3] [--device cpu|cuda] [--dtype fp32|fp16|bf16] [--threads N]
Random full-size weights (256 x 256, 175 M parameters); each configuration runs in a fresh process so the
peak memory (CPU: max RSS; CUDA: max allocated) belongs to it alone. Prints one line per configuration.
On CPU the times are process CPU time (robust to other processes on a shared machine; with --threads 1 it
equals wall time on an idle core); on CUDA, wall time with synchronisation.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _import_pack():
    spec = importlib.util.spec_from_file_location("posetransfer", PACK / "__init__.py",
                                                  submodule_search_locations=[str(PACK)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["posetransfer"] = module
    spec.loader.exec_module(module)


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(batch: int, steps: int, device_name: str, dtype_name: str) -> dict:
    import torch

    _import_pack()
    from posetransfer.models.scfm import sampler
    from posetransfer.models.scfm.config import SCFMConfig
    from posetransfer.models.scfm.unet import SCFMUNet

    device, dtype = torch.device(device_name), getattr(torch, DTYPES[dtype_name])
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    torch.manual_seed(0)
    model = SCFMUNet(SCFMConfig()).eval().to(device=device, dtype=dtype)
    size = model.config.image_size
    source = torch.rand(batch, 3, size, size) * 2 - 1
    source_pose, target_pose = torch.rand(batch, 20, size, size), torch.rand(batch, 20, size, size)
    noise = sampler.initial_noise(batch, size, 0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        sampler.sample(model, source, source_pose, target_pose, noise, steps=1)  # warm-up (allocator, kernels)
        _sync(torch, device)
        stamps = []
        start = clock()
        sampler.sample(model, source, source_pose, target_pose, noise, steps=steps,
                       progress=lambda step, total: (_sync(torch, device), stamps.append(clock())))
        total = clock() - start
        setup = stamps[0] - start - (stamps[1] - stamps[0] if len(stamps) > 1 else 0.0)
        per_step = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1) if len(stamps) > 1 else total
        # Floor: one bare guided forward (conditioned + unguided items in one batch), no sampler around it.
        condition = model.prepare_condition(*(t.to(device, dtype) for t in (source, source_pose, target_pose)))
        x = torch.cat([torch.randn(2 * batch, 3, size, size), torch.cat([target_pose, target_pose])], 1).to(device, dtype)
        t = torch.full((2 * batch,), 500.0, device=device)
        floors = []
        for _ in range(2):
            _sync(torch, device)
            begin = clock()
            model(x, t, condition)
            _sync(torch, device)
            floors.append(clock() - begin)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024)
    floor = min(floors)
    return {"batch": batch, "steps": steps, "device": device_name, "dtype": dtype_name, "threads": torch.get_num_threads(),
            "clock": "wall" if device.type == "cuda" else "cpu time",
            "total_s": total, "setup_s": setup, "per_step_s": per_step, "floor_per_step_s": floor,
            "sample_over_floor": (total / (steps * floor)), "peak_bytes": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(measure(args.batch[0], args.steps, args.device, args.dtype)))
        return 0
    for batch in args.batch:
        command = [sys.executable, __file__, "--child", "--batch", str(batch), "--steps", str(args.steps),
                   "--device", args.device, "--dtype", args.dtype, "--threads", str(args.threads)]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"SCFM {result['device']} {result['dtype']} batch {batch} ({result['threads']} threads, {result['clock']}): "
              f"{result['per_step_s']:.3f} s/step, setup {result['setup_s']:.3f} s, {result['steps']} steps "
              f"{result['total_s']:.2f} s total; floor {result['floor_per_step_s']:.3f} s/step "
              f"(sample = {result['sample_over_floor']:.3f} x floor incl. setup); peak "
              f"{result['peak_bytes'] / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
