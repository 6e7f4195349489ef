"""A synthetic segmentation dataset: squares, discs and triangles on a noisy background, seeded.

Built in as the dataset `shapes` (no files): 600 single-channel 32x32 images, each with one
to three shapes; the label of every pixel is its shape's class (0 = background). Later
shapes cover earlier ones, so the labels are what the image shows.
"""

import numpy as np

CLASSES = ["background", "square", "disc", "triangle"]
SIZE = 32
COUNT = 600


def make_shapes(count=COUNT, size=SIZE, seed=0):
    """(images [N, 1, size, size] float32 in [0, 1], labels [N, size, size] int64)."""
    rng = np.random.RandomState(seed)
    rows, cols = np.mgrid[0:size, 0:size]
    images = rng.uniform(0.0, 0.35, size=(count, size, size)).astype(np.float32)
    labels = np.zeros((count, size, size), dtype=np.int64)
    for i in range(count):
        for _ in range(rng.randint(1, 4)):
            kind = rng.randint(1, len(CLASSES))
            radius = rng.randint(4, 8)
            cy, cx = rng.randint(radius, size - radius, size=2)
            mask = _shape_mask(kind, rows - cy, cols - cx, radius)
            images[i][mask] = rng.uniform(0.6, 1.0)
            labels[i][mask] = kind
    return images[:, None], labels


def _shape_mask(kind, dy, dx, radius):
    if kind == 1:  # square
        return (np.abs(dy) < radius) & (np.abs(dx) < radius)
    if kind == 2:  # disc
        return dy ** 2 + dx ** 2 < radius ** 2
    # triangle: apex up, base at dy = radius - 1
    return (dy < radius) & (dy >= -radius) & (np.abs(dx) * 2 <= dy + radius)
