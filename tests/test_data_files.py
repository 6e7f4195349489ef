"""MNIST and CIFAR-10 loaders on small files written in the published formats; file errors."""

import gzip
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest

import slimkit
from slimkit.core.errors import DataError


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def make_mnist(folder, n_train=120, n_test=30):
    rng = np.random.RandomState(0)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.randint(0, 256, (n_train, 28, 28)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(n_train) % 10)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.randint(0, 256, (n_test, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)


def make_cifar(folder, per_batch=20):
    rng = np.random.RandomState(0)
    with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.randint(0, 256, (per_batch, 3072)).astype(np.uint8),
                     b"labels": list(np.arange(per_batch) % 10)}
            raw = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_mnist_from_idx_files(tmp_path):
    make_mnist(tmp_path)
    data = slimkit.load_dataset(name="mnist", root=str(tmp_path))
    assert len(data.train) + len(data.val) == 120 and len(data.test) == 30
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert sorted(set(data.test.labels.tolist())) == list(range(10))


def test_mnist_found_through_slimkit_data_env(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    make_mnist(tmp_path / "mnist")
    monkeypatch.setenv("SLIMKIT_DATA", str(tmp_path))
    assert len(slimkit.load_dataset(name="mnist").test) == 30


def test_cifar10_from_python_archive(tmp_path):
    make_cifar(tmp_path)
    data = slimkit.load_dataset(name="cifar10", root=str(tmp_path))
    assert len(data.train) + len(data.val) == 100 and len(data.test) == 20
    assert data.input_shape == (3, 32, 32) and data.class_names[0] == "airplane"
    assert data.train.augment == "crop_flip"
    images, labels = next(data.train.batches(8, shuffle=True, augment=True))
    assert images.shape == (8, 3, 32, 32) and labels.shape == (8,)


def test_missing_file_names_the_file(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        slimkit.load_dataset(name="mnist", root=str(tmp_path))


def test_missing_fashion_mnist_names_the_debian_package(tmp_path):
    with pytest.raises(DataError) as err:
        slimkit.load_dataset(name="fashion_mnist", root=str(tmp_path))
    assert "train-images-idx3-ubyte.gz" in str(err.value) and "dataset-fashion-mnist" in str(err.value)


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    make_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="truncated or corrupt"):
        slimkit.load_dataset(name="mnist", root=str(tmp_path))


def test_not_an_idx_file(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"hello world"))
    with pytest.raises(DataError, match="bad magic"):
        slimkit.load_dataset(name="mnist", root=str(tmp_path))


def test_corrupt_cifar_archive(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        slimkit.load_dataset(name="cifar10", root=str(tmp_path))


def test_cifar_without_folder_says_where_to_put_it(monkeypatch):
    monkeypatch.delenv("SLIMKIT_DATA", raising=False)
    with pytest.raises(DataError, match="data.root"):
        slimkit.load_dataset(name="cifar10")
