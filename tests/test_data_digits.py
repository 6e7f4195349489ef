"""The built-in default dataset: scikit-learn's bundled digits, no files needed."""

import numpy as np
import paddle

import slimkit


def test_digits_split_sizes_and_shape(digits):
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert len(digits.test) == 359
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10


def test_splits_are_disjoint(digits):
    rows = lambda d: {r.tobytes() for r in d.images.reshape(len(d), -1)}  # noqa: E731
    train, val, test = rows(digits.train), rows(digits.val), rows(digits.test)
    # digits has a handful of duplicate images; the split itself must not reuse samples
    assert len(train & test) < 5 and len(val & test) < 5


def test_works_with_paddle_dataloader(digits):
    loader = paddle.io.DataLoader(digits.test, batch_size=16)
    images, labels = next(iter(loader))
    assert images.shape == [16, 1, 8, 8] and labels.shape == [16]


def test_same_seed_same_split():
    a, b = slimkit.load_dataset(name="digits", seed=1), slimkit.load_dataset(name="digits", seed=1)
    assert np.array_equal(a.test.labels, b.test.labels)
