"""One training loop for the pack's diffusion models, on Hugging Face Accelerate (one process or many).

The same call runs on a laptop CPU, one GPU, several GPUs or several machines: start it with `python` for one
process, or with `accelerate launch` / `torchrun` / `srun` (one process per GPU) for data parallelism.
Accelerate sets up the process group, wraps the model in DDP (or DeepSpeed ZeRO when launched with its
DeepSpeed config), runs mixed precision and gradient accumulation.

What the loop guarantees:
- Data: the item order is a fixed function of (seed, epoch) and each process takes its own slice of every
  global batch, so ranks see different items and a resumed run meets exactly the items a straight run would.
- Randomness: each (step, rank) draws its noise, timesteps and conditioning dropout from a generator seeded
  with (seed, step, rank), and torch's global generators (what dropout layers draw from) are reseeded from the
  same triple, so resuming reproduces the straight run's draws.
- Files: only the main process writes (weights as safetensors, optimizer state, EMA, a log); the other ranks
  only read. With DeepSpeed ZeRO (stages 1 and 2: the weights stay whole on every rank) the optimizer is
  sharded, so there every rank saves its own shard through Accelerate (by design of ZeRO).
- Resume: when `out_dir` holds a `state/` from an earlier run, training continues from its step.
- Precision: `mixed_precision` "bf16" runs on CPUs and GPUs; "fp16" needs a GPU (Accelerate adds the gradient
  scaler fp16 needs); master weights, optimizer state and EMA stay float32 either way.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch
from torch import nn

from ..errors import PoseTransferError

logger = logging.getLogger(__name__)

STATE_DIR = "state"
MIXED_PRECISION = ("no", "fp16", "bf16")


class TrainingSetupError(PoseTransferError):
    """A training run that cannot start as configured (precision, device); the message says what to change."""


@dataclass
class LoopSettings:
    steps: int = 1000
    batch_size: int = 1  # per process and accumulation micro-step
    gradient_accumulation: int = 1
    lr: float = 1e-5
    warmup: int = 0  # linear warm-up steps; the PCDMs scripts' "constant" schedule has none
    warmup_start: float = 0.0  # the rate's fraction at step 0 of the warm-up (SCFM's original starts at 4 %)
    weight_decay: float = 1e-2
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    ema_decay: float | None = None  # None: no EMA
    ema_start: int = 0  # before this optimizer step (1-based) the EMA copies the weights (SCFM: its warm-up)
    save_every: int = 500
    sample_every: int = 0  # 0: no sample sheets
    seed: int = 0


class Objective(Protocol):
    """What a model family supplies to the loop."""

    def trainable(self) -> nn.Module: ...
    """The module whose parameters train (wrapped by DDP); frozen encoders live outside it."""

    def loss(self, module: nn.Module, items: list[Any], generator: torch.Generator) -> dict[str, torch.Tensor]: ...
    """Loss dict (key "loss" is minimised) of one micro-batch; all randomness from `generator` (CPU)."""

    def export(self, module: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]: ...
    """(state dict in the layout the loader nodes read, safetensors metadata) of an unwrapped module."""

    def sample_sheet(self, module: nn.Module, items: list[Any], seed: int) -> torch.Tensor | None: ...
    """Optional [3,H,W] 0..1 image showing what the model makes of `items` now."""


def batch_indices(step: int, rank: int, world: int, batch: int, count: int, seed: int) -> list[int]:
    """Dataset indices of 0-based micro-`step` on `rank`: slice `rank` of global batch `step` of a stream of
    per-epoch permutations (epoch e shuffled with seed + e). Depends on nothing but its arguments."""
    out = []
    for j in range(batch):
        position = (step * world + rank) * batch + j
        epoch, offset = divmod(position, count)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        out.append(int(order[offset]))
    return out


def learning_rate(settings: LoopSettings, step: int) -> float:
    """The rate of 1-based optimizer `step`: linear from `warmup_start` x lr to lr over the warm-up, then flat
    (tensorfn's `cycle_scheduler` [linear, flat] as SCFM's original steps it; diffusers' constant-with-warm-up
    for `warmup_start` 0)."""
    progress = min(1.0, step / settings.warmup) if settings.warmup else 1.0
    return settings.lr * (settings.warmup_start + (1 - settings.warmup_start) * progress)


def step_seed(seed: int, step: int, rank: int) -> int:
    """One number per (seed, micro-step, rank), below 2**62 (torch takes seeds up to 2**64)."""
    return ((seed * 1_000_003 + step) * 65_537 + rank) % (1 << 62)


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The CPU generator of one (micro-step, rank): noise, timesteps and dropout of that batch."""
    return torch.Generator().manual_seed(step_seed(seed, step, rank))


GLOBAL_SEED_OFFSET = 1 << 62  # the global generators' stream must not repeat the step generator's draws


def make_accelerator(settings: LoopSettings, cpu: bool | None = None):
    """Accelerate's entry point; reads the launcher's environment (RANK, WORLD_SIZE, ...) itself."""
    try:
        from accelerate import Accelerator
    except ImportError as error:
        raise ImportError("training needs Hugging Face Accelerate: pip install 'accelerate>=1.0' (it is a "
                          "training-only dependency; inference never imports it)") from error
    if settings.mixed_precision not in MIXED_PRECISION:
        raise TrainingSetupError(f"mixed precision {settings.mixed_precision!r}: expected one of {MIXED_PRECISION}")
    if cpu is None:
        cpu = not torch.cuda.is_available()
    if settings.mixed_precision == "fp16" and cpu:
        # Accelerate would quietly train in float32 on the CPU (it only autocasts fp16 with a GPU's scaler).
        raise TrainingSetupError("mixed precision fp16 needs a CUDA GPU (it trains with a gradient scaler there); "
                                 "on the CPU use --mixed-precision bf16, or no.")
    from accelerate.state import AcceleratorState

    # Accelerate keeps one precision per process; a later run in the same process (a notebook, the tests) may
    # ask for another. The process group (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=settings.mixed_precision, cpu=cpu,
                       gradient_accumulation_steps=settings.gradient_accumulation)


class ParameterEMA:
    """float32 exponential moving average of the trainable parameters (buffers follow the model)."""

    def __init__(self, module: nn.Module):
        self.shadow = {k: v.detach().float().clone() for k, v in module.state_dict().items()}
        self.trainable = {k for k, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, module: nn.Module, decay: float) -> None:
        """shadow = decay x shadow + (1 - decay) x weights; decay 0 copies them exactly (lerp's weight-1 branch)."""
        for key, value in module.state_dict().items():
            if key in self.trainable:
                self.shadow[key].lerp_(value.detach().float(), 1 - decay)
            else:
                self.shadow[key].copy_(value)

    def copy_to(self, module: nn.Module) -> nn.Module:
        current = module.state_dict()  # once: a large model's state_dict() walks thousands of modules
        module.load_state_dict({k: v.to(current[k].dtype) for k, v in self.shadow.items()})
        return module


def _save_safetensors(tensors: Mapping[str, torch.Tensor], path: Path,
                      metadata: Mapping[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    partial = path.with_name(path.name + ".partial")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(partial),
              metadata=dict(metadata or {}))
    os.replace(partial, path)  # a crash mid-write never replaces the previous file


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def train_loop(objective: Objective, dataset: Sequence[Any], settings: LoopSettings, out_dir: str | os.PathLike,
               *, name: str = "model", accelerator: Any = None,
               log: Callable[[int, dict[str, float]], None] | None = None) -> Path:
    """Train `objective` on `dataset` to `settings.steps` optimizer steps; returns the weights file.

    Writes into `out_dir`: `{name}.safetensors` (EMA weights when EMA is on, else the trained weights, in the
    loader's layout), `{name}-step{N}.safetensors` every `save_every` steps, `state/` (what resuming needs),
    `loss.jsonl` and `samples/step{N}.png`. `log(step, values)` is called on the main process only.
    """
    if len(dataset) == 0:
        raise TrainingSetupError("the training set is empty: give at least one training item")
    accelerator = accelerator or make_accelerator(settings)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TrainingSetupError(f"{out} is a file, but the output is a folder (weights, state/ for resuming, "
                                 "loss.jsonl, samples/): choose a folder; to start from that file, pass it as --init.")
    state_dir = out / STATE_DIR
    module = objective.trainable().train()
    if settings.gradient_checkpointing:
        _enable_checkpointing(module)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=settings.adam_betas, eps=settings.adam_eps,
                                  weight_decay=settings.weight_decay)
    start = 0
    resumed = (state_dir / "trainer.json").is_file()
    if resumed:
        meta = json.loads((state_dir / "trainer.json").read_text())
        start = int(meta["step"])
        module.load_state_dict(_load_safetensors(state_dir / "model.safetensors"))
    ema = ParameterEMA(module) if settings.ema_decay else None
    if resumed and ema is not None and (state_dir / "ema.safetensors").is_file():
        ema.shadow = {k: v.float() for k, v in _load_safetensors(state_dir / "ema.safetensors").items()}
    deepspeed = str(accelerator.distributed_type).endswith("DEEPSPEED")
    if deepspeed:  # no dataloader goes through prepare(), so DeepSpeed is told the batch as the PCDMs scripts do
        config = accelerator.state.deepspeed_plugin.deepspeed_config
        config["train_micro_batch_size_per_gpu"] = settings.batch_size
        config["gradient_accumulation_steps"] = settings.gradient_accumulation
    wrapped, optimizer = accelerator.prepare(module, optimizer)
    if resumed:
        if deepspeed:
            accelerator.load_state(str(state_dir / "accelerate"))
        else:
            # Our own file of plain tensors and numbers: torch's weights-only loader reads it.
            optimizer.load_state_dict(torch.load(state_dir / "optimizer.pt", map_location="cpu", weights_only=True))
        logger.info("resuming from step %d (%s)", start, state_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "settings.json").write_text(json.dumps(asdict(settings), indent=1))
    rank, world = accelerator.process_index, accelerator.num_processes
    accumulation = settings.gradient_accumulation
    sample_items: list[Any] | None = None  # the first items, read when the first sheet is due
    for step in range(start, settings.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(settings, step + 1)
        totals: dict[str, float] = {}
        for micro in range(accumulation):
            index = step * accumulation + micro
            items = [dataset[i] for i in batch_indices(index, rank, world, settings.batch_size, len(dataset),
                                                       settings.seed)]
            torch.manual_seed(step_seed(settings.seed, index, rank) + GLOBAL_SEED_OFFSET)  # dropout layers
            with accelerator.accumulate(wrapped), accelerator.autocast():
                losses = objective.loss(wrapped, items, step_generator(settings.seed, index, rank))
                accelerator.backward(losses["loss"])
                if accelerator.sync_gradients and settings.max_grad_norm:
                    accelerator.clip_grad_norm_(wrapped.parameters(), settings.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach()) / accumulation
        done = step + 1
        if ema is not None:
            ema.update(accelerator.unwrap_model(wrapped), 0.0 if done < settings.ema_start else settings.ema_decay)
        values = _mean_over_ranks(accelerator, totals)
        if accelerator.is_main_process:
            values["lr"] = optimizer.param_groups[0]["lr"]
            with open(out / "loss.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": done, **values}) + "\n")
            if log is not None:
                log(done, values)
        if done % settings.save_every == 0 or done == settings.steps:
            _save(accelerator, objective, wrapped, optimizer, ema, out, name, done, deepspeed,
                  keep_step=done % settings.save_every == 0 and done != settings.steps)
        if settings.sample_every and done % settings.sample_every == 0 and accelerator.is_main_process:
            sample_items = sample_items or [dataset[i] for i in range(min(4, len(dataset)))]
            _write_sample_sheet(objective, accelerator.unwrap_model(wrapped), ema, sample_items, settings.seed,
                                out / "samples" / f"step{done:07d}.png")
    accelerator.wait_for_everyone()
    return out / f"{name}.safetensors"


def _mean_over_ranks(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    keys = sorted(values)
    local = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    gathered = accelerator.gather(local[None]).reshape(-1, len(keys)).mean(0)
    return {k: float(v) for k, v in zip(keys, gathered)}


def _save(accelerator: Any, objective: Objective, wrapped: nn.Module, optimizer: torch.optim.Optimizer,
          ema: ParameterEMA | None, out: Path, name: str, step: int, deepspeed: bool, keep_step: bool) -> None:
    state_dir = out / STATE_DIR
    if deepspeed:  # ZeRO shards the optimizer: every rank writes its own part
        accelerator.save_state(str(state_dir / "accelerate"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        module = accelerator.unwrap_model(wrapped)
        state_dir.mkdir(parents=True, exist_ok=True)
        _save_safetensors(module.state_dict(), state_dir / "model.safetensors")
        if not deepspeed:
            partial = state_dir / "optimizer.pt.partial"
            torch.save(optimizer.state_dict(), partial)
            os.replace(partial, state_dir / "optimizer.pt")
        if ema is not None:
            _save_safetensors(ema.shadow, state_dir / "ema.safetensors")
        published = module
        if ema is not None:
            published = _ema_copy(module, ema)
        tensors, metadata = objective.export(published)
        _save_safetensors(tensors, out / f"{name}.safetensors", metadata)
        if keep_step:
            _save_safetensors(tensors, out / f"{name}-step{step:07d}.safetensors", metadata)
        # Written last: a state/ without it is incomplete and is not resumed from.
        (state_dir / "trainer.json").write_text(json.dumps({"step": step}))
        logger.info("step %d saved to %s", step, out)
    accelerator.wait_for_everyone()


def _ema_copy(module: nn.Module, ema: ParameterEMA) -> nn.Module:
    import copy

    return ema.copy_to(copy.deepcopy(module))


@torch.no_grad()
def _write_sample_sheet(objective: Objective, module: nn.Module, ema: ParameterEMA | None, items: list[Any],
                        seed: int, path: Path) -> None:
    shown = _ema_copy(module, ema) if ema is not None else module
    was_training = shown.training
    shown.eval()
    sheet = objective.sample_sheet(shown, items, seed)
    shown.train(was_training)
    if sheet is None:
        return
    from PIL import Image

    from .images import to_uint8

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(sheet[None])[0]).save(path)


def _enable_checkpointing(module: nn.Module) -> None:
    """Gradient checkpointing on every sub-model that supports it (diffusers and transformers models)."""
    found = False
    for sub in module.modules():
        enable = (getattr(sub, "enable_gradient_checkpointing", None)  # diffusers
                  or getattr(sub, "gradient_checkpointing_enable", None))  # transformers
        if callable(enable) and sub is not module:
            enable()
            found = True
    if not found:
        logger.warning("gradient checkpointing requested, but %s has no sub-model that supports it",
                       type(module).__name__)

