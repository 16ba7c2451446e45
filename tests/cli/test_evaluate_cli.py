"""`evaluate` end to end with tiny random metric networks: identical sets score perfectly, the naming of each
protocol pairs results with their ground truth, outputs (CSV, JSON, table) are written."""
import argparse
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from posetransfer.cli import evaluate as evaluate_cli

from ..metrics.networks import alexnet_weights, inception_weights, lpips_linear_weights

pytestmark = pytest.mark.metrics


def _run(argv):
    parser = argparse.ArgumentParser()
    evaluate_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", *argv])
    return args.func(args)


def _png(path, height, width, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    root = tmp_path_factory.mktemp("metric_weights")
    save_file(inception_weights(divisor=16), str(root / "inception.safetensors"))
    torch.save(alexnet_weights(), root / "alexnet.pth")
    torch.save(lpips_linear_weights(), root / "alex.pth")
    return ["--inception", str(root / "inception.safetensors"), "--lpips-backbone", str(root / "alexnet.pth"),
            "--lpips-weights", str(root / "alex.pth"), "--device", "cpu"]


def test_identical_sets_score_perfectly_under_the_pcdms_protocol(tmp_path, networks, capsys):
    truth, results = tmp_path / "gt", tmp_path / "results"
    for i in range(4):
        _png(truth / f"fashion{i}.png", 256, 176, i)
        # the result is the ground truth itself, on the model's square (as stage 3 saved it at 256)
        with Image.open(truth / f"fashion{i}.png") as image:
            results.mkdir(exist_ok=True)
            image.resize((256, 256), Image.BICUBIC).save(results / f"src{i}_to_fashion{i}.png")
        with Image.open(truth / f"fashion{i}.png") as image:  # identical pixels under a second name
            image.save(results / f"same{i}_to_fashion{i}.png")
    _png(results / "orphan_to_missing.png", 256, 256, 9)
    out = tmp_path / "metrics"
    assert _run([str(results), str(truth), "--protocol", "pcdms-256", "--out", str(out), "--all-images",
                 *networks]) == 0
    with open(out / "per_pair.csv", newline="") as handle:
        rows = {row["result"]: row for row in csv.DictReader(handle)}
    assert len(rows) == 8 and "orphan_to_missing.png" not in rows
    for i in range(4):
        same = rows[f"same{i}_to_fashion{i}.png"]
        assert same["ground_truth"] == f"fashion{i}.png"
        assert float(same["ssim"]) == pytest.approx(1.0, abs=1e-9) and float(same["lpips"]) == pytest.approx(0, abs=1e-6)
        assert float(rows[f"src{i}_to_fashion{i}.png"]["ssim"]) < 1.0  # the square round trip is not lossless
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == 8 and summary["missing_ground_truth"] == 1 and summary["protocol"] == "pcdms-256"
    table = capsys.readouterr().out
    assert "DeepFashion (256 x 176)" in table and "FID" in table and "LPIPS" in table

    # FID of a set against itself is 0 (the ground truth as the real set, the same images as results)
    same = tmp_path / "same"
    same.mkdir()
    for i in range(4):
        (same / f"x{i}_to_fashion{i}.png").write_bytes((truth / f"fashion{i}.png").read_bytes())
    assert _run([str(same), str(truth), "--protocol", "pcdms-256", "--out", str(out), "--all-images",
                 "--save-fid-stats", str(tmp_path / "real.npz"), *networks]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fid"] == pytest.approx(0.0, abs=1e-6) and summary["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert summary["ssim"] == pytest.approx(1.0, abs=1e-9) and summary["fid_images"] == 4
    # the saved real statistics are reused as --fid-real
    assert _run([str(same), str(truth), "--protocol", "pcdms-256", "--out", str(out), "--all-images",
                 "--fid-real", str(tmp_path / "real.npz"), *networks]) == 0
    assert json.loads((out / "summary.json").read_text())["fid"] == pytest.approx(0.0, abs=1e-6)


def test_scfm_naming_and_metrics_without_weights(tmp_path, capsys):
    truth, results = tmp_path / "gt", tmp_path / "results"
    _png(truth / "fashionB.png", 64, 64, 0)
    results.mkdir()
    (results / "fashionA_2_fashionB_vis.png").write_bytes((truth / "fashionB.png").read_bytes())
    assert _run([str(results), str(truth), "--protocol", "scfm", "--out", str(tmp_path / "m")]) == 0
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["ssim"] == pytest.approx(1.0) and summary["lpips"] is None and summary["fid"] is None
    out = capsys.readouterr().out
    assert "--inception" in out and "--lpips-backbone" in out  # the table says what enables the missing columns


def test_no_pairs_and_missing_weight_files_are_explained(tmp_path):
    truth, results = tmp_path / "gt", tmp_path / "results"
    _png(truth / "a.png", 32, 32, 0)
    _png(results / "b.png", 32, 32, 1)
    with pytest.raises(ValueError, match="check --protocol"):
        _run([str(results), str(truth)])
    with pytest.raises(FileNotFoundError, match="pytorch-fid"):
        _run([str(results), str(truth), "--inception", str(tmp_path / "none.pth")])
