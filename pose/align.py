"""Retarget a target pose (sequence) onto the source person's body — neither original method has this.

* "none": the target as it is (parity with the originals).
* "scale+translate": one uniform scale (ratio of the summed lengths of limbs present in both bodies) and a
  shift that puts the target's joints' centroid on the source's; computed from the FIRST target frame and
  applied to every frame, so motion inside a sequence is kept.
* "per-limb lengths": additionally rebuild every body limb from the neck outwards with the target's direction
  (joint angles kept) and the source's length; hands follow their wrists and the face its nose, scaled by the
  global factor. Limbs the source lacks keep the target length times the global scale.

Poses are first placed on the source canvas (uniform fit, centred) so canvases of different shapes compare.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from .keypoints import LIMBS, Person, PoseFrame

ALIGN_MODES = ("none", "scale+translate", "per-limb lengths")
NECK, NOSE, R_WRIST, L_WRIST = 1, 0, 4, 7


@dataclass(frozen=True)
class Similarity:
    """p -> target_anchor-relative offset x scale + source anchor."""

    scale: float
    source_anchor: np.ndarray
    target_anchor: np.ndarray

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        return (xy - self.target_anchor) * self.scale + self.source_anchor


def _present(body: np.ndarray) -> np.ndarray:
    return body[:, 2] > 0


def _limb_lengths(body: np.ndarray) -> dict[tuple[int, int], float]:
    ok = _present(body)
    return {(a - 1, b - 1): float(np.linalg.norm(body[a - 1, :2] - body[b - 1, :2]))
            for a, b in LIMBS if ok[a - 1] and ok[b - 1]}


def fit_to_canvas(frame: PoseFrame, width: int, height: int) -> PoseFrame:
    """The frame on a width x height canvas, scaled uniformly to fit and centred (no stretching)."""
    scale = min(width / frame.width, height / frame.height)
    offset = np.array([(width - frame.width * scale) / 2, (height - frame.height * scale) / 2])
    people = [p.mapped(lambda xy: xy * scale + offset) for p in frame.people]
    return PoseFrame(width, height, people, dict(frame.extra))


def similarity(source: Person, target: Person) -> Similarity:
    """Scale from the limbs both bodies have; anchors = centroids of the joints both have."""
    both = _present(source.body) & _present(target.body)
    if not both.any():
        raise ValueError("Cannot align poses: the source and target bodies share no detected joint")
    src_len, tgt_len = _limb_lengths(source.body), _limb_lengths(target.body)
    common = [limb for limb in src_len if limb in tgt_len and tgt_len[limb] > 0]
    scale = sum(src_len[c] for c in common) / sum(tgt_len[c] for c in common) if common else 1.0
    return Similarity(scale, source.body[both, :2].mean(axis=0), target.body[both, :2].mean(axis=0))


def _move_attached(part: np.ndarray | None, old_anchor: np.ndarray, new_anchor: np.ndarray,
                   scale: float) -> np.ndarray | None:
    if part is None:
        return None
    out = part.copy()
    ok = out[:, 2] > 0
    out[ok, :2] = (out[ok, :2] - old_anchor) * scale + new_anchor
    return out


def per_limb(source: Person, target: Person, transform: Similarity) -> Person:
    """Target joint directions, source limb lengths, root (neck) placed by `transform`."""
    moved = target.mapped(transform)
    body = target.body
    if not _present(body)[NECK]:
        return moved  # no root to grow the skeleton from
    src_len = _limb_lengths(source.body)
    new = moved.body.copy()
    placed = np.zeros(len(body), dtype=bool)
    placed[NECK] = True
    for a, b in LIMBS:  # parents come before children in this list
        parent, child = a - 1, b - 1
        if not (placed[parent] and _present(body)[child]):
            continue
        direction = body[child, :2] - body[parent, :2]
        norm = np.linalg.norm(direction)
        length = src_len.get((parent, child), norm * transform.scale)
        new[child, :2] = new[parent, :2] + (direction / norm * length if norm > 0 else 0.0)
        placed[child] = True
    out = replace(moved, body=new)
    for attr, anchor in (("left_hand", L_WRIST), ("right_hand", R_WRIST), ("face", NOSE)):
        if _present(body)[anchor]:
            part = _move_attached(getattr(target, attr), body[anchor, :2], new[anchor, :2], transform.scale)
            out = replace(out, **{attr: part})
    if out.face is not None:  # OpenPose's last two face points are the body eyes
        out.face[68:70] = np.where(out.face[68:70, 2:] > 0, new[[14, 15]], out.face[68:70])
    return out


def align_frames(targets: Sequence[PoseFrame], source: PoseFrame, mode: str = "scale+translate",
                 source_person: int = 0) -> list[PoseFrame]:
    """Align every person of every target frame to `source.people[source_person]`; results live on the
    source canvas. The global transform comes from the first target frame's first person."""
    if mode not in ALIGN_MODES:
        raise ValueError(f"alignment must be one of {ALIGN_MODES}, got {mode!r}")
    if mode == "none":
        return list(targets)
    if not source.people:
        raise ValueError("Cannot align poses: no person in the source pose")
    if not -len(source.people) <= source_person < len(source.people):
        raise IndexError(f"source person {source_person} is out of range: {len(source.people)} people")
    reference = source.people[source_person]
    placed = [fit_to_canvas(t, source.width, source.height) for t in targets]
    first = next((f.people[0] for f in placed if f.people), None)
    if first is None:
        return placed
    transform = similarity(reference, first)
    out = []
    for frame in placed:
        if mode == "scale+translate":
            people = [p.mapped(transform) for p in frame.people]
        else:
            people = [per_limb(reference, p, transform) for p in frame.people]
        out.append(PoseFrame(frame.width, frame.height, people, dict(frame.extra)))
    return out
