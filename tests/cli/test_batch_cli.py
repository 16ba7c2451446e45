"""`batch` on tiny random models: shards write exactly the unsharded outputs, re-runs skip, a bad pair is
reported while the rest complete, the originals' list formats and output names, contact sheets."""
import argparse
import csv
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from posetransfer.cli import batch as batch_cli
from posetransfer.cli import pair_lists
from posetransfer.cli.pose_files import gfla_keypoints


STEPS = ["--steps", "1", "--resolution", "64", "--device", "cpu"]


def _parse(argv):
    parser = argparse.ArgumentParser()
    batch_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _run(argv):
    args = _parse(argv)
    return args.func(args)


def _png(path, height, width, seed):
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def csv_list(tmp_path):
    """Four pairs: 40 x 32 photos with renders of their pose, 48 x 32 target renders, ground truths."""
    data = tmp_path / "data"
    rows = [["source", "target_pose", "output", "source_pose", "ground_truth"]]
    for i in range(4):
        _png(data / f"p{i}.png", 40, 32, i)
        _png(data / f"p{i}_pose.png", 40, 32, 10 + i)
        _png(data / f"t{i}_pose.png", 48, 32, 20 + i)
        _png(data / f"t{i}.png", 48, 32, 30 + i)
        rows.append([f"p{i}.png", f"t{i}_pose.png", f"out_{i}.png", f"p{i}_pose.png", f"t{i}.png"])
    path = data / "pairs.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def _outputs(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if name.startswith("out_")}


def test_two_shards_write_exactly_the_unsharded_outputs_and_reruns_skip(tmp_path, models_dir, csv_list, capsys):
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    assert _run(["batch", "pcdm", str(csv_list), str(whole), *STEPS]) == 0
    for index in (0, 1):
        assert _run(["batch", "pcdm", str(csv_list), str(sharded), "--shard", f"{index}/2", *STEPS]) == 0
    reference = _outputs(whole)
    assert sorted(reference) == [f"out_{i}.png" for i in range(4)]
    assert _outputs(sharded) == reference  # byte for byte
    with Image.open(whole / "out_0.png") as image:
        assert image.size == (32, 48)  # CSV lists: the target pose's size
    assert "ETA" in capsys.readouterr().err

    before = {name: os.stat(whole / name).st_mtime_ns for name in reference}
    os.remove(whole / "out_2.png")
    assert _run(["batch", "pcdm", str(csv_list), str(whole), *STEPS]) == 0
    assert "3 already written, 1 to generate" in capsys.readouterr().err
    assert _outputs(whole) == reference  # the regenerated pair is the same image: seeded by its list index
    assert all(os.stat(whole / n).st_mtime_ns == t for n, t in before.items() if n != "out_2.png")
    assert not any(name.startswith(".") for name in os.listdir(whole))  # no partial files left


def test_a_bad_pair_is_reported_and_the_rest_complete(tmp_path, models_dir, csv_list, capsys):
    os.remove(csv_list.parent / "p1.png")
    with open(csv_list, "a", newline="") as handle:  # and a pose JSON that is not JSON
        (csv_list.parent / "broken.json").write_text("{not json")
        csv.writer(handle).writerow(["p0.png", "broken.json", "out_4.png", "p0_pose.png", ""])
    out = tmp_path / "out"
    assert _run(["batch", "pcdm", str(csv_list), str(out), *STEPS]) == 1
    assert sorted(_outputs(out)) == ["out_0.png", "out_2.png", "out_3.png"]
    err = capsys.readouterr().err
    assert "FAILED pair 1" in err and "p1.png" in err and "FAILED pair 4" in err
    with open(out / "failures_0of1.csv", newline="") as handle:
        failed = list(csv.DictReader(handle))
    assert [row["index"] for row in failed] == ["1", "4"]
    assert "not found" in failed[0]["reason"] and "p1.png" in failed[0]["reason"]
    assert "broken.json" in failed[1]["reason"]
    # fixing the inputs and re-running completes the list and clears the failure log
    _png(csv_list.parent / "p1.png", 40, 32, 1)
    rows = list(csv.reader(open(csv_list)))[:-1]
    with open(csv_list, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert _run(["batch", "pcdm", str(csv_list), str(out), *STEPS]) == 0
    assert sorted(_outputs(out)) == [f"out_{i}.png" for i in range(4)] and not (out / "failures_0of1.csv").exists()


def test_sheets_come_from_existing_outputs_without_models(tmp_path, monkeypatch, csv_list):
    out = tmp_path / "out"
    out.mkdir()
    for i in range(3):
        _png(out / f"out_{i}.png", 48, 32, 40 + i)
    _png(out / "out_3.png", 48, 32, 43)
    (tmp_path / "no_models").mkdir()
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path / "no_models"))  # every result exists: no model loads
    assert _run(["batch", "pcdm", str(csv_list), str(out), "--sheet", str(tmp_path / "sheets"),
                 "--sheet-rows", "3", *STEPS]) == 0
    sheets = sorted(os.listdir(tmp_path / "sheets"))
    assert sheets == ["sheet_000000.jpg", "sheet_000003.jpg"]
    with Image.open(tmp_path / "sheets" / sheets[0]) as first, Image.open(tmp_path / "sheets" / sheets[1]) as second:
        cell = round(256 * 32 / 40)  # cells take the source's aspect
        assert first.width == second.width == 4 * (cell + 4) + 4  # source | target pose | result | ground truth
        assert first.height - second.height == 2 * (256 + 14 + 4)  # 3 rows vs 1


def test_sheets_read_pictures_through_the_packs_reader(tmp_path, monkeypatch, csv_list, caplog):
    """Issue #10: a phone photo shows upright, a damaged ground truth leaves its cell empty with a named warning."""
    out = tmp_path / "out"
    for i in range(4):
        _png(out / f"out_{i}.png", 48, 32, 40 + i)
    data = csv_list.parent
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways (32 x 40): shown rotated to 40 x 32, as the other sources
    with Image.open(data / "p0.png") as upright:
        upright.transpose(Image.Transpose.ROTATE_90).save(data / "p0.png", exif=exif)
    (data / "t1.png").write_bytes((data / "t1.png").read_bytes()[:200])
    (tmp_path / "no_models").mkdir()
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path / "no_models"))
    with caplog.at_level("WARNING"):
        assert _run(["batch", "pcdm", str(csv_list), str(out), "--sheet", str(tmp_path / "sheets"),
                     "--sheet-rows", "4", *STEPS]) == 0
    assert f"sheet: no ground truth picture: {data / 't1.png'} cannot be read as an image" in caplog.text
    with Image.open(tmp_path / "sheets" / "sheet_000000.jpg") as sheet:
        cell = round(256 * 32 / 40)  # the first source's aspect sets the cells: 40 x 32 once upright
        assert sheet.width == 4 * (cell + 4) + 4


def test_missing_model_files_stop_the_run_before_any_pair(tmp_path, monkeypatch, csv_list):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError) as error:
        _run(["batch", "pcdm3", str(csv_list), str(tmp_path / "out"), *STEPS])
    for name in ("s1_512.pt", "s2_512.pt", "s3_512.pt", "CLIP-ViT-H-14.safetensors", "dinov2-giant.safetensors"):
        assert name in str(error.value)
    assert not os.listdir(tmp_path / "out")


def test_pcdms_test_data_json_names_and_paths(tmp_path):
    entries = [{"source_image": "fashionWOMENa.jpg", "target_image": "fashionWOMENb.jpg"}]
    (tmp_path / "test_data.json").write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="--img-dir"):
        pair_lists.read_pairs(str(tmp_path / "test_data.json"))
    (pair,) = pair_lists.read_pairs(str(tmp_path / "test_data.json"), img_dir="/d/img", pose_dir="/d/pose",
                                    prior_pose_dir="/d/txt")
    assert pair.output == "fashionWOMENa_to_fashionWOMENb.png"  # stage{2,3}_batchtest_*.py
    assert pair.source == "/d/img/fashionWOMENa.png" and pair.ground_truth == "/d/img/fashionWOMENb.png"
    assert pair.target_pose == "/d/pose/fashionWOMENb_pose.jpg" and pair.source_pose == "/d/pose/fashionWOMENa_pose.jpg"
    assert pair.prior_target == "/d/txt/fashionWOMENb.txt"


def test_scfm_test_pairs_names_paths_and_keypoints(tmp_path):
    (tmp_path / "test_pairs.txt").write_text(
        "img/MEN/Denim/id_00000080/01_1_front.jpg,img/MEN/Denim/id_00000080/01_2_side.jpg\n\n")
    (pair,) = pair_lists.read_pairs(str(tmp_path / "test_pairs.txt"), dataset=str(tmp_path))
    assert pair.output == "fashionMENDenimid0000008001_2side_2_fashionMENDenimid0000008001_1front_vis.png"
    assert pair.source == str(tmp_path / "img/MEN/Denim/id_00000080/01_2_side.png")
    assert pair.target_pose == str(tmp_path / "pose/MEN/Denim/id_00000080/01_1_front.txt")
    keypoints = np.full((18, 2), -1.0)
    keypoints[0], keypoints[3] = (140.0, 30.0), (100.0, -1.0)
    np.savetxt(tmp_path / "k.txt", keypoints)
    xy = gfla_keypoints(str(tmp_path / "k.txt"))
    assert xy[0].tolist() == [100.0, 30.0] and (xy[1:] == -1).all()  # 40 px margin cut, missing stays -1


def test_shard_option_is_checked():
    assert pair_lists.parse_shard("3/4") == (3, 4) and pair_lists.parse_shard(None) == (0, 1)
    for bad in ("4/4", "1", "-1/2", "a/b"):
        with pytest.raises(ValueError, match="shard"):
            pair_lists.parse_shard(bad)
    pairs = list(range(10))
    assert sorted(sum((pair_lists.shard(pairs, i, 3) for i in range(3)), [])) == pairs


def test_scfm_batch_on_the_test_pairs_format(tmp_path, monkeypatch):
    from posetransfer.models.scfm import checkpoint as ck

    from ..models.scfm.conftest import TINY, randomised

    models = tmp_path / "models" / "scfm"
    models.mkdir(parents=True)
    torch.save({"ema": ck.original_state_dict(randomised().state_dict(), TINY)}, models / "scfm_last.pt")
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path / "models"))
    rng = np.random.default_rng(0)
    lines = []
    for i, name in enumerate(("01_1_front", "01_2_side", "02_1_front")):
        _png(tmp_path / f"img/MEN/Denim/id_0000008{i}/{name}.png", 64, 44, i)
        keypoints = np.column_stack([rng.uniform(45, 210, 18), rng.uniform(5, 250, 18)])
        keypoints[5] = -1
        (tmp_path / f"pose/MEN/Denim/id_0000008{i}").mkdir(parents=True)
        np.savetxt(tmp_path / f"pose/MEN/Denim/id_0000008{i}/{name}.txt", keypoints)
        lines.append(f"img/MEN/Denim/id_0000008{i}/{name}.jpg")
    pairs = tmp_path / "test_pairs.txt"
    pairs.write_text(f"{lines[1]},{lines[0]}\n{lines[2]},{lines[1]}\n{lines[0]},{lines[2]}\n")
    argv = ["batch", "scfm", str(pairs), "--steps", "1", "--device", "cpu"]
    assert _run([*argv[:3], str(tmp_path / "whole"), *argv[3:]]) == 0
    for index in (0, 1):
        assert _run([*argv[:3], str(tmp_path / "sharded"), "--shard", f"{index}/2", *argv[3:]]) == 0
    names = sorted(os.listdir(tmp_path / "whole"))
    assert names[0] == "fashionMENDenimid0000008001_1front_2_fashionMENDenimid0000008101_2side_vis.png"
    assert len(names) == 3
    for name in names:
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "sharded" / name).read_bytes()
        with Image.open(tmp_path / "whole" / name) as image:
            assert image.size == (64, 64)  # the model square, as SCFM's inference.py saved it
