"""Pose node glue through the no-ComfyUI adapter."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posetransfer.nodes import pose as pose_nodes
from posetransfer.pose.formats import PoseFormatError



def _pose_test_module(name):
    """tests/pose helpers, loaded by path (pytest runs with --import-mode=importlib: no sys.path entries)."""
    path = Path(__file__).resolve().parents[1] / "pose" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"pose_tests_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_planted = _pose_test_module("planted_models")
detector_model, plant_box, planted_keypoints, pose_model = (
    _planted.detector_model, _planted.plant_box, _planted.planted_keypoints, _planted.pose_model)
aux_fixture = _pose_test_module("fixtures").aux_fixture


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "dwpose").mkdir()
    rows = np.zeros((8400, 85), np.float32)
    ratio = 640 / 96
    plant_box(rows, [v * ratio for v in (10, 8, 40, 60)], 0.9, level=2)  # left person, small
    plant_box(rows, [v * ratio for v in (50, 4, 90, 62)], 0.8, level=2)  # right person, larger
    _, _, sx, sy = planted_keypoints()
    detector_model(root / "dwpose" / "yolox_l.onnx", rows)
    pose_model(root / "dwpose" / "dw-ll_ucoco_384.onnx", sx, sy, batch=1)
    return root


@pytest.fixture
def models_env(model_dir, monkeypatch):
    monkeypatch.setenv("POSETRANSFER_MODELS_DIR", str(model_dir))
    return model_dir


def _loader():
    return pose_nodes.DWPoseLoader.execute("dw-ll_ucoco_384.onnx", "yolox_l.onnx", "CPU", "BGR").result[0]


def test_schemas_have_tooltips_and_prefixed_ids():
    for node in pose_nodes.NODES:
        schema = node.define_schema()
        assert schema.node_id.startswith("PoseTransfer") and schema.category == "PoseTransfer/Pose"
        for item in [*schema.inputs, *schema.outputs]:
            assert item.tooltip, f"{schema.node_id}: {item.id or item.display_name} has no tooltip"
    outputs = pose_nodes.DWPoseExtract.define_schema().outputs
    assert outputs[0].io_type == "POSE_KEYPOINT"


def test_extract_batch_with_person_selection(models_env):
    dwpose = _loader()
    image = torch.rand(3, 64, 96, 4)  # RGBA frames: alpha dropped
    keypoints, rendered = pose_nodes.DWPoseExtract.execute(dwpose, image, "all", 0, "empty", "pcdms").result
    assert len(keypoints) == 3 and len(keypoints[0]["people"]) == 2
    assert keypoints[0]["canvas_width"] == 96 and keypoints[0]["canvas_height"] == 64
    assert rendered.shape == (3, 64, 96, 3) and rendered.dtype == torch.float32 and rendered.max() > 0
    largest = pose_nodes.DWPoseExtract.execute(dwpose, image[:1], "largest", 0, "empty", "pcdms").result[0]
    leftmost = pose_nodes.DWPoseExtract.execute(dwpose, image[:1], "left-most", 0, "empty", "pcdms").result[0]
    assert largest[0]["people"] == [keypoints[0]["people"][1]]
    assert leftmost[0]["people"] == [keypoints[0]["people"][0]]
    no_face = pose_nodes.DWPoseExtract.execute(dwpose, image[:1], "all", 0, "empty", "pcdms", True, False).result[0]
    assert no_face[0]["people"][0]["face_keypoints_2d"] is None
    scored = pose_nodes.DWPoseExtract.execute(dwpose, image[:1], "all", 0, "empty", "pcdms", True, True, True).result[0]
    confidences = scored[0]["people"][0]["pose_keypoints_2d"][2::3]
    kept = [c for c in confidences if c > 0]
    assert min(kept) >= 0.3 and any(c < 1.0 for c in kept) and confidences[1] == 1.0  # the neck score is binary


def test_loader_names_searched_folders(models_env):
    with pytest.raises(FileNotFoundError, match="dwpose"):
        pose_nodes.DWPoseLoader.execute("missing.onnx", "yolox_l.onnx")


def test_render_align_and_json_nodes(tmp_path, monkeypatch):
    value = aux_fixture()
    image = pose_nodes.RenderPose.execute(value, "controlnet_aux", 0, 0).result[0]
    assert image.shape == (1, 256, 320, 3)
    resized = pose_nodes.RenderPose.execute(value, "pcdms", 200, 100).result[0]
    assert resized.shape == (1, 100, 200, 3)
    aligned = pose_nodes.AlignPose.execute(value, value, "per-limb lengths", 0).result[0]
    np.testing.assert_allclose(aligned[0]["people"][0]["pose_keypoints_2d"], value[0]["people"][0]["pose_keypoints_2d"])

    monkeypatch.chdir(tmp_path)
    path = pose_nodes.SaveOpenPoseJSON.execute(value, "poses/test").result[0]
    assert path.endswith("poses/test_00001.json") and json.load(open(path))["canvas_width"] == 320
    loaded = pose_nodes.LoadOpenPoseJSON.execute(path, 512, 512).result[0]
    assert loaded == value
    with pytest.raises(ValueError, match="inside the output folder"):
        pose_nodes.SaveOpenPoseJSON.execute(value, "../escape")
    (tmp_path / "broken.json").write_text('{"people": [{"pose_keypoints_2d": [1, 2]}]}')
    with pytest.raises(PoseFormatError, match="broken.json"):
        pose_nodes.LoadOpenPoseJSON.execute(str(tmp_path / "broken.json"))
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        pose_nodes.LoadOpenPoseJSON.execute("nothere.json")


def test_render_rejects_mixed_canvas_sizes():
    frames = aux_fixture() + [{**aux_fixture()[0], "canvas_width": 100}]
    with pytest.raises(ValueError, match="different canvas sizes"):
        pose_nodes.RenderPose.execute(frames, "pcdms", 0, 0)


def test_extract_returns_the_peers_ui_string_and_core_schema(models_env):
    dwpose = _loader()
    image = torch.rand(2, 64, 96, 3)
    output = pose_nodes.DWPoseExtract.execute(dwpose, image, "all", 0, "empty", "controlnet_aux")
    assert json.loads(output.ui["openpose_json"][0]) == output.result[0]
    core = pose_nodes.DWPoseExtract.execute(dwpose, image, "all", 0, "empty", "controlnet_aux", True, True, False,
                                            "core").result[0]
    person = core[0]["people"][0]
    assert len(person["foot_keypoints_2d"]) == 18 and len(person["face_keypoints_2d"]) == 210
    assert any(0.3 <= c < 1.0 for c in person["pose_keypoints_2d"][2::3])  # real scores


def test_loader_refuses_a_swapped_pair_naming_both(models_env):
    from posetransfer.pose.dwpose import ModelSlotError

    with pytest.raises(ModelSlotError, match=r"swapped.*yolox_l\.onnx.*dw-ll_ucoco_384\.onnx"):
        pose_nodes.DWPoseLoader.execute("yolox_l.onnx", "dw-ll_ucoco_384.onnx", "CPU", "BGR")
