"""Named datasets from local files, with a fixed seeded train/val/test split.

`digits` (scikit-learn's bundled 8x8 digits) needs no files and is the default.
`mnist` and `fashion_mnist` read the original idx `.gz` files, `cifar10` the original
`cifar-10-python.tar.gz`. Nothing is ever downloaded: a missing file is an error that
names the file and where it is looked for.
"""

import dataclasses
import gzip
import os
import pickle
import struct
import tarfile
from pathlib import Path
from typing import Callable, List, Literal, Optional, Union

import numpy as np
import paddle

from ..core.errors import ConfigError, DataError
from ..core.schema import Options, option
from .labels import DataSummary, as_labels, map_labels, squeeze_class_column

FASHION_MNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
# The stored input value that becomes 1.0 before normalisation (the loaders divide by it).
PIXEL_SCALE = {"digits": 16.0, "mnist": 255.0, "fashion_mnist": 255.0, "cifar10": 255.0, "shapes": 1.0}
CIFAR10_FOLDER = "cifar-10-batches-py"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


@dataclasses.dataclass
class DataConfig(Options):
    """Which dataset to use and how to split it (config block `data`)."""

    name: Literal["digits", "mnist", "fashion_mnist", "cifar10", "shapes"] = option(
        "digits", "dataset name; `digits` and `shapes` (synthetic segmentation) are built in, "
                  "the others read local files")
    root: Optional[str] = option(
        None, "folder with the dataset's original files; default: $SLIMKIT_DATA/<name>, "
              "and for fashion_mnist Debian's /usr/share/datasets/fashion-mnist")
    val_fraction: float = option(0.1, "share of the training files held out for validation "
                                      "(sensitivity scans, calibration)", gt=0, lt=1)
    seed: int = option(0, "seed of the train/val (and, for digits, test) split")
    augment: Optional[bool] = option(None, "training augmentation; null = the dataset's default "
                                           "(random crop + flip for cifar10, none otherwise)")
    train_samples: Optional[int] = option(None, "use only this many training samples "
                                                "(a fixed seeded subset), for quick runs", gt=0)
    factory: Optional[str] = option(None, "your own data: `package.module:function` returning (X, y), a "
                                          "paddle.io.Dataset or a dict of splits (docs/own-project.md); "
                                          "`name` is then not used")
    args: dict = option(default_factory=dict, doc="keyword arguments of `factory`")
    num_classes: Optional[int] = option(None, "number of classes of your own data (`factory`, `inputs`, `images`); "
                                              "default: largest label + 1", gt=0)
    inputs: Optional[str] = option(None, "your own inputs as a `.npy` file [N, C, H, W] (numpy.save); without "
                                         "`labels` the original model's outputs are the reference; `name` is then "
                                         "not used")
    labels: Optional[str] = option(None, "labels of `inputs` as a `.npy` file, one per input along the first axis "
                                         "(class indices, masks, targets)")
    images: Optional[str] = option(None, "a folder of images (png, jpg, bmp, ...; sub-folders included) as inputs "
                                         "without labels: the original model's outputs are the reference; `name` "
                                         "is then not used")
    preprocess: Optional[Union[str, Callable]] = option(
        None, "`package.module:function` turning one image (height x width x channels uint8 numpy, RGB) into the "
              "model's input (e.g. [C, H, W] float32); in Python also the function; replaces size/mean/std")
    size: Optional[List[int]] = option(None, "built-in preprocessing of `images`: resize to [height, width] "
                                             "(bilinear); null = keep the files' size", gt=0)
    mean: Optional[List[float]] = option(None, "built-in preprocessing of `images`: subtract this per channel "
                                               "from pixels scaled to [0, 1]")
    std: Optional[List[float]] = option(None, "built-in preprocessing of `images`: then divide by this per "
                                              "channel", gt=0)
    color: Literal["rgb", "gray"] = option("rgb", "channels `images` are read with: rgb (3) or gray (1)")

    def check(self):
        if self.name == "shapes" and self.augment:
            raise ConfigError("augment", "the shapes dataset has per-pixel labels, which crop augmentation "
                                         "would leave behind", "leave augment null or false for shapes")
        sources = [key for key in ("factory", "inputs", "images") if getattr(self, key) is not None]
        if len(sources) > 1:
            raise ConfigError(sources[1], f"`{sources[0]}` and `{sources[1]}` are two sources of data",
                              "keep one of them")
        if self.labels is not None and self.inputs is None:
            raise ConfigError("labels", "labels without `inputs`", "give inputs: x.npy beside labels: y.npy")
        image_steps = [key for key in ("preprocess", "size", "mean", "std") if getattr(self, key) is not None]
        if image_steps and self.images is None:
            raise ConfigError(image_steps[0], "preprocesses `images`, and none are given",
                              "give images: FOLDER, or remove it")
        if self.preprocess is not None and len(image_steps) > 1:
            raise ConfigError(image_steps[1], "the preprocess function replaces the built-in steps",
                              "do the resizing and normalising in the function, or drop `preprocess`")
        if self.size is not None and len(self.size) != 2:
            raise ConfigError("size", f"expected [height, width], got {self.size}")

    def to_dict(self):
        out = super().to_dict()
        if callable(self.preprocess):  # recorded by name: report.json and a resumed run compare it
            out["preprocess"] = f"{self.preprocess.__module__}:{self.preprocess.__qualname__}"
        return out


class ArrayDataset(paddle.io.Dataset):
    """An in-memory dataset (inputs [N, ...] float32) usable with paddle's DataLoader.

    `labels` is None (inputs only), an array with one label per input along its first
    axis (class indices, masks, targets), or a tuple/list/dict of such arrays (several
    targets); see slimkit.data.labels. `batches()` is the fast path the engine uses: whole
    numpy batches with vectorised augmentation instead of one Python call per sample.
    """

    def __init__(self, images, labels=None, augment=None):
        super().__init__()
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self.labels = squeeze_class_column(as_labels(labels))
        self.augment = augment

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index]
        if self.augment:
            image = _augment(image[None], self.augment, np.random)[0]
        if self.labels is None:
            return (image,)
        return image, map_labels(lambda leaf: leaf[index], self.labels)

    def batches(self, batch_size, shuffle=False, seed=0, augment=False, drop_last=False):
        """Yield (images, labels) numpy batches; labels None for inputs only."""
        rng = np.random.RandomState(seed)
        order = rng.permutation(len(self)) if shuffle else np.arange(len(self))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            images = self.images[idx]
            if augment and self.augment:
                images = _augment(images, self.augment, rng)
            yield images, self.take_labels(idx)

    def take_labels(self, index):
        """The labels of the samples `index` (an index array or a slice), the structure kept."""
        return map_labels(lambda leaf: leaf[index], self.labels)

    def rows(self, start, stop):
        """The samples `start` ... `stop - 1` in their order, no copy (a process's share of an evaluation)."""
        return ArrayDataset(self.images[start:stop], self.take_labels(slice(start, stop)), self.augment)

    def subset(self, count, seed=0):
        idx = np.sort(np.random.RandomState(seed).permutation(len(self))[:count])
        return self.take(idx)

    def take(self, indices):
        """The samples `indices`, in that order."""
        return ArrayDataset(self.images[indices], self.take_labels(indices), self.augment)


@dataclasses.dataclass
class DataBundle:
    """The splits of one dataset and what a model needs to know about it."""

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    num_classes: Optional[int]  # None when the labels are not class indices (or there are none)
    input_shape: tuple  # one sample's input shape, e.g. (C, H, W)
    class_names: list
    description: Optional[dict] = None  # what was used, for report.json
    # What the labels are: a class per image, or per pixel ("segmentation"); a task's loss/metric override it.
    task: str = "classification"
    summary: Optional[DataSummary] = None  # what the samples hold (slimkit.data.labels), read before any work
    classes_inferred: bool = False  # num_classes is the largest label + 1, not given

    @property
    def labelled(self):
        """False for inputs only: the original model's outputs are then the reference."""
        if self.summary is not None:
            return self.summary.labels != "none"
        return getattr(self.train, "labels", True) is not None
    task: str = "classification"  # what the labels are: a class per image, or per pixel ("segmentation")
    # How inputs were normalised (built-in datasets), for preprocessing at deployment; None: used as given.
    normalisation: Optional[dict] = None


def load_named(config):
    """The built-in dataset `config.name` (a DataConfig) with its seeded splits; `load_dataset` is the entry point."""
    loader = _LOADERS[config.name]
    train_x, train_y, test_x, test_y, classes = loader(config)
    if test_x is None:
        # digits and shapes have no official test split: hold one out, seeded.
        order = np.random.RandomState(config.seed).permutation(len(train_y))
        n_test = int(round(0.2 * len(order)))
        test_x, test_y = train_x[order[:n_test]], train_y[order[:n_test]]
        train_x, train_y = train_x[order[n_test:]], train_y[order[n_test:]]
    order = np.random.RandomState(config.seed + 1).permutation(len(train_y))
    n_val = max(1, int(round(config.val_fraction * len(order))))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    if config.train_samples is not None:
        train_idx = np.sort(np.random.RandomState(config.seed + 2).permutation(train_idx)[:config.train_samples])

    # Normalise with the training split's own statistics (per channel).
    axes = (0, 2, 3)
    mean = train_x[train_idx].mean(axis=axes, keepdims=True)
    std = train_x[train_idx].std(axis=axes, keepdims=True) + 1e-6

    def norm(x):
        return ((x - mean) / std).astype(np.float32)

    augment = config.augment if config.augment is not None else config.name == "cifar10"
    aug = "crop_flip" if (augment and config.name == "cifar10") else ("crop" if augment else None)
    return DataBundle(
        name=config.name,
        train=ArrayDataset(norm(train_x[train_idx]), train_y[train_idx], aug),
        val=ArrayDataset(norm(train_x[val_idx]), train_y[val_idx]),
        test=ArrayDataset(norm(test_x), test_y),
        num_classes=len(classes),
        input_shape=tuple(train_x.shape[1:]),
        class_names=classes,
        description={"name": config.name, "splits": {"train": len(train_idx), "val": len(val_idx),
                                                     "test": len(test_y)},
                     "num_classes": len(classes), "input_shape": list(train_x.shape[1:]),
                     "normalisation": "per channel, mean and std of the training split",
                     "mean": mean.ravel().tolist(), "std": std.ravel().tolist()},
        task="segmentation" if train_y.ndim == 3 else "classification",
        summary=DataSummary(len(train_idx) + len(val_idx) + len(test_y), "int", tuple(train_y.shape[1:]),
                            list(range(len(classes))), tuple(train_x.shape[1:])),
        normalisation={"inputs": "(x / scale - mean) / std per channel, x as the dataset stores it",
                       "scale": PIXEL_SCALE[config.name], "mean": [float(m) for m in mean.ravel()],
                       "std": [float(d) for d in std.ravel()]},
    )


def _augment(images, kind, rng):
    """Random crop (pad 4 for 32x32, 2 otherwise) and, for `crop_flip`, horizontal flip."""
    n, c, h, w = images.shape
    pad = 4 if h >= 32 else 2
    padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dy = rng.randint(0, 2 * pad + 1, size=n)
    dx = rng.randint(0, 2 * pad + 1, size=n)
    rows = dy[:, None] + np.arange(h)[None]
    cols = dx[:, None] + np.arange(w)[None]
    out = padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    if kind == "crop_flip":
        flip = rng.rand(n) < 0.5
        out[flip] = out[flip][..., ::-1]
    return out


# --- loaders: each returns train_x, train_y, test_x, test_y (uint8/float NCHW), class names ---

def _load_digits(config):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None] / PIXEL_SCALE["digits"]
    return images, bunch.target.astype(np.int64), None, None, [str(i) for i in range(10)]


def _load_shapes(config):
    from .shapes import CLASSES, make_shapes

    images, labels = make_shapes(seed=config.seed)
    return images, labels, None, None, list(CLASSES)


def _dataset_folder(config, default=None, package_hint=None):
    if config.root:
        return Path(config.root).expanduser()
    env = os.environ.get("SLIMKIT_DATA")
    if env:
        return Path(env).expanduser() / config.name
    if default is not None:
        return default
    raise DataError(f"no folder given for dataset '{config.name}'",
                    f"set data.root in the config (or SLIMKIT_DATA to a folder containing '{config.name}/')"
                    + (f"; {package_hint}" if package_hint else ""))


def _load_idx_dataset(config, default=None, package_hint=None):
    folder = _dataset_folder(config, default, package_hint)
    arrays = {}
    for key, filename in IDX_FILES.items():
        path = folder / filename
        if not path.is_file():
            raise DataError(f"{config.name}: missing file {path}",
                            package_hint or f"put the original {filename} in {folder} (data.root)")
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{config.name}: {split} images {images.shape} and labels {labels.shape} do not match",
                            f"replace the files in {folder} with the original idx files")
    classes = FASHION_CLASSES if config.name == "fashion_mnist" else [str(i) for i in range(10)]
    to_float = lambda x: x[:, None].astype(np.float32) / PIXEL_SCALE[config.name]  # noqa: E731
    return (to_float(arrays["train_images"]), arrays["train_labels"].astype(np.int64),
            to_float(arrays["test_images"]), arrays["test_labels"].astype(np.int64), classes)


def _load_mnist(config):
    return _load_idx_dataset(config)


def _load_fashion_mnist(config):
    return _load_idx_dataset(config, FASHION_MNIST_DEBIAN,
                             "install Debian's package: apt-get install dataset-fashion-mnist")


def read_idx(path):
    """Read an idx file (optionally gzipped), the format of MNIST and Fashion-MNIST."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}", "the file is corrupt: replace it with the original") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an idx file of unsigned bytes (bad magic number)",
                        "replace it with the original idx file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header)", "replace it with the original idx file")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path} holds {len(raw) - header} bytes of data, its header says {expected}",
                        "the file is truncated or corrupt: replace it with the original")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_cifar10(config):
    folder = _dataset_folder(config)
    archive, extracted = folder / CIFAR10_ARCHIVE, folder / CIFAR10_FOLDER
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {}
    if archive.is_file():
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for name in names:
                    member = tar.extractfile(f"{CIFAR10_FOLDER}/{name}")
                    batches[name] = _unpickle(member.read(), archive, name)
        except (tarfile.TarError, KeyError, OSError, EOFError) as err:
            raise DataError(f"cannot read {archive}: {err}",
                            "replace it with the original cifar-10-python.tar.gz") from None
    elif extracted.is_dir():
        for name in names:
            path = extracted / name
            if not path.is_file():
                raise DataError(f"cifar10: missing file {path}", f"put the original {CIFAR10_ARCHIVE} in {folder}")
            batches[name] = _unpickle(path.read_bytes(), path, name)
    else:
        raise DataError(f"cifar10: missing file {archive}",
                        f"put the original {CIFAR10_ARCHIVE} (python version) in {folder} (data.root)")

    def stack(keys):
        x = np.concatenate([batches[k][b"data"] for k in keys]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(batches[k][b"labels"]) for k in keys])
        return x.astype(np.float32) / PIXEL_SCALE["cifar10"], y.astype(np.int64)

    train_x, train_y = stack(names[:5])
    test_x, test_y = stack(names[5:])
    return train_x, train_y, test_x, test_y, CIFAR10_CLASSES


def _unpickle(raw, source, name):
    try:
        batch = pickle.loads(raw, encoding="bytes")
        batch[b"data"], batch[b"labels"]
    except Exception as err:  # any unpickling failure means the same thing to the user
        raise DataError(f"cannot read batch {name} of {source}: {err}",
                        "replace it with the original cifar-10-python.tar.gz") from None
    return batch


_LOADERS = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "fashion_mnist": _load_fashion_mnist,
    "cifar10": _load_cifar10,
    "shapes": _load_shapes,
}
