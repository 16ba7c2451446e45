"""The one batching helper of the pipelines: a batch in chunks, each with its items' seeds and its progress offset.

Every sampling pipeline (PCDMs inpaint and refine, SCFM) denoises `chunk_size` items at a time so memory stays
bounded, while results stay those of one item alone: item i of the batch uses noise seed `seed + i` whatever
chunk it lands in, and progress counts steps over the whole run so one bar fills once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Chunk:
    """Items `start` to `stop` (exclusive) of the batch, denoised together."""

    index: int  # which chunk, from 0
    start: int
    stop: int
    seed: int  # noise seed of item `start` (item i of the batch uses the run's seed + i)
    progress: Progress | None  # this chunk's `progress(step, total)`, offset into the whole run

    @property
    def items(self) -> slice:
        return slice(self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start

    def pick(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        """This chunk's rows of a per-item tensor; a batch-1 tensor (one source for every item) is broadcast."""
        if tensor is None:
            return None
        rows = torch.arange(self.start, self.stop).clamp(max=tensor.shape[0] - 1)
        return tensor[rows.to(tensor.device)]


def chunk_count(batch: int, chunk_size: int) -> int:
    return -(-batch // max(1, chunk_size))


def chunks(batch: int, chunk_size: int, seed: int = 0, progress: Progress | None = None) -> Iterator[Chunk]:
    """Split `batch` items into chunks of at most `chunk_size` (at least 1).

    Chunk c reports `progress(c * total + step, chunks * total)`, where `total` is what its denoising loop
    reports (its step count), so the callback sees one run from 0 to chunks x steps.
    """
    size = max(1, chunk_size)
    count = chunk_count(batch, size)
    for index, start in enumerate(range(0, batch, size)):
        offset = None if progress is None else _offset_progress(progress, index, count)
        yield Chunk(index, start, min(start + size, batch), seed + start, offset)


def _offset_progress(progress: Progress, index: int, count: int) -> Progress:
    def offset(step: int, total: int) -> None:
        progress(index * total + step, count * total)
    return offset
