"""Property-based tests of the one checkpoint reader (issue #10): random bytes, and cuts and corruptions of valid
files of every container, give either the weights or the pack's own error, within a deadline; a cut file never
loads."""
from __future__ import annotations

import os
import sys
import types

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from posetransfer.errors import PoseTransferError
from posetransfer.models.checkpoints import read_checkpoint

# POSETRANSFER_FUZZ_EXAMPLES raises the count for a longer hunt; the suite's default keeps each test to seconds.
EXAMPLES = int(os.environ.get("POSETRANSFER_FUZZ_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=3000, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _weights() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    sd = {"image_proj_model_p.net.0.weight": torch.randn(4, 3, generator=generator),
          "image_proj_model_p.net.0.bias": torch.randn(4, generator=generator).half()}
    sd["unet.conv_in.weight"] = torch.randn(8, 8, 3, 3, generator=generator)
    return sd


def _training_container(path) -> None:
    """An SCFM-style training file: weights beside a pickled object of a class that will not exist when read."""
    module = types.ModuleType("config_absent_at_load")
    config_class = type("TrainConfig", (), {"__module__": module.__name__})
    module.TrainConfig = config_class
    sys.modules[module.__name__] = module
    try:
        config = config_class()
        config.lr = 1e-4
        torch.save({"ema": _weights(), "conf": config, "step": 3}, path)
    finally:
        del sys.modules[module.__name__]


CONTAINERS = {
    "zip.pt": lambda path: torch.save({"module": _weights()}, path),
    "legacy.pt": lambda path: torch.save({"state_dict": _weights()}, path, _use_new_zipfile_serialization=False),
    "protocol2.ckpt": lambda path: torch.save(_weights(), path, pickle_protocol=2),
    "training.pt": _training_container,
    "model.safetensors": lambda path: save_file(_weights(), str(path), metadata={"posetransfer_kind": "x"}),
}


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("valid")
    files = {}
    for name, write in CONTAINERS.items():
        write(folder / name)
        files[name] = (folder / name).read_bytes()
        read_checkpoint(folder / name)  # each one loads as written
    return files


def _read(tmp_path, name: str, data: bytes):
    path = tmp_path / f"fuzz_{name}"
    path.write_bytes(data)
    try:
        return read_checkpoint(path)
    except PoseTransferError as error:
        assert str(path) in str(error)
        return None


@SETTINGS
@given(name=st.sampled_from(sorted(CONTAINERS)), fraction=st.floats(0, 1, exclude_max=True))
def test_every_cut_of_a_valid_file_is_refused(tmp_path_factory, valid_files, name, fraction):
    data = valid_files[name]
    assert _read(tmp_path_factory.mktemp("cut"), name, data[:int(len(data) * fraction)]) is None


@SETTINGS
@given(name=st.sampled_from(sorted(CONTAINERS)), position=st.floats(0, 1, exclude_max=True),
       replacement=st.binary(min_size=1, max_size=8))
def test_corrupted_valid_files_load_or_give_the_packs_error(tmp_path_factory, valid_files, name, position, replacement):
    data = bytearray(valid_files[name])
    start = int(len(data) * position)
    data[start:start + len(replacement)] = replacement
    checkpoint = _read(tmp_path_factory.mktemp("flip"), name, bytes(data))
    if checkpoint is not None:  # a change inside tensor data is undetectable; the result is still weights
        assert all(isinstance(v, torch.Tensor) for v in checkpoint.state_dict.values())


@SETTINGS
@given(prefix=st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04", b"\x10\x00\x00\x00\x00\x00\x00\x00{"]),
       data=st.binary(max_size=600))
def test_random_bytes_give_the_packs_error(tmp_path_factory, prefix, data):
    assert _read(tmp_path_factory.mktemp("random"), "random.pt", prefix + data) is None


@pytest.fixture(scope="module")
def numpy_files(tmp_path_factory) -> dict[str, bytes]:
    """NumPy files are not model files: a plain array, and one with pickled objects (a dict of arrays)."""
    import numpy as np

    folder = tmp_path_factory.mktemp("npy")
    np.save(folder / "array.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    np.save(folder / "objects.npy", np.array([{"conv.weight": np.ones(3)}], dtype=object), allow_pickle=True)
    return {name: (folder / name).read_bytes() for name in ("array.npy", "objects.npy")}


@SETTINGS
@given(name=st.sampled_from(["array.npy", "objects.npy"]), fraction=st.floats(0, 1))
def test_numpy_files_and_their_cuts_are_refused_naming_the_file(tmp_path_factory, numpy_files, name, fraction):
    data = numpy_files[name]
    assert _read(tmp_path_factory.mktemp("npy_cut"), name, data[:round(len(data) * fraction)]) is None
