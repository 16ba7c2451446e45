"""Seeded random resize and warp cases shared by the OpenCV exactness tests (and by the script that recorded
the OpenCV 4.10 warp digests in test_imageops.py)."""
import numpy as np


def resize_cases(count=60, seed=11):
    """(image, height, width): random sizes from 1 px to a few hundred, up and down, 1 and 3 channels."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        src_h, src_w = (int(v) for v in rng.integers(1, 260, 2))
        dst_h, dst_w = (int(v) for v in rng.integers(1, 330, 2))
        channels = 1 if i % 7 == 0 else 3
        cases.append((rng.integers(0, 256, (src_h, src_w, channels), dtype=np.uint8), dst_h, dst_w))
    # exact halving (OpenCV switches to its area path there), the 1024 -> 640 letterbox, 1 px strips
    for src, dst in (((256, 320), (128, 160)), ((1024, 1024), (640, 640)), ((1, 900), (1, 640)), ((700, 1), (640, 1))):
        cases.append((rng.integers(0, 256, (*src, 3), dtype=np.uint8), *dst))
    return cases


def warp_cases(count=50, seed=12):
    """(image, 2x3 matrix, height, width): axis-aligned maps with random scales (0.1-5x per axis) and offsets
    (+-300 px, so borders are crossed), random output sizes and the pose input size 384 x 288."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        src_h, src_w = (int(v) for v in rng.integers(2, 300, 2))
        image = rng.integers(0, 256, (src_h, src_w, 3), dtype=np.uint8)
        sx = rng.uniform(0.1, 5)
        sy = sx * rng.uniform(0.5, 2)
        matrix = np.array([[sx, 0, rng.uniform(-300, 300)], [0, sy, rng.uniform(-300, 300)]])
        height, width = (384, 288) if i % 4 == 0 else (int(v) for v in rng.integers(1, 200, 2))
        cases.append((image, matrix, height, width))
    return cases
