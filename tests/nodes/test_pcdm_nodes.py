"""PCDMs nodes through the no-ComfyUI adapter: schemas, loaders, inpaint glue, pose inputs, errors."""
import shutil

import numpy as np
import pytest
import torch

from posetransfer.models.checkpoints import CheckpointError, Kind
from posetransfer.nodes import loaders, pcdm

from ..models.pcdm.conftest import TINY_SIZE  # noqa: F401  (fixtures come from the models conftest below)
from ..models.pcdm.conftest import dino_file, full_file, simplified_file, vae_file  # noqa: F401

NODES = [*loaders.NODES, *pcdm.NODES]


@pytest.fixture
def models_dir(tmp_path, monkeypatch, simplified_file, full_file, vae_file, dino_file):  # noqa: F811
    for folder, path in (("pcdms", simplified_file), ("pcdms", full_file), ("vae", vae_file),
                         ("clip_vision", dino_file)):
        (tmp_path / folder).mkdir(exist_ok=True)
        for item in (path, path.with_suffix(".json")):
            shutil.copy(item, tmp_path / folder / item.name)
    (tmp_path / "pcdms" / "not-pcdms.safetensors").write_bytes((tmp_path / "vae" / vae_file.name).read_bytes())
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_schema_ids_and_tooltips(node):
    schema = node.define_schema()
    assert schema.node_id.startswith("PoseTransfer") and schema.category == "PoseTransfer/PCDMs"
    for entry in (*schema.inputs, *schema.outputs):
        assert entry.tooltip, f"{schema.node_id}: {entry.id or entry.display_name} has no tooltip"
    optional = [i.optional for i in schema.inputs]
    assert optional == sorted(optional), "required inputs come first"


def test_inpaint_widget_order_is_frozen():
    widgets = [i.id for i in pcdm.PCDMInpaint.define_schema().inputs if getattr(i, "is_widget", False)]
    assert widgets == ["steps", "guidance", "scheduler", "seed", "fit", "resolution", "batch_chunk",
                       "sequential_guidance"]


def test_loader_schema_is_built_from_its_declarations(models_dir):
    schema = loaders.PCDMLoader.define_schema()
    assert [i.id for i in schema.inputs] == ["ckpt_name", "precision"]
    assert "PCDMs_ckpt.pt" in schema.inputs[0].options  # the file list is read when the schema is built
    assert schema.outputs[0] is not loaders.PCDMLoader.OUTPUT  # core's finalize() writes output ids in place
    assert schema.search_aliases == ["pcdms", "pose transfer model", "person image diffusion"]
    assert not schema.is_experimental and loaders.PCDMLoader.define_schema() is not schema


def _load(models_dir):
    model = loaders.PCDMLoader.execute(ckpt_name="PCDMs_ckpt.pt", precision="fp32").result[0]
    dino = loaders.DINOv2Loader.execute(clip_name="dinov2-giant.safetensors", precision="auto").result[0]
    vae = loaders.VAELoader.execute(vae_name="sd21-base-vae.safetensors", precision="fp32").result[0]
    return model, dino, vae


def test_loaders_detect_kind_and_refuse_wrong_files(models_dir):
    model, dino, vae = _load(models_dir)
    assert model.model.kind == Kind.PCDM_SIMPLIFIED and model.model.dtype == torch.float32
    full = loaders.PCDMLoader.execute(ckpt_name="s2_512.pt", precision="bf16").result[0]
    assert full.model.kind == Kind.PCDM_STAGE2 and full.model.dtype == torch.bfloat16
    with pytest.raises(CheckpointError, match="VAE"):
        loaders.PCDMLoader.execute(ckpt_name="not-pcdms.safetensors", precision="fp32")
    with pytest.raises(CheckpointError, match="CLIP vision"):
        loaders.CLIPVisionLoader.execute(clip_name="dinov2-giant.safetensors", precision="fp32")
    with pytest.raises(FileNotFoundError, match="models/pcdms"):
        loaders.PCDMLoader.execute(ckpt_name="PCDMs_missing.pt", precision="fp32")


def _image(batch, height, width, seed=0):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


def _run(models, **kw):
    model, dino, vae = models
    args = dict(source_image=_image(1, 80, 60), steps=2, guidance=2.0, scheduler="ddim", seed=5, fit="pad",
                source_pose=_image(1, 80, 60, 1), target_pose=_image(3, 80, 60, 2), resolution=TINY_SIZE, batch_chunk=2)
    return pcdm.PCDMInpaint.execute(model, dino, vae, **{**args, **kw}).result


def test_inpaint_node_batch_of_poses(models_dir):
    models = _load(models_dir)
    image, canvas = _run(models)
    assert image.shape == (3, 80, 60, 3) and canvas.shape == (3, TINY_SIZE, 2 * TINY_SIZE, 3)
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    again, _ = _run(models, batch_chunk=3, sequential_guidance=True)
    torch.testing.assert_close(again, image, atol=1e-5, rtol=0)


def test_inpaint_node_errors(models_dir):
    models = _load(models_dir)
    with pytest.raises(ValueError, match="exactly one of source_pose"):
        _run(models, source_pose=None)
    with pytest.raises(ValueError, match="source batch is 2"):
        _run(models, source_image=_image(2, 80, 60), source_pose=_image(2, 80, 60))


def test_pose_keypoint_inputs_are_rendered(models_dir):
    pytest.importorskip("posetransfer.pose.render")
    body = []
    for i in range(18):
        body += [20.0 + 2 * i, 10.0 + 3 * i, 1.0]
    frame = {"people": [{"pose_keypoints_2d": body}], "canvas_width": 60, "canvas_height": 80}
    rendered = pcdm.render_keypoints([frame, frame], None, None)
    assert rendered.shape == (2, 3, 80, 60) and rendered.max() > 0.5 and rendered[..., 0, 0].eq(0).all()
    image, _ = _run(_load(models_dir), target_pose=None, target_pose_keypoint=[frame, frame])
    assert image.shape == (2, 80, 60, 3)


class _RecordingDWPose:
    """Stands in for the DWPose Loader's output: records the calls, returns one fixed person per image."""

    def __init__(self, people=True):
        self.calls, self.people = [], people

    def run_batch(self, images, no_person="empty", progress=None):
        from posetransfer.pose.dwpose import NoPersonError
        from posetransfer.pose.keypoints import Person, PoseFrame

        self.calls.append((len(images), no_person))
        if not self.people:
            raise NoPersonError("No person was detected.")
        body = [(15.0 + 2 * i, 10.0 + 3 * i, 1.0) for i in range(18)]
        return [PoseFrame(im.shape[1], im.shape[0], [Person(body=np.array(body, dtype=np.float32))]) for im in images]


def _one_step(models, dwpose, **kw):
    model, dino, vae = models
    args = dict(source_image=_image(1, 80, 60), steps=1, guidance=2.0, scheduler="ddim", seed=5, fit="pad",
                dwpose_model="missing.onnx", detector_model="missing.onnx", target_pose=_image(1, 80, 60, 2),
                resolution=TINY_SIZE, dwpose=dwpose)
    return pcdm.PCDMPoseTransfer.execute(model, dino, vae, **{**args, **kw}).result


def test_one_step_uses_the_connected_dwpose_and_opens_no_file(models_dir):
    models, dwpose = _load(models_dir), _RecordingDWPose()
    first, _ = _one_step(models, dwpose)
    second, _ = _one_step(models, dwpose)
    assert dwpose.calls == [(1, "error"), (1, "error")]  # the combos name missing files: they were never opened
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        _one_step(models, None)


def test_one_step_no_person_advice_names_only_its_own_inputs(models_dir):
    from posetransfer.pose.dwpose import NoPersonError

    with pytest.raises(NoPersonError) as error:
        _one_step(_load(models_dir), _RecordingDWPose(people=False))
    message = str(error.value)  # the advice names this node's own alternatives, not DWPose Extract's settings
    assert "source image" in message and "source_pose" in message
    assert "'no person'" not in message and "no_person" not in message
