"""Node help pages: the ComfyUI frontend shows `WEB_DIRECTORY/docs/<node id>.md` in a node's help panel.

The frontend (src/services/nodeHelpService.ts) fetches `/extensions/<pack folder>/docs/<node id>/<locale>.md`, then
`/extensions/<pack folder>/docs/<node id>.md`; core serves `/extensions/<pack folder>/` from the folder the pack's
`WEB_DIRECTORY` names, relative to the pack folder (nodes.py `load_custom_node`). Relative links in a page resolve
against `docs/`, not the page's own folder. Each page lists its node's inputs and outputs as bullets
(`- \\`id\\` — ...`) in the schema's order, so an input added without documentation fails here.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from posetransfer.nodes import NODES

ROOT = Path(__file__).resolve().parents[2]
BULLET = re.compile(r"^- `([^`]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
SECTIONS = ("Inputs", "Outputs", "Model files", "Typical wiring", "Common errors")


def _docs_dir() -> Path:
    """The docs folder as ComfyUI finds it: module folder + WEB_DIRECTORY + docs."""
    pack = sys.modules["posetransfer"]
    web = getattr(pack, "WEB_DIRECTORY", None)
    assert isinstance(web, str) and web, "__init__.py must set WEB_DIRECTORY, the folder ComfyUI serves"
    return Path(os.path.abspath(os.path.join(os.path.dirname(pack.__file__), web))) / "docs"


def _schemas() -> dict:
    return {schema.node_id: schema for schema in (node.define_schema() for node in NODES)}


def _sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return sections


def _bullet_names(lines: list[str]) -> list[str]:
    return [m.group(1) for m in (BULLET.match(line) for line in lines) if m]


def test_web_directory_is_the_folder_holding_the_docs():
    docs = _docs_dir()
    assert docs.is_dir(), f"WEB_DIRECTORY does not lead to a docs/ folder: {docs} is missing"
    assert docs.parent.resolve().parent == ROOT, "the web folder must sit inside the pack folder"
    # The registry archive is the tracked files minus .comfyignore: the pages must ship.
    ignored = (ROOT / ".comfyignore").read_text().split() if (ROOT / ".comfyignore").exists() else []
    web_name = docs.parent.name
    assert not [p for p in ignored if p.strip("/").split("/")[0] in (web_name, "*")], ignored


def test_every_registered_node_has_a_page_and_no_page_is_orphaned():
    docs = _docs_dir()
    pages = {p.stem for p in docs.glob("*.md")}
    node_ids = set(_schemas())
    assert len(node_ids) == len(NODES)
    assert node_ids - pages == set(), f"nodes without a help page in {docs}"
    assert pages - node_ids == set(), "help pages for node ids the pack does not register"
    assert not [p for p in docs.iterdir() if p.is_dir()], "locale folders (docs/<id>/<locale>.md) need a test first"


@pytest.mark.parametrize("node_id", sorted(_schemas()))
def test_page_lists_inputs_and_outputs_in_schema_order(node_id):
    schema = _schemas()[node_id]
    text = (_docs_dir() / f"{node_id}.md").read_text(encoding="utf-8")
    assert text.startswith("# "), f"{node_id}.md must start with a title"
    sections = _sections(text)
    missing = [s for s in SECTIONS if s not in sections]
    assert not missing, f"{node_id}.md lacks the sections {missing}"
    inputs = [i.id for i in schema.inputs]
    outputs = [o.display_name or o.id for o in schema.outputs]
    assert _bullet_names(sections["Inputs"]) == inputs, f"{node_id}.md: the Inputs bullets must be {inputs}"
    assert _bullet_names(sections["Outputs"]) == outputs, f"{node_id}.md: the Outputs bullets must be {outputs}"
    assert 30 <= len(text.splitlines()) <= 100, f"{node_id}.md: keep help pages short (40-90 lines)"


@pytest.mark.parametrize("node_id", sorted(_schemas()))
def test_relative_links_resolve_against_the_docs_folder(node_id):
    docs = _docs_dir()
    text = (docs / f"{node_id}.md").read_text(encoding="utf-8")
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            continue
        assert (docs / target.split("#")[0]).is_file(), f"{node_id}.md links to {target}, not under {docs}"
