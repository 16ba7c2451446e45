"""safetensors converter: function, command line and node."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from posetransfer.cli import main as cli_main
from posetransfer.models.checkpoints import CheckpointError, Kind, read_checkpoint
from posetransfer.models.convert import convert_to_safetensors
from posetransfer.nodes.convert import ConvertToSafetensors

PACK_ROOT = Path(__file__).resolve().parents[2]


def _simplified_file(path: Path) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    sd = {"unet.conv_in.weight": torch.randn(8, 9, 3, 3, generator=generator).half(),
          "pose_proj.conv_in.weight": torch.randn(4, 3, 3, 3, generator=generator).half(),
          "image_proj_model.net.0.weight": torch.randn(6, 5, generator=generator).half()}
    shared = torch.randn(4, generator=generator)
    sd["image_proj_model.net.0.bias"], sd["image_proj_model.net.3.bias"] = shared[:2], shared[2:]  # views of one storage
    torch.save({"module": sd, "global_steps": 3}, path)
    return sd


def test_convert_round_trips_values_and_records_kind(tmp_path):
    source = tmp_path / "PCDMs_ckpt.pt"
    sd = _simplified_file(source)
    written = convert_to_safetensors(source)
    assert written == tmp_path / "PCDMs_ckpt.safetensors"
    checkpoint = read_checkpoint(written, expect=Kind.PCDM_SIMPLIFIED)
    assert checkpoint.container == "safetensors" and checkpoint.metadata["posetransfer_kind"] == "pcdm_simplified"
    for key, value in sd.items():
        assert checkpoint.state_dict[key].dtype == value.dtype and torch.equal(checkpoint.state_dict[key], value)
    with pytest.raises(CheckpointError, match="already exists"):
        convert_to_safetensors(source)
    assert convert_to_safetensors(source, overwrite=True) == written


def test_convert_refuses_unknown_files_and_leaves_no_partial_file(tmp_path):
    source = tmp_path / "other.pt"
    torch.save({"foo.weight": torch.ones(2)}, source)
    with pytest.raises(CheckpointError, match="not a model this pack recognises"):
        convert_to_safetensors(source)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt"]


def test_cli_convert_in_process_and_as_a_script(tmp_path, capsys):
    source = tmp_path / "m.pt"
    _simplified_file(source)
    assert cli_main(["convert", str(source), str(tmp_path / "out.safetensors")]) == 0
    assert capsys.readouterr().out.strip().endswith("out.safetensors")
    assert cli_main(["convert", str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    done = subprocess.run([sys.executable, str(PACK_ROOT), "convert", str(source), str(tmp_path / "s.safetensors")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with safe_open(str(tmp_path / "s.safetensors"), "pt") as handle:
        assert handle.metadata()["posetransfer_source"] == "m.pt"


def test_convert_node_lists_pickles_and_writes_beside_them(tmp_path, monkeypatch):
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path))
    (tmp_path / "pcdms").mkdir()
    _simplified_file(tmp_path / "pcdms" / "PCDMs_ckpt.pt")
    (tmp_path / "pcdms" / "ready.safetensors").write_bytes(b"")
    schema = ConvertToSafetensors.define_schema()
    assert schema.inputs[0].options == ["pcdms/PCDMs_ckpt.pt"]
    result = ConvertToSafetensors.execute(model="pcdms/PCDMs_ckpt.pt").result
    assert result[0] == str(tmp_path / "pcdms" / "PCDMs_ckpt.safetensors")
    assert (tmp_path / "pcdms" / "PCDMs_ckpt.safetensors").is_file()


def test_convert_names_near_misses_and_unwritable_destinations(tmp_path):
    source = tmp_path / "PCDMs_ckpt.pt"
    sd = _simplified_file(source)
    before = source.read_bytes()
    with pytest.raises(CheckpointError, match=r"Could not write .*missing/out.safetensors.*PCDMs_ckpt.pt is unchanged"):
        convert_to_safetensors(source, tmp_path / "missing" / "out.safetensors")
    assert source.read_bytes() == before and not list(tmp_path.glob("**/*.partial"))
    near = tmp_path / "near.pt"
    torch.save({"module": {k: v for k, v in sd.items() if not k.startswith("pose_proj.")}}, near)
    with pytest.raises(CheckpointError, match="refusing to convert it. It resembles the simplified PCDMs stage-2 "
                                              r"model .*but: no pose_proj\.\* weights"):
        convert_to_safetensors(near)
    assert not (tmp_path / "near.safetensors").exists()
