"""Run by tests/models/test_training_distributed.py under torchrun (2 CPU processes, gloo).

argv: FAMILY WORK_DIR FILE... with FAMILY `pcdm` (files: stage-2 model, VAE, DINOv2) or `scfm` (files: SCFM
model, VGG19). Trains the family's tiny model on 8 synthetic items three ways (straight to 8 steps; to 4 steps
then resumed to 8) and records, per rank, the dataset items it read, every file it wrote and a held-out loss
before and after the straight run.
"""
import builtins
import importlib.util
import json
import pathlib
import sys

import torch

_root = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("posetransfer_bootstrap", _root / "__main__.py")
_bootstrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bootstrap)
_bootstrap.load_pack()
torch.set_num_threads(1)

from posetransfer.models import training  # noqa: E402

family, work, files = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
SIZE = 64
writes: list[str] = []
seen: list[int] = []

_open = builtins.open


def _recording_open(file, mode="r", *args, **kwargs):
    if any(flag in mode for flag in "wax+"):
        writes.append(str(file))
    return _open(file, mode, *args, **kwargs)


builtins.open = _recording_open
_write_text = pathlib.Path.write_text
pathlib.Path.write_text = lambda self, *a, **k: (writes.append(str(self)), _write_text(self, *a, **k))[1]
_save = torch.save
torch.save = lambda obj, f, *a, **k: (writes.append(str(f)), _save(obj, f, *a, **k))[1]
_st = training._save_safetensors
training._save_safetensors = lambda tensors, path, metadata=None: (writes.append(str(path)),
                                                                   _st(tensors, path, metadata))[1]


def smooth(gen: torch.Generator, channels: int = 3) -> torch.Tensor:
    """[C,SIZE,SIZE] in 0..1: 8 x 8 noise upsampled, something a tiny model can learn in a few steps."""
    return torch.nn.functional.interpolate(torch.rand(1, channels, 8, 8, generator=gen), size=SIZE,
                                           mode="bilinear")[0]


def pcdm_family():
    from posetransfer.models.encoders import load_dinov2
    from posetransfer.models.pcdm.stages import load_pcdm_checkpoint
    from posetransfer.models.pcdm.train import PairItem, Stage2Objective
    from posetransfer.models.vae import load_vae

    gen = torch.Generator().manual_seed(123)
    items = [PairItem(*(smooth(gen) for _ in range(4)), index=index) for index in range(8)]
    pcdm_file, vae_file, dino_file = files
    settings = training.LoopSettings(steps=8, batch_size=2, lr=1e-3, save_every=4, seed=7)
    return (lambda: Stage2Objective(load_pcdm_checkpoint(pcdm_file), load_vae(vae_file), load_dinov2(dino_file)),
            items, settings)


def scfm_family():
    from posetransfer.models.scfm.train import SCFMObjective, ScfmPair, initial_model, loop_settings
    from posetransfer.models.scfm.vgg import load_vgg19

    gen = torch.Generator().manual_seed(123)
    items = [ScfmPair(smooth(gen) * 2 - 1, smooth(gen, 20), smooth(gen) * 2 - 1, smooth(gen, 20), index=index)
             for index in range(8)]
    scfm_file, vgg_file = files
    settings = loop_settings(steps=8, batch_size=2, lr=1e-3, warmup=2, save_every=4, seed=7, sample_every=0)
    return lambda: SCFMObjective(initial_model(scfm_file), load_vgg19(vgg_file)), items, settings


class Synthetic:
    """The family's 8 fixed items; records what this rank reads."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        seen.append(index)
        return self.items[index]


def held_out_loss(objective, items) -> float:
    net = objective.trainable().eval()
    with torch.no_grad():
        loss = sum(float(objective.loss(net, items[:4], torch.Generator().manual_seed(1000 + k))["loss"])
                   for k in range(4)) / 4
    net.train()
    return loss


make_objective, items, settings = {"pcdm": pcdm_family, "scfm": scfm_family}[family]()
dataset = Synthetic(items)
first = make_objective()
before = held_out_loss(first, items)
training.train_loop(first, dataset, settings, work / "straight", name=family)
after = held_out_loss(first, items)
seen_straight = list(seen)
seen.clear()
training.train_loop(make_objective(), dataset, training.LoopSettings(**{**vars(settings), "steps": 4}),
                    work / "resumed", name=family)
training.train_loop(make_objective(), dataset, settings, work / "resumed", name=family)
seen_resumed = list(seen)
accelerator = training.make_accelerator(settings)
record = {"rank": accelerator.process_index, "world": accelerator.num_processes, "seen_straight": seen_straight,
          "seen_resumed": seen_resumed, "writes": writes, "before": before, "after": after}
builtins.open, pathlib.Path.write_text = _open, _write_text
(work / f"rank{accelerator.process_index}.json").write_text(json.dumps(record))
