"""Manual parity check: the pack's SCFM against the ORIGINAL zylwithxy/SCFM-guided-DDPM code (SCFM.md §9, §3.5).

Usage (by hand, never part of the test suite; about 4 minutes on 2 CPU cores, ~3 GB of memory):
    extract zylwithxy/SCFM-guided-DDPM (the search tool's `fetch`) to /tmp/scfm_orig, outside this repo: `git archive
    HEAD | tar -x` stops at the stored mirror's absent prebuilt .so/.o blobs; `git ls-tree -r HEAD` + `git cat-file
    blob` per file, skipping those, gives the full source tree. Then
    /root/ptvenv/bin/python bench/scfm_parity.py --original /tmp/scfm_orig [--seed 0] [--steps 2] [--threads 2]

The original full-size `BeatGANsAutoencModel` is built from its own `get_model_conf()` on CPU: its four CUDA
extensions get empty stand-in modules and the forwards of `Resample2d`, `BlockExtractor`, `LocalAttnReshape` and
`Correlation` are replaced by the pack's ops (tested separately against literal kernel loops), so what is compared
is the model wiring. Every weight is re-randomised (the default init zeroes the output convs), saved as a training
container `{"ema", "model", "conf"}` whose `conf` would run a trap if unpickled, and loaded through the pack's
`load_scfm` exactly as a user's file would be. Prints one row per quantity: shape, max |diff|, max |reference|;
exits 1 if any row exceeds the tolerance.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import re
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

PACK = Path(__file__).resolve().parents[1]
CUDA_EXTENSIONS = ("resample2d_cuda", "block_extractor_cuda", "local_attn_reshape_cuda", "correlation_cuda")
T_FIRST = 980  # first model timestep of the 50-step DDIM schedule
GUIDANCE = 2  # cond_scale hard-coded in the original ddim_steps
REL_TOL = 1e-4  # fp32 round-off budget per forward, relative to max |reference|
# Modules called by both implementations under the same name (the pack keeps the original key layout);
# their outputs are compared in call order to locate the first divergence.
TRACE = re.compile(r"^(time_embed\.time_embed|input_blocks\.\d+\.\d|middle_block\.\d|output_blocks\.\d+\.\d|out"
                   r"|cct_block|encoder\.input_blocks\.\d+\.0|flow_net\.\w+)$")
# OpenPose-18 (x, y) on the 256 canvas: a person standing, and the same person with raised arms, a step to the
# right and the left ear hidden (exercises a missing point).
SOURCE_POSE = [(128, 40), (128, 70), (100, 72), (92, 110), (88, 145), (156, 72), (164, 110), (168, 145), (112, 140),
               (110, 190), (108, 235), (144, 140), (146, 190), (148, 235), (122, 35), (134, 35), (114, 38), (142, 38)]
TARGET_POSE = [(138, 44), (138, 74), (110, 76), (88, 52), (80, 22), (166, 76), (188, 52), (196, 22), (122, 144),
               (104, 192), (96, 238), (154, 144), (172, 192), (182, 238), (132, 39), (144, 39), (124, 42), (-1, -1)]


def load_pack() -> None:
    """Import the pack as `posetransfer`, as tests/conftest.py does."""
    spec = importlib.util.spec_from_file_location("posetransfer_bootstrap", PACK / "__main__.py")
    bootstrap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    bootstrap.load_pack()


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def import_original(root: Path):
    """The original model class and `get_model_conf`, runnable on CPU with the pack's ops."""
    from posetransfer.models.scfm import ops

    if not (root / "models" / "unet_autoenc.py").is_file():
        sys.exit(f"--original {root}: models/unet_autoenc.py not found; extract zylwithxy/SCFM-guided-DDPM there")
    for name in CUDA_EXTENSIONS:
        _module(name)
    # config.diffconfig imports tensorfn (training config only) and the root diffusion/model modules (training
    # losses that build VGG19 with a weight download): none of it is needed to build the network.
    base = type("Config", (), {})
    _module("tensorfn")
    _module("tensorfn.config", MainConfig=base, Config=base, Optimizer=base, Scheduler=base, DataLoader=base,
            Instance=base)
    _module("diffusion")
    _module("model")
    sys.path.insert(0, str(root))
    from config.diffconfig import get_model_conf
    from models.networks.block_extractor.block_extractor import BlockExtractor
    from models.networks.correlation_package.correlation import Correlation
    from models.networks.local_attn_reshape.local_attn_reshape import LocalAttnReshape
    from models.networks.resample2d_package.resample2d import Resample2d
    from models.unet_autoenc import BeatGANsAutoencModel

    init = Resample2d.__init__

    def cpu_init(self, *args, **kwargs):
        # The original moves its sigma constant to CUDA in __init__; keep it on the CPU.
        cuda = torch.Tensor.cuda
        torch.Tensor.cuda = lambda tensor, *a, **k: tensor
        try:
            init(self, *args, **kwargs)
        finally:
            torch.Tensor.cuda = cuda

    def resample_forward(self, source, flow):
        assert self.dilation == 1, "the sites only build Resample2d(4, 1, sigma=2)"
        return ops.resample2d(source, flow, self.kernel_size, float(self.sigma))

    def correlation_forward(self, first, second):
        assert (self.pad_size, self.kernel_size, self.stride1) == (self.max_displacement, 1, 1)
        return ops.correlation(first, second, self.max_displacement, self.stride2)

    Resample2d.__init__ = cpu_init
    Resample2d.forward = resample_forward
    BlockExtractor.forward = lambda self, source, flow: ops.block_extractor(source, flow, self.kernel_size)
    LocalAttnReshape.forward = lambda self, weights, kernel_size=3: ops.local_attn_reshape(weights, kernel_size)
    Correlation.forward = correlation_forward
    return BeatGANsAutoencModel, get_model_conf


@torch.no_grad()
def randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Every parameter ~ N(0, 0.02), except normalisation scales ~ 1 + N(0, 0.02) (so signals neither vanish
    nor need the zero-initialised output convs); BatchNorm running statistics random with variance > 0."""
    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            noise = torch.randn(param.shape, generator=generator) * 0.02
            param.copy_(noise + 1 if isinstance(module, norms) and name == "weight" else noise)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)


TRAP_SOURCE = """
TRIGGERED = []
def trap(note):
    TRIGGERED.append(note)
    return note
class DiffusionConfig:
    def __reduce__(self):
        return trap, ("the loader executed the pickled conf object",)
"""


def save_training_container(state_dict: dict, path: str) -> types.ModuleType:
    """Write `{"ema", "model", "conf"}` like the original train.py; `conf` runs a trap if ever unpickled."""
    throwaway = _module("scfm_parity_throwaway")
    exec(TRAP_SOURCE, throwaway.__dict__)  # noqa: S102 - defines the trap class in a throwaway module
    torch.save({"ema": state_dict, "model": state_dict, "conf": throwaway.DiffusionConfig()}, path)
    return throwaway


def tensors(value) -> list[torch.Tensor]:
    """The tensors of a module output (tensor, or nested tuples/lists), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in tensors(item)]
    return []


@contextlib.contextmanager
def trace(model: torch.nn.Module, names: set[str], log: dict):
    """Record the outputs of the named modules, in call order, into log (name -> list of tensors)."""
    def recorder(name: str):
        return lambda _module, _inputs, out: log.setdefault(name, []).extend(t.clone() for t in tensors(out))

    handles = [module.register_forward_hook(recorder(name)) for name, module in model.named_modules() if name in names]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def relative_error(ref: torch.Tensor, ours: torch.Tensor) -> float:
    """max |diff| / max |ref| (floor 1e-2, for near-zero quantities); inf for a shape mismatch."""
    if ref.shape != ours.shape:
        return float("inf")
    return (ref.double() - ours.double()).abs().max().item() / max(ref.double().abs().max().item(), 1e-2)


class Comparison:
    """Prints the table: one row per quantity, plus a per-module trace that names the first divergence."""

    def __init__(self, original: torch.nn.Module, ours: torch.nn.Module):
        self.original, self.ours, self.failures = original, ours, 0
        self.names = {n for n, _ in original.named_modules() if TRACE.match(n)} & {n for n, _ in ours.named_modules()}
        print(f"{'quantity':<34} {'shape':<20} {'max|diff|':>10} {'max|ref|':>10}  verdict")

    def row(self, name: str, ref: torch.Tensor, ours: torch.Tensor) -> None:
        if ref.shape != ours.shape:
            self.failures += 1
            print(f"{name:<34} SHAPE MISMATCH original {tuple(ref.shape)} vs pack {tuple(ours.shape)}")
            return
        diff, scale = (ref.double() - ours.double()).abs().max().item(), ref.double().abs().max().item()
        ok = relative_error(ref, ours) <= REL_TOL
        self.failures += not ok
        shape = "x".join(map(str, ref.shape))
        print(f"{name:<34} {shape:<20} {diff:10.3e} {scale:10.3e}  {'ok' if ok else 'MISMATCH'}")

    def traced(self, label: str, run_original, run_ours):
        """Run both callables while recording the shared modules' outputs; report the worst and the first
        out-of-tolerance module output in the original's call order. Returns both results."""
        ref_log, our_log = {}, {}
        with trace(self.original, self.names, ref_log), trace(self.ours, self.names, our_log):
            results = run_original(), run_ours()
        pairs = [(name, ref, ours) for name in ref_log for ref, ours in zip(ref_log[name], our_log.get(name, []))]
        missing = [name for name in ref_log if name not in our_log]
        print(f"  [{label}] {len(pairs)} traced module outputs; called only by the original: {missing or 'none'}")
        errors = [relative_error(ref, ours) for _, ref, ours in pairs]
        if pairs and max(errors) == 0:
            print(f"  [{label}] every traced output is bit-identical")
        elif pairs:
            worst = pairs[errors.index(max(errors))]
            self.row(f"  worst: {worst[0]}", worst[1], worst[2])
            beyond = [pair for pair, error in zip(pairs, errors) if error > REL_TOL]
            if beyond:
                self.row(f"  FIRST DIVERGENCE: {beyond[0][0]}", beyond[0][1], beyond[0][2])
        return results


def original_ddim(model, source, poses, noise, betas, steps):
    """The original `diffusion.ddim_steps` loop (50-step schedule, eta 0), transcribed, stopped after `steps`."""
    x_cond = [source, poses]
    val_img = x_cond[0]
    x_cond[0] = [model.encode(x_cond[0])["cond"], model.encode(torch.zeros_like(x_cond[0]))["cond"]]
    seq = range(0, 1000, 1000 // 50)
    n = noise.size(0)
    seq_next = [-1] + list(seq[:-1])
    xt, history = noise, []  # (guided 6-channel model output, x_t after the step) per step
    for idx, (i, j) in enumerate(zip(reversed(seq), reversed(seq_next))):
        if idx == steps:
            break
        t = torch.ones(n) * i
        at, at_next = compute_alpha(betas, t.long()), compute_alpha(betas, (torch.ones(n) * j).long())
        cond, target_pose = x_cond[:2]
        target_b, source_b = torch.chunk(target_pose, 2, dim=0)
        flow_fields, masks = model.flow_net(val_img, source_b, target_b)
        results = model.forward_with_cond_scale(x=torch.cat([xt, target_b], 1), t=t, cond=cond, cond_scale=GUIDANCE,
                                                flow_fields=flow_fields, masks=masks, ddim_step=idx)
        et, _ = torch.split(results[0], 3, dim=1)
        x0_t = (xt - et * (1 - at).sqrt()) / at.sqrt()
        c1 = 0 * ((1 - at / at_next) * (1 - at_next) / (1 - at)).sqrt()
        c2 = ((1 - at_next) - c1 ** 2).sqrt()
        xt = at_next.sqrt() * x0_t + c1 * torch.randn_like(noise) + c2 * et
        history.append((results[0], xt))
    return history


def compute_alpha(beta: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    beta = torch.cat([torch.zeros(1), beta], dim=0)
    return (1 - beta).cumprod(dim=0).index_select(0, t + 1).view(-1, 1, 1, 1)


class _Stop(Exception):
    pass


def pack_ddim(model, source, source_pose, target_pose, noise, steps) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(guided output, x_t after the step) for the first `steps` steps of the pack's own 50-step sampler.

    x_t is read off the model's next input; the guided output is mixed here from the batched [cond, null] output
    with the original's formula (it tells batching round-off apart from a sampler error).
    """
    from posetransfer.models.scfm import sampler

    seen: list[torch.Tensor] = []
    guided: list[torch.Tensor] = []

    def mix(_module, _args, out) -> None:
        guided.append(out[1:] + (out[:1] - out[1:]) * GUIDANCE)

    def grab(_module, args):
        seen.append(args[0][:1, :3].clone())  # float32 copy of x_t (the sampler keeps x in float64)
        if len(seen) == steps + 1:
            raise _Stop

    handles = [model.register_forward_pre_hook(grab), model.register_forward_hook(mix)]
    try:
        sampler.sample(model, source, source_pose, target_pose, noise, steps=50)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return list(zip(guided, seen[1:]))


def build(original_root: Path, seed: int):
    """(original model, the pack's model loaded from the saved container, the trap module)."""
    from posetransfer.models.scfm.checkpoint import load_scfm

    model_class, get_model_conf = import_original(original_root.resolve())
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # the original prints a line per flow site
        original = model_class(get_model_conf()).eval()
    randomise(original, torch.Generator().manual_seed(seed))
    state_dict = original.state_dict()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "last.pt")
        throwaway = save_training_container(state_dict, path)
        ours = load_scfm(path)
    print(f"original: {len(state_dict)} state-dict entries; pack model: {len(ours.state_dict())}; "
          f"conf executed by the loader: {bool(throwaway.TRIGGERED)}")
    return original, ours, throwaway


@torch.no_grad()
def compare(original, ours, seed: int, steps: int) -> int:
    """Print the table; returns the number of rows beyond tolerance."""
    from posetransfer.models.scfm import sampler
    from posetransfer.pose.render import scfm_pose_map

    generator = torch.Generator().manual_seed(seed + 1)
    source = torch.rand(1, 3, 256, 256, generator=generator) * 2 - 1
    source_pose, target_pose = (torch.from_numpy(scfm_pose_map(np.array(p, dtype=np.float64))).unsqueeze(0)
                                for p in (SOURCE_POSE, TARGET_POSE))
    noise = sampler.initial_noise(1, 256, seed, per_item=False)
    x, t = torch.cat([noise, target_pose], 1), torch.full((1,), float(T_FIRST))
    check = Comparison(original, ours)

    (ref_cond, (ref_flows, ref_masks)), condition = check.traced(
        "encoder + flow net",
        lambda: (original.encode(source)["cond"], original.flow_net(source, source_pose, target_pose)),
        lambda: ours.prepare_condition(source, source_pose, target_pose))
    for slot in sorted(condition.features):
        check.row(f"encoder feature {slot}", ref_cond[slot], condition.features[slot])
    for index, level in enumerate((5, 4, 3)):  # the original returns the flows coarsest first
        check.row(f"flow {256 >> level}", ref_flows[index], condition.flows[level])
        check.row(f"mask {256 >> level}", ref_masks[index], condition.masks[level])

    null_cond = original.encode(torch.zeros_like(source))["cond"]
    calibrated = {}

    def grab_flow(_module, inputs, _output) -> None:
        calibrated["ref"] = inputs[2][0].clone()  # PoseTargetNet overwrites flow_fields[0] with the calibrated flow

    hook = original.input_blocks[11][1].target.register_forward_hook(grab_flow)
    our_site = ours.input_blocks[11][1].target
    our_site.calibrate = lambda *a, fn=our_site.calibrate: calibrated.setdefault("ours", fn(*a))
    ref_out, our_out = check.traced(
        "conditional forward",
        lambda: original(x, t, cond=[list(ref_cond), null_cond], prob=1, flow_fields=ref_flows, masks=ref_masks,
                         ddim_step=0)[0],
        lambda: ours(x, t, condition))
    hook.remove()
    del our_site.calibrate
    check.row("site input 11: calibrated flow", calibrated["ref"], calibrated["ours"])
    check.row(f"output t={T_FIRST} prob 1", ref_out, our_out)
    ref_null, our_null = check.traced(
        "null forward", lambda: original(x, t, cond=[list(ref_cond), null_cond], prob=0)[0], lambda: ours(x, t, None))
    check.row(f"output t={T_FIRST} prob 0 (null)", ref_null, our_null)
    # The pack's sampler runs both passes as one batch of 2; the original runs two batches of 1.
    pair = ours(torch.cat([x, x]), torch.cat([t, t]), condition)
    check.row("pack batch [cond,null]: cond half", ref_out, pair[:1])
    check.row("pack batch [cond,null]: null half", ref_null, pair[1:])

    betas = torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64)  # config/diffusion.conf, linear, float64
    ref_steps = original_ddim(original, source, torch.cat([target_pose, source_pose]), noise, betas, steps)
    our_steps = pack_ddim(ours, source, source_pose, target_pose, noise, steps)
    for index, ((ref_eps, ref_x), (our_eps, our_x)) in enumerate(zip(ref_steps, our_steps)):
        t_model = T_FIRST - 20 * index
        check.row(f"guided output w={GUIDANCE} at t={t_model}", ref_eps, our_eps)
        check.row(f"x_t after DDIM step {index + 1} (t={t_model - 20})", ref_x, our_x)
    return check.failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", type=Path, required=True, help="extracted zylwithxy/SCFM-guided-DDPM tree")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2, help="guided DDIM steps to compare (t = 980, 960, ...)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_pack()
    original, ours, throwaway = build(args.original, args.seed)
    failures = compare(original, ours, args.seed, args.steps)
    verdict = "all rows within" if not failures else f"{failures} rows beyond"
    print(f"total {time.perf_counter() - started:.0f} s wall; {verdict} {REL_TOL:g} x max|ref| (floor 1e-2)")
    return 1 if failures or throwaway.TRIGGERED else 0


if __name__ == "__main__":
    sys.exit(main())
