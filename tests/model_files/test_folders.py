"""The ComfyUI-free model folder lookup: where the models folder comes from, ComfyUI's extra paths files, messages."""
import os
import textwrap

import pytest

from posetransfer.model_files import folders


@pytest.fixture
def comfy(tmp_path):
    """A ComfyUI install with this pack in custom_nodes/."""
    root = tmp_path / "ComfyUI"
    (root / "models" / "pcdms").mkdir(parents=True)
    (root / "custom_nodes" / "ComfyUI-PoseTransfer").mkdir(parents=True)
    (root / "folder_paths.py").write_text("")
    return root


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(folders.ENV_VAR, raising=False)


def test_order_is_explicit_then_env_then_the_comfyui_install_around_the_pack(tmp_path, comfy, monkeypatch):
    pack = comfy / "custom_nodes" / "ComfyUI-PoseTransfer"
    around = folders.find_models_root(pack_root=pack)
    assert around.models_dir == str(comfy / "models") and around.comfy_dir == str(comfy)
    (tmp_path / "env").mkdir()
    monkeypatch.setenv(folders.ENV_VAR, str(tmp_path / "env"))
    env = folders.find_models_root(pack_root=pack)
    assert env.models_dir == str(tmp_path / "env") and env.comfy_dir is None and "$POSETRANSFER" in env.origin
    (tmp_path / "given").mkdir()
    given = folders.find_models_root(str(tmp_path / "given"), pack_root=pack)
    assert given.models_dir == str(tmp_path / "given") and given.origin == "--models-dir"


def test_no_models_folder_names_everything_tried(tmp_path):
    with pytest.raises(folders.ModelsDirNotFound) as err:
        folders.find_models_root(pack_root=tmp_path / "somewhere" / "ComfyUI-PoseTransfer")
    message = str(err.value)
    assert "--models-dir (not given)" in message and "$POSETRANSFER_MODELS_DIR (not set)" in message
    assert str(tmp_path / "somewhere" / "ComfyUI-PoseTransfer") in message and "custom_nodes" in message
    with pytest.raises(folders.ModelsDirNotFound, match="does not exist"):
        folders.find_models_root(str(tmp_path / "missing"))


def _write(path, text):
    path.write_text(textwrap.dedent(text))


def test_extra_paths_yaml_is_read_as_newest_core_reads_it(tmp_path, comfy, monkeypatch):
    monkeypatch.setenv("SHARED", str(tmp_path / "shared"))
    _write(comfy / "extra_paths.yaml", """\
        mine:
            base_path: $SHARED
            pcdms: |
                one
                two
            vae: vae
        first:
            base_path: ../elsewhere
            is_default: true
            pcdms: top
        nobase:
            scfm: relative/scfm
        """)
    _write(comfy / "extra_model_paths.yaml", "old:\n    pcdms: /ignored\n")
    root = folders.find_models_root(str(comfy / "models"))  # --models-dir at an install's models/: its yaml applies
    assert root.comfy_dir == str(comfy) and root.extra_paths_file == str(comfy / "extra_paths.yaml")
    assert root.folder_dirs("pcdms") == [str(tmp_path / "elsewhere" / "top"), str(comfy / "models" / "pcdms"),
                                         str(tmp_path / "shared" / "one"), str(tmp_path / "shared" / "two")]
    assert root.folder_dirs("scfm") == [str(comfy / "models" / "scfm"), str(comfy / "relative" / "scfm")]
    (tmp_path / "shared" / "two").mkdir(parents=True)
    (tmp_path / "shared" / "two" / "s2_512.pt").write_bytes(b"x")
    assert folders.find_in(root, "pcdms", "s2_512.pt") == str(tmp_path / "shared" / "two" / "s2_512.pt")
    assert folders.list_model_files("pcdms", str(comfy / "models")) == ["s2_512.pt"]


def test_deprecated_extra_model_paths_yaml_is_read_when_alone(comfy):
    _write(comfy / "extra_model_paths.yaml", "old:\n    base_path: /data\n    clip_vision: encoders\n")
    root = folders.find_models_root(pack_root=comfy / "custom_nodes" / "ComfyUI-PoseTransfer")
    assert root.folder_dirs("clip_vision")[-1] == os.path.normpath("/data/encoders")
    with pytest.raises(FileNotFoundError) as err:
        folders.find_in(root, "clip_vision", "dinov2-giant.safetensors")
    assert f"'clip_vision:' in {comfy / 'extra_model_paths.yaml'}" in str(err.value)


def test_messages_name_real_folders_and_give_the_yaml_hint_only_where_comfyui_reads_one(tmp_path, comfy):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        folders.find_model_file("pcdms", "PCDMs_ckpt.pt", str(plain))
    message = str(err.value)
    assert str(plain / "pcdms") in message and "--models-dir" in message and "yaml" not in message
    with pytest.raises(FileNotFoundError) as err:
        folders.find_model_file("pcdms", "PCDMs_ckpt.pt", str(comfy / "models"))
    assert f"'pcdms:' in {comfy / 'extra_paths.yaml'}" in str(err.value)  # the file newest core reads


def test_dwpose_files_of_other_packs_are_found(comfy):
    ckpts = comfy / "custom_nodes" / "comfyui_controlnet_aux" / "ckpts" / "yzd-v" / "DWPose"
    ckpts.mkdir(parents=True)
    (ckpts / "yolox_l.onnx").write_bytes(b"x")
    (comfy / "models" / "dwpose").mkdir()
    (comfy / "models" / "dwpose" / ".yolox_l.onnx.0123.part").write_bytes(b"x")  # an unfinished download: not listed
    found = folders.find_model_file("dwpose", "yolox_l.onnx", str(comfy / "models"))
    assert found == str(ckpts / "yolox_l.onnx")
    assert folders.list_model_files("dwpose", str(comfy / "models")) == ["yolox_l.onnx"]


def test_absolute_paths_need_no_models_folder(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"x")
    assert folders.find_model_file("pcdms", str(path)) == str(path)


def test_invalid_yaml_is_named(comfy):
    (comfy / "extra_paths.yaml").write_text("a: [unclosed\n")
    root = folders.find_models_root(str(comfy / "models"))
    with pytest.raises(ValueError, match="extra_paths.yaml is not valid YAML"):
        root.folder_dirs("pcdms")
