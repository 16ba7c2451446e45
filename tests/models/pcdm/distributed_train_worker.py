"""Run by tests/models/pcdm/test_pcdm_train_distributed.py under torchrun (2 CPU processes, gloo).

argv: WORK_DIR PCDM_FILE VAE_FILE DINO_FILE. Trains the tiny stage-2 model three ways (straight to 8 steps;
to 4 steps then resumed to 8) and records, per rank, the dataset items it read and every file it wrote.
"""
import builtins
import importlib.util
import json
import pathlib
import sys

import torch

_root = pathlib.Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("posetransfer_bootstrap", _root / "__main__.py")
_bootstrap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bootstrap)
_bootstrap.load_pack()
torch.set_num_threads(1)

from posetransfer.models import training  # noqa: E402
from posetransfer.models.encoders import load_dinov2  # noqa: E402
from posetransfer.models.pcdm.stages import load_pcdm_checkpoint  # noqa: E402
from posetransfer.models.pcdm.train import PairItem, Stage2Objective  # noqa: E402
from posetransfer.models.vae import load_vae  # noqa: E402

work, pcdm_file, vae_file, dino_file = map(pathlib.Path, sys.argv[1:5])
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


class Synthetic:
    """8 fixed pairs of smooth random images and pose renders; records what this rank reads."""

    def __init__(self):
        gen = torch.Generator().manual_seed(123)
        self.items = []
        for index in range(8):
            images = [torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=gen), size=SIZE,
                                                      mode="bilinear")[0] for _ in range(4)]
            self.items.append(PairItem(*images, index=index))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        seen.append(index)
        return self.items[index]


def objective():
    return Stage2Objective(load_pcdm_checkpoint(str(pcdm_file)), load_vae(str(vae_file)), load_dinov2(str(dino_file)))


def held_out_loss(obj) -> float:
    data = Synthetic()
    net = obj.trainable().eval()
    with torch.no_grad():
        return sum(float(obj.loss(net, data.items[:4], torch.Generator().manual_seed(1000 + k))["loss"])
                   for k in range(4)) / 4


settings = training.LoopSettings(steps=8, batch_size=2, lr=1e-3, save_every=4, seed=7)
dataset = Synthetic()
first = objective()
before = held_out_loss(first)
training.train_loop(first, dataset, settings, work / "straight", name="stage2")
after = held_out_loss(first)
seen_straight = list(seen)
seen.clear()
training.train_loop(objective(), dataset, training.LoopSettings(**{**vars(settings), "steps": 4}), work / "resumed",
                    name="stage2")
training.train_loop(objective(), dataset, settings, work / "resumed", name="stage2")
seen_resumed = list(seen)
accelerator = training.make_accelerator(settings)
record = {"rank": accelerator.process_index, "world": accelerator.num_processes, "seen_straight": seen_straight,
          "seen_resumed": seen_resumed, "writes": writes, "before": before, "after": after}
builtins.open, pathlib.Path.write_text = _open, _write_text
(work / f"rank{accelerator.process_index}.json").write_text(json.dumps(record))
