"""Two CPU processes (gloo) through torchrun, the launcher Accelerate itself uses: what data-parallel training
must guarantee. One launch (about a minute on 2 cores) runs distributed_train_worker.py."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("accelerate")
pytestmark = pytest.mark.distributed

WORKER = Path(__file__).with_name("distributed_train_worker.py")


@pytest.fixture(scope="module")
def launched(tmp_path_factory, simplified_file, vae_file, dino_file):
    work = tmp_path_factory.mktemp("distributed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    with socket.socket() as probe:  # torchrun's static rendezvous needs a concrete free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(port), str(WORKER), str(work), str(simplified_file), str(vae_file), str(dino_file)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((work / f"rank{r}.json").read_text()) for r in range(2)]
    return work, ranks


def test_both_ranks_ran_and_saw_different_items(launched):
    _, ranks = launched
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    # 8 steps x 2 items per rank over 8 items: each global batch of 4 is split, no item shared within a step.
    for step in range(8):
        first, second = (r["seen_straight"][2 * step:2 * step + 2] for r in ranks)
        assert not set(first) & set(second)
    assert set(ranks[0]["seen_straight"][:4]) | set(ranks[1]["seen_straight"][:4]) == set(range(8))  # one epoch


def test_loss_goes_down(launched):
    _, ranks = launched
    assert ranks[0]["after"] < 0.8 * ranks[0]["before"]


def test_only_rank_zero_writes(launched):
    work, ranks = launched
    assert ranks[1]["writes"] == []
    assert any(w.endswith("stage2.safetensors") for w in ranks[0]["writes"])
    assert {p.name for p in (work / "straight").iterdir()} == {"stage2.safetensors", "stage2-step0000004.safetensors",
                                                                "state", "loss.jsonl", "settings.json"}


def test_resumed_run_continues_exactly_where_the_straight_run_would(launched):
    work, ranks = launched
    straight, resumed = (load_file(work / run / "stage2.safetensors") for run in ("straight", "resumed"))
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    # ... after reading the same items as the straight run's last 4 steps
    for rank in ranks:
        assert rank["seen_resumed"] == rank["seen_straight"]
    lines = [json.loads(line) for line in (work / "straight" / "loss.jsonl").read_text().splitlines()]
    again = [json.loads(line) for line in (work / "resumed" / "loss.jsonl").read_text().splitlines()]
    assert [line["step"] for line in again] == list(range(1, 9))
    assert [line["loss"] for line in again[4:]] == [line["loss"] for line in lines[4:]]
