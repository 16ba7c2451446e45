"""The one batching helper: chunk bounds, per-item seeds, progress over the whole run, broadcasting."""
import torch

from posetransfer.models.batching import chunk_count, chunks


def test_chunks_cover_the_batch_with_item_seeds_and_one_progress_run():
    ticks = []
    parts = list(chunks(5, 2, seed=10, progress=lambda step, total: ticks.append((step, total))))
    assert [(c.start, c.stop, c.seed, len(c)) for c in parts] == [(0, 2, 10, 2), (2, 4, 12, 2), (4, 5, 14, 1)]
    assert chunk_count(5, 2) == 3 and chunk_count(4, 2) == 2 and chunk_count(3, 0) == 3
    for chunk in parts:
        for step in (1, 2, 3):
            chunk.progress(step, 3)
    assert ticks == [(step, 9) for step in range(1, 10)]


def test_pick_broadcasts_one_row_and_passes_none():
    (first, second) = chunks(4, 2)
    per_item, shared = torch.arange(4)[:, None], torch.tensor([[7]])
    assert second.pick(per_item).flatten().tolist() == [2, 3] and per_item[second.items].flatten().tolist() == [2, 3]
    assert second.pick(shared).flatten().tolist() == [7, 7] and first.pick(None) is None
    assert next(chunks(1, 4)).progress is None
