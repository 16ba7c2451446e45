"""Two CPU processes (gloo) through torchrun, the launcher Accelerate itself uses: what data-parallel training
must guarantee, for each objective on the one loop (PCDMs stage 2, SCFM). One launch per family (about a
minute each on 2 cores) runs distributed_train_worker.py."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from .pcdm.conftest import dino_file, simplified_file, vae_file  # noqa: F401  (fixtures)
from .scfm.conftest import randomised
from .scfm.test_scfm_flow_losses import tiny_vgg_state

pytest.importorskip("accelerate")
pytestmark = pytest.mark.distributed

WORKER = Path(__file__).with_name("distributed_train_worker.py")


def _launch(work: Path, family: str, files: list[Path]) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    with socket.socket() as probe:  # torchrun's static rendezvous needs a concrete free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(port), str(WORKER), family, str(work), *map(str, files)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((work / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module", params=["pcdm", "scfm"])
def launched(request, tmp_path_factory):
    family = request.param
    work = tmp_path_factory.mktemp(f"distributed_{family}")
    if family == "pcdm":
        files = [request.getfixturevalue(name) for name in ("simplified_file", "vae_file", "dino_file")]
    else:  # a tiny random SCFM (read through --init's loader) and a tiny VGG19 file
        files = [work / "scfm_init.safetensors", work / "vgg19.pth"]
        save_file(randomised(seed=5).state_dict(), str(files[0]))
        torch.save(tiny_vgg_state(), files[1])
    return family, work, _launch(work, family, files)


def test_both_ranks_ran_and_saw_different_items(launched):
    _, _, ranks = launched
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    # 8 steps x 2 items per rank over 8 items: each global batch of 4 is split, no item shared within a step.
    for step in range(8):
        first, second = (r["seen_straight"][2 * step:2 * step + 2] for r in ranks)
        assert not set(first) & set(second)
    assert set(ranks[0]["seen_straight"][:4]) | set(ranks[1]["seen_straight"][:4]) == set(range(8))  # one epoch


def test_loss_goes_down(launched):
    _, _, ranks = launched
    assert ranks[0]["after"] < 0.8 * ranks[0]["before"]


def test_only_rank_zero_writes(launched):
    family, work, ranks = launched
    assert ranks[1]["writes"] == []
    assert any(w.endswith(f"{family}.safetensors") for w in ranks[0]["writes"])
    assert {p.name for p in (work / "straight").iterdir()} == {f"{family}.safetensors", f"{family}-step0000004.safetensors",
                                                                "state", "loss.jsonl", "settings.json"}


def test_resumed_run_continues_exactly_where_the_straight_run_would(launched):
    family, work, ranks = launched
    for file in ("state/model.safetensors", f"{family}.safetensors"):  # weights and the published (EMA) file
        straight, resumed = (load_file(work / run / file) for run in ("straight", "resumed"))
        assert straight.keys() == resumed.keys()
        assert all(torch.equal(straight[k], resumed[k]) for k in straight)  # bitwise
    # ... after reading the same items as the straight run's last 4 steps
    for rank in ranks:
        assert rank["seen_resumed"] == rank["seen_straight"]
    lines = [json.loads(line) for line in (work / "straight" / "loss.jsonl").read_text().splitlines()]
    again = [json.loads(line) for line in (work / "resumed" / "loss.jsonl").read_text().splitlines()]
    assert [line["step"] for line in again] == list(range(1, 9))
    assert [line["loss"] for line in again[4:]] == [line["loss"] for line in lines[4:]]
