"""Shipped workflows bind to node ids, input ids and widget order: those are frozen (COMFY.md §11).

`node_snapshot.json` records every node's inputs as `id:TYPE` (`?` = optional), in the order the frontend creates
widgets (required, then optional), and its outputs. Existing entries may never change; a new input may only be appended, optional. After
adding nodes or inputs, regenerate with `UPDATE_NODE_SNAPSHOT=1` and review the diff.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from posetransfer.nodes import NODES

SNAPSHOT = Path(__file__).with_name("node_snapshot.json")


def _describe(node) -> dict:
    schema = node.define_schema()
    inputs = [i for i in schema.inputs if not i.optional] + [i for i in schema.inputs if i.optional]
    return {
        "inputs": [f"{i.id}:{i.io_type}" + ("?" if i.optional else "") for i in inputs],
        "outputs": [str(o.io_type) for o in schema.outputs],
    }


def _current() -> dict:
    return {node.define_schema().node_id: _describe(node) for node in NODES}


def test_shipped_node_interfaces_are_frozen():
    current = _current()
    if os.environ.get("UPDATE_NODE_SNAPSHOT"):
        SNAPSHOT.write_text("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in current.items()) + "\n}\n")
    frozen = json.loads(SNAPSHOT.read_text())
    for node_id, spec in frozen.items():
        assert node_id in current, f"{node_id} was removed: shipped workflows would show a missing node"
        now = current[node_id]
        assert now["inputs"][: len(spec["inputs"])] == spec["inputs"], f"{node_id}: inputs changed or reordered"
        added = now["inputs"][len(spec["inputs"]):]
        assert all(item.endswith("?") for item in added), f"{node_id}: new inputs must be optional: {added}"
        assert now["outputs"][: len(spec["outputs"])] == spec["outputs"], f"{node_id}: outputs changed"
    assert set(current) <= set(frozen), f"new nodes, add them to the snapshot: {sorted(set(current) - set(frozen))}"


def test_every_input_and_output_has_a_tooltip():
    for node in NODES:
        schema = node.define_schema()
        for item in [*schema.inputs, *schema.outputs]:
            assert item.tooltip, f"{schema.node_id}: '{item.id or item.display_name}' has no tooltip"
        assert schema.description and schema.category.startswith("PoseTransfer/")
