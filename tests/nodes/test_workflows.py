"""Every shipped workflow against the node schemas: what the frontend needs to load it without errors
(COMFY.md §11) — registered types, consistent links, sockets, widget counts and combo values."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from posetransfer.nodes import NODES

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
CORE_NODES = {"LoadImage", "SaveImage", "PreviewImage", "MaskToImage", "MarkdownNote"}
FILE_COMBOS = {"ckpt_name", "clip_name", "vae_name", "pose_model", "detector", "dwpose_model", "detector_model"}
SCHEMAS = {node.define_schema().node_id: node.define_schema() for node in NODES}

# What each example is for: the pack nodes it must use and the model files it names.
EXPECTED = {
    "dwpose_extract": ({"PoseTransferDWPoseLoader", "PoseTransferDWPoseExtract", "PoseTransferRenderPose",
                        "PoseTransferSaveOpenPoseJSON"}, {"yolox_l.onnx", "dw-ll_ucoco_384.onnx"}),
    "pcdm_inpaint": ({"PoseTransferPCDMLoader", "PoseTransferDINOv2Loader", "PoseTransferVAELoader",
                      "PoseTransferPCDMPoseTransfer"}, {"PCDMs_ckpt.pt", "dinov2-giant.safetensors",
                                                        "sd21-base-vae.safetensors"}),
    "pcdm_pose_sequence": ({"PoseTransferLoadOpenPoseJSON", "PoseTransferPCDMPoseTransfer"}, {"PCDMs_ckpt.pt"}),
    "pcdm_three_stage": ({"PoseTransferPCDMPriorLoader", "PoseTransferPCDMPrior", "PoseTransferPCDMInpaint",
                          "PoseTransferPCDMRefinerLoader", "PoseTransferPCDMRefine"},
                         {"s1_512.pt", "s2_512.pt", "s3_512.pt", "CLIP-ViT-H-14.safetensors",
                          "dinov2-giant.safetensors", "sd21-base-vae.safetensors"}),
    "scfm_transfer": ({"PoseTransferSCFMLoader", "PoseTransferSCFMWarp", "PoseTransferSCFMSample",
                       "PoseTransferDWPoseLoader", "PoseTransferDWPoseExtract"}, {"scfm_last.pt"}),
}


def _widgets(schema) -> list:
    return [i for i in schema.inputs if getattr(i, "is_widget", False) and not getattr(i, "force_input", False)]


def test_every_workflow_is_described_and_has_a_thumbnail():
    assert {p.stem for p in WORKFLOWS.glob("*.json")} == set(EXPECTED)
    for stem in EXPECTED:
        assert (WORKFLOWS / f"{stem}.jpg").is_file(), stem


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_workflow_matches_the_schemas(stem):
    workflow = json.loads((WORKFLOWS / f"{stem}.json").read_text())
    by_id = {node["id"]: node for node in workflow["nodes"]}
    types = {node["type"] for node in workflow["nodes"]}
    assert types <= CORE_NODES | set(SCHEMAS), types - CORE_NODES - set(SCHEMAS)
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        assert by_id[src]["outputs"][src_slot]["type"] == kind and link_id in by_id[src]["outputs"][src_slot]["links"]
        assert by_id[dst]["inputs"][dst_slot]["type"] == kind and by_id[dst]["inputs"][dst_slot]["link"] == link_id
    files = set()
    for node in (n for n in workflow["nodes"] if n["type"] in SCHEMAS):
        schema = SCHEMAS[node["type"]]
        widgets = _widgets(schema)
        values = list(node["widgets_values"])
        for widget in widgets:  # seeds carry the frontend's extra "fixed"/"randomize" value
            value = values.pop(0)
            if getattr(widget, "control_after_generate", False):
                values.pop(0)
            if widget.id in FILE_COMBOS:
                assert "/" not in value and "\\" not in value, (stem, value)  # portable: root-level names only
                files.add(value)
            elif getattr(widget, "options", None):
                assert value in widget.options, (stem, node["type"], widget.id, value)
        assert values == [], (stem, node["type"], "extra widget values")
        sockets = [(i.id, i.io_type) for i in schema.inputs if not getattr(i, "is_widget", False)]
        assert [(i["name"], i["type"]) for i in node["inputs"]] == sockets, (stem, node["type"])
        assert [(o["name"], o["type"]) for o in node["outputs"]] == [(o.display_name, o.io_type) for o in schema.outputs]
    nodes, model_files = EXPECTED[stem]
    assert nodes <= types and model_files <= files, (stem, nodes - types, model_files - files)


def test_three_stage_workflow_runs_the_stages_in_order():
    workflow = json.loads((WORKFLOWS / "pcdm_three_stage.json").read_text())
    chain = [n["type"] for n in sorted(workflow["nodes"], key=lambda n: n["order"]) if "PCDM" in n["type"]]
    assert chain.index("PoseTransferPCDMPrior") < chain.index("PoseTransferPCDMInpaint") < chain.index("PoseTransferPCDMRefine")


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_workflow_names_and_offers_its_model_files(stem):
    """Each model file a workflow uses is named in its read-me note with its folder, and each one a hub serves
    in a format ComfyUI's missing-models dialog downloads is offered through the loader's properties.models."""
    from posetransfer.model_files.catalogue import FILES, workflow_models_entry

    workflow = json.loads((WORKFLOWS / f"{stem}.json").read_text())
    notes = " ".join(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "MarkdownNote")
    by_name = {f.name: f for f in FILES.values()}
    used = 0
    for node in workflow["nodes"]:
        for value in node.get("widgets_values") or []:
            if not isinstance(value, str) or value not in by_name:
                continue
            used += 1
            entry, offered = workflow_models_entry(by_name[value]), node["properties"].get("models", [])
            assert value in notes and f"models/{by_name[value].folder}/" in notes, (stem, value)
            assert offered == ([entry] if entry else []), (stem, node["type"], offered)
    assert used >= len(EXPECTED[stem][1]), stem
    assert workflow["groups"], f"{stem}: no groups"
