"""Model files as users' folders hold them (issue #10): empty, truncated, altered, legacy, near-miss, odd widths.

Every file is made by the test. Each bad file must give the pack's own error naming the file and what to do;
every valid one (including tiny models with unusual widths described by a side config) must still load.
"""
from __future__ import annotations

import io
import pickle
import sys
import types
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from posetransfer.errors import PoseTransferError
from posetransfer.models.checkpoints import CheckpointError, Kind, read_checkpoint
from posetransfer.models.pcdm.stages import load_pcdm_checkpoint
from posetransfer.models.vae import load_vae

from .pcdm.conftest import UNET_SIDE_CONFIG, stage2_state_dict, tiny_vae, write_with_config


def _small() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    sd = {"image_proj_model_p.net.0.weight": torch.randn(4, 3, generator=generator),
          "image_proj_model_p.net.0.bias": torch.randn(4, generator=generator)}
    sd["unet.conv_in.weight"] = torch.randn(8, 8, 3, 3, generator=generator)
    return sd


def test_errors_show_in_comfyui_as_plain_pack_errors():
    # ComfyUI titles an error `<module>.<qualname>`; a custom node's module is its folder's full path
    assert CheckpointError.__module__ == "PoseTransfer" and issubclass(CheckpointError, PoseTransferError)
    assert issubclass(CheckpointError, ValueError)


# ----------------------------------------------------------------------------------------- symptom 1
@pytest.mark.parametrize("suffix", [".pt", ".ckpt", ".bin", ".npy", ".pth", ".safetensors"])
def test_zero_byte_files_are_named_as_empty(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"model\.\w+ is empty \(0 bytes\).*Download it again"):
        read_checkpoint(path)


def test_every_cut_of_a_legacy_file_gives_a_named_error(tmp_path):
    good = tmp_path / "legacy.pt"
    torch.save({"module": _small()}, good, _use_new_zipfile_serialization=False)
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    for length in sorted({1, 2, 5, 16, 64, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1}):
        cut.write_bytes(data[:length])
        with pytest.raises(CheckpointError, match="cut.pt.*(truncated|corrupt)"):
            read_checkpoint(cut)


def test_a_folder_given_as_a_model_file(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        read_checkpoint(tmp_path)


# ----------------------------------------------------------------------------------------- symptom 7
def _rewrite_zip(source, destination, shorten: str, by: int) -> None:
    """Copy a torch zip file record by record, cutting `by` bytes off the record named `shorten`."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(destination, "w", zipfile.ZIP_STORED) as out:
        for info in original.infolist():
            data = original.read(info)
            out.writestr(info.filename, data[:-by] if info.filename.endswith(shorten) else data)


def test_zip_storage_record_shorter_than_its_tensor_is_refused(tmp_path):
    sd = {"a.weight": torch.arange(64, dtype=torch.float32), "b.weight": torch.arange(64, dtype=torch.float32) + 100}
    good = tmp_path / "good.pt"
    torch.save(sd, good)
    bad = tmp_path / "short.pt"
    _rewrite_zip(good, bad, "/data/0", 16)
    with pytest.raises(CheckpointError, match=r"short\.pt: the data of tensor storage 0 needs 256 bytes.*record holds "
                                              r"240.*download it again"):
        read_checkpoint(bad)
    missing = tmp_path / "missing.pt"
    with zipfile.ZipFile(good) as original, zipfile.ZipFile(missing, "w") as out:
        for info in original.infolist():
            if not info.filename.endswith("/data/1"):
                out.writestr(info.filename, original.read(info))
    with pytest.raises(CheckpointError, match="storage 1.*no record"):
        read_checkpoint(missing)


def test_a_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "bundle.pt"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("readme.txt", "weights inside")
    with pytest.raises(CheckpointError, match="bundle.pt.*not a PyTorch checkpoint"):
        read_checkpoint(path)


# ----------------------------------------------------------------------------------------- symptom 6
def test_python2_module_names_are_judged_by_their_python3_import(tmp_path):
    """`commands.check_call` is `subprocess.check_call` to Python 3's unpickler: refused, not stubbed."""
    module = types.ModuleType("commands")

    def check_call(*args):  # never called: only its name is pickled
        raise AssertionError("ran")
    check_call.__module__, check_call.__qualname__ = "commands", "check_call"
    module.check_call = check_call

    class Payload:
        def __reduce__(self):
            return check_call, (["touch", str(tmp_path / "pwned")],)

    sys.modules["commands"] = module
    try:
        for name, kwargs in (("legacy.pt", {"_use_new_zipfile_serialization": False}), ("zip.pt", {})):
            torch.save({"module": _small(), "hook": Payload()}, tmp_path / name, pickle_protocol=2, **kwargs)
    finally:
        del sys.modules["commands"]
    for name in ("legacy.pt", "zip.pt"):
        with pytest.raises(CheckpointError, match=rf"Refused to load .*{name}: its pickle calls subprocess.check_call"):
            read_checkpoint(tmp_path / name)
    assert not (tmp_path / "pwned").exists()


def test_python2_builtins_still_load(tmp_path):
    """Harmless Python-2 names keep working: `__builtin__.set` is `builtins.set`."""
    data = io.BytesIO()
    pickle.Pickler(data, protocol=2).dump({"module": {}, "tags": {"a"}})
    raw = data.getvalue().replace(b"cbuiltins\nset\n", b"c__builtin__\nset\n")
    assert b"__builtin__" in raw
    from posetransfer.models.restricted_pickle import RestrictedUnpickler
    assert RestrictedUnpickler(io.BytesIO(raw)).load()["tags"] == {"a"}


# ----------------------------------------------------------------------------------------- symptom 12
def test_near_miss_files_say_which_family_they_resemble_and_what_is_wrong(tmp_path):
    sd = stage2_state_dict(full=False)
    sd["unet.conv_in.weight"] = sd["unet.conv_in.weight"][:, :4].contiguous()  # one mis-shaped key
    path = tmp_path / "PCDMs_ckpt.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError) as error:
        load_pcdm_checkpoint(str(path))
    message = str(error.value)
    assert "resembles the simplified PCDMs stage-2 model" in message and "PCDMs_ckpt.safetensors" in message
    assert "unet.conv_in.weight has shape (32, 4, 3, 3), expected 4 dimensions with 9 at position 1" in message

    vae = {k: v.contiguous() for k, v in tiny_vae().state_dict().items()}
    del vae["decoder.conv_out.weight"]  # one missing key
    path = tmp_path / "vae.safetensors"
    save_file(vae, str(path))
    with pytest.raises(CheckpointError, match=r"vae.safetensors.*resembles a Stable Diffusion VAE \(diffusers "
                                              r"layout\), but: missing decoder.conv_out.weight"):
        load_vae(str(path))


def test_unrelated_files_resemble_nothing(tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.alpha": torch.ones(1)}, str(path))
    with pytest.raises(CheckpointError, match="resembles none of them; its first keys are: lora_unet_down.alpha"):
        read_checkpoint(path, expect=Kind.SCFM)


# ----------------------------------------------------------------------------------------- symptom 10
def test_building_errors_name_the_file(tmp_path):
    sd = stage2_state_dict(full=False)
    del sd["unet.conv_out.weight"]
    path = tmp_path / "no_conv_out.pt"
    torch.save({"module": sd}, path)
    write_with_config(path, UNET_SIDE_CONFIG)
    with pytest.raises(CheckpointError, match=r"no_conv_out.pt looks like the simplified PCDMs.*missing "
                                              r"'conv_out.weight'.*download it again"):
        load_pcdm_checkpoint(str(path))

    sd = stage2_state_dict(full=False)
    sd["controlnet.extra.weight"] = torch.zeros(2)
    path = tmp_path / "extra.pt"
    torch.save({"module": sd}, path)
    write_with_config(path, UNET_SIDE_CONFIG)
    with pytest.raises(CheckpointError, match=r"extra.pt: 1 weights belong to no known part.*controlnet.extra.weight"):
        load_pcdm_checkpoint(str(path))


def test_a_broken_side_config_is_named(tmp_path):
    path = tmp_path / "PCDMs_ckpt.pt"
    torch.save({"module": _small()}, path)
    for text in ("{'attention_head_dim': [2, 4]}", "[2, 4]", "\xff\xfe"):
        (tmp_path / "PCDMs_ckpt.json").write_bytes(text.encode("latin-1"))
        with pytest.raises(CheckpointError, match=r"PCDMs_ckpt.json \(the side config of .*PCDMs_ckpt.pt\).*fix it"):
            read_checkpoint(path)


# ----------------------------------------------------------------------------------------- symptom 2
def _odd_vae_file(tmp_path, convert=lambda key, value: value, side_config=True):
    sd = {k: convert(k, v.contiguous()) for k, v in tiny_vae().state_dict().items()}  # widths 8: not multiples of 32
    path = tmp_path / "odd_vae.safetensors"
    save_file(sd, str(path))
    if side_config:
        write_with_config(path, {"norm_num_groups": 4})
    return str(path)


def test_vae_with_unusual_widths_needs_a_side_config_and_its_dtypes_are_checked(tmp_path):
    path = _odd_vae_file(tmp_path, side_config=False)
    with pytest.raises(CheckpointError) as error:
        load_vae(path)
    message = str(error.value)
    assert "odd_vae.safetensors" in message and "[8] channels wide, not multiples of 32" in message
    assert f"create {tmp_path / 'odd_vae.json'}" in message and '"norm_num_groups"' in message

    write_with_config(tmp_path / "odd_vae.safetensors", {"norm_num_groups": 3})
    with pytest.raises(CheckpointError, match=r"sets norm_num_groups = 3, which does not divide .*Fix norm_num_groups "
                                              r"in .*odd_vae.json"):
        load_vae(path)

    reference = load_vae(_odd_vae_file(tmp_path))
    for convert in (lambda k, v: v.double(), lambda k, v: v.half() if "decoder" in k else v):  # fp64, mixed: load
        model = load_vae(_odd_vae_file(tmp_path, convert))
        weight = model.decoder.conv_out.weight
        torch.testing.assert_close(weight, reference.decoder.conv_out.weight.to(weight.dtype), atol=1e-3, rtol=0)

    def quantize(key, value):
        return (value * 100).to(torch.int8) if key.startswith("encoder.conv_in") else value
    with pytest.raises(CheckpointError, match=r"odd_vae.safetensors include 2 that are not dense floating-point "
                                              r"tensors: encoder.conv_in.weight \(torch.int8\)"):
        load_vae(_odd_vae_file(tmp_path, quantize))


def test_a_pickle_that_claims_a_huge_memo_is_refused_at_once(tmp_path):
    """Found by the property tests: LONG_BINPUT with index 0x46dc8114 made the C unpickler size its memo to
    gigabytes (68 s, many GB of memory) before failing."""
    path = tmp_path / "memo.pt"
    path.write_bytes(b"\x88r\x14\x81\xdcF\xed")
    with pytest.raises(CheckpointError, match="memo.pt could not be read as a PyTorch checkpoint"):
        read_checkpoint(path)


def test_scfm_files_missing_layers_name_the_file(tmp_path):
    from posetransfer.models.scfm.checkpoint import load_scfm

    path = tmp_path / "scfm_last.safetensors"
    save_file({"flow_net.output_eight.weight": torch.zeros(2, 16, 3, 3), "cct_block.embeddings_1.weight": torch.zeros(2)},
              str(path))
    with pytest.raises(CheckpointError, match=r"scfm_last.safetensors: not an SCFM model: the key 'output_blocks\..*' "
                                              "is missing"):
        load_scfm(path)
