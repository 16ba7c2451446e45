"""SCFM pipeline input checks: batch broadcasting and source poses on their image's canvas."""
import numpy as np
import pytest
import torch

from posetransfer.models.scfm.pipeline import PoseInput, check_batches


def _pose(height, width, x=10.0):
    xy = np.full((18, 2), -1.0)
    xy[0] = [x, 20.0]
    return PoseInput(xy, height, width)


def test_batch_one_broadcasts_and_other_sizes_must_match():
    images = torch.rand(1, 3, 40, 30)
    out_images, sources, targets = check_batches(images, [_pose(40, 30)], [_pose(64, 64)] * 3)
    assert out_images.shape[0] == 3 and len(sources) == 3 and len(targets) == 3
    with pytest.raises(ValueError, match="Batch sizes"):
        check_batches(torch.rand(2, 3, 40, 30), [_pose(40, 30)], [_pose(64, 64)] * 3)


def test_source_pose_from_another_canvas_is_rescaled_to_the_image():
    _, (source,), (target,) = check_batches(torch.rand(1, 3, 40, 30), [_pose(80, 60)], [_pose(64, 64)])
    assert (source.height, source.width) == (40, 30)
    assert source.keypoints[0].tolist() == [5.0, 10.0] and (source.keypoints[1:] == -1).all()
    assert (target.height, target.width) == (64, 64)  # target poses keep their own canvas
