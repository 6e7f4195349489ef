"""The Fashion-MNIST loader on Debian's real files (package dataset-fashion-mnist)."""

import numpy as np
import pytest

import slimkit
from slimkit.data.datasets import FASHION_MNIST_DEBIAN, read_idx


def test_debian_files_are_installed():
    assert (FASHION_MNIST_DEBIAN / "train-images-idx3-ubyte.gz").is_file(), \
        "install the test data: apt-get install dataset-fashion-mnist"


@pytest.fixture(scope="module")
def fashion():
    return slimkit.load_dataset(name="fashion_mnist")


def test_full_sizes_and_classes(fashion):
    assert len(fashion.train) + len(fashion.val) == 60000
    assert len(fashion.val) == 6000
    assert len(fashion.test) == 10000
    assert fashion.num_classes == 10 and fashion.class_names[0] == "T-shirt/top"
    assert fashion.input_shape == (1, 28, 28)
    assert fashion.train.images.shape[1:] == (1, 28, 28)


def test_labels_are_balanced_like_the_original(fashion):
    # The original test set has exactly 1000 images of each class.
    assert np.bincount(fashion.test.labels, minlength=10).tolist() == [1000] * 10
    raw = read_idx(FASHION_MNIST_DEBIAN / "train-labels-idx1-ubyte.gz")
    assert np.bincount(raw, minlength=10).tolist() == [6000] * 10


def test_normalised_with_train_statistics(fashion):
    assert abs(float(fashion.train.images.mean())) < 1e-3
    assert abs(float(fashion.train.images.std()) - 1.0) < 1e-2


def test_split_is_seeded_and_disjoint():
    a = slimkit.load_dataset(name="fashion_mnist", train_samples=500, seed=3)
    b = slimkit.load_dataset(name="fashion_mnist", train_samples=500, seed=3)
    c = slimkit.load_dataset(name="fashion_mnist", train_samples=500, seed=4)
    assert len(a.train) == 500
    assert np.array_equal(a.train.labels, b.train.labels) and np.array_equal(a.val.labels, b.val.labels)
    assert not np.array_equal(a.val.labels, c.val.labels)
