"""Nodes of this family (filled in by its issue)."""
NODES: list = []
