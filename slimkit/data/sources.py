"""The user's own data as a DataBundle: numpy arrays, paddle.io.Dataset objects, or a factory.

    to_bundle((X, y))                                   # one pool, split seeded into train/val/test
    to_bundle({"train": (X, y), "test": (Xt, yt)})      # splits given; a missing val is held out of train
    to_bundle(my_dataset, num_classes=10)               # a paddle.io.Dataset, split the same way
    to_bundle({"train": train_ds, "val": val_ds, "test": test_ds})

Arrays and samples are used as given (cast to float32 images and int64 labels): normalise
them the way the model expects before passing them. What was used (where each split came
from, its size, the classes, the input shape) is kept in `DataBundle.description` and
written to report.json.
"""

import zlib

import numpy as np
import paddle

from .datasets import ArrayDataset, DataBundle, DataConfig, load_named
from ..core.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def load_dataset(config=None, **kwargs):
    """Load a dataset by `DataConfig` (or its fields as keyword arguments): a built-in one, or `data.factory`'s."""
    config = config if isinstance(config, DataConfig) else DataConfig(**{**(config or {}), **kwargs})
    return from_factory(config) if config.factory else load_named(config)


def to_bundle(data, num_classes=None, input_shape=None, val_fraction=0.1, test_fraction=0.2, seed=0):
    """A DataBundle from a dataset name, DataConfig, arrays `(X, y)`, a paddle Dataset or a dict of splits."""
    if isinstance(data, DataBundle):
        return data
    if isinstance(data, str):
        return load_dataset(DataConfig(name=data))
    if isinstance(data, DataConfig):
        return load_dataset(data)
    if isinstance(data, dict) and data and set(data) <= set(SPLITS):
        given = {split: _as_dataset(part, f"data[{split!r}]") for split, part in data.items()}
    elif isinstance(data, dict):
        return load_dataset(DataConfig.from_dict(data, "data"))
    elif data is None:
        raise ConfigError("data", "no data given",
                          "pass data=(X, y), a paddle.io.Dataset, a dict of splits or a dataset name "
                          "such as 'digits' (docs/own-project.md)")
    else:
        given = {"train": _as_dataset(data, "data")}
    if "train" not in given:
        raise ConfigError("data", f"splits {sorted(given)} have no 'train'", "add data['train']")
    splits, origin = _fill_splits(given, val_fraction, test_fraction, seed)
    return _bundle(splits, origin, num_classes, input_shape)


def _as_dataset(part, path):
    """An ArrayDataset for `(X, y)`, a label-normalising view for a paddle Dataset."""
    if isinstance(part, (tuple, list)) and len(part) == 2:
        images, labels = (np.asarray(a) for a in part)
        if len(images) != len(labels):
            raise DataError(f"{path}: {len(images)} inputs but {len(labels)} labels",
                            "give one label per input: (X, y) with len(X) == len(y)")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{path}: labels must be a 1-D array of class indices, got {labels.dtype} {labels.shape}",
                            "pass y as integers 0..num_classes-1, e.g. y.astype('int64')")
        return ArrayDataset(images, labels)
    if isinstance(part, paddle.io.Dataset):
        return part if isinstance(part, ArrayDataset) else SampleDataset(part)
    raise ConfigError(path, f"expected (X, y) arrays or a paddle.io.Dataset, got {type(part).__name__}",
                      "pass numpy arrays as a tuple (X, y), or a paddle.io.Dataset yielding (image, label)")


class SampleDataset(paddle.io.Dataset):
    """A user's Dataset whose samples come out as (float32 array, int64 scalar label)."""

    def __init__(self, dataset, indices=None):
        super().__init__()
        self.dataset = dataset.dataset if isinstance(dataset, SampleDataset) else dataset
        self.indices = indices

    def __len__(self):
        return len(self.indices) if self.indices is not None else len(self.dataset)

    def __getitem__(self, index):
        sample = self.dataset[int(self.indices[index]) if self.indices is not None else index]
        image, label = sample[0], sample[1]
        image = image.numpy() if isinstance(image, paddle.Tensor) else np.asarray(image)
        label = label.numpy() if isinstance(label, paddle.Tensor) else np.asarray(label)
        return image.astype(np.float32), np.int64(label.reshape(-1)[0])

    def subset(self, indices):
        return SampleDataset(self, indices if self.indices is None else np.asarray(self.indices)[indices])


def _take(dataset, indices):
    if isinstance(dataset, ArrayDataset):
        return ArrayDataset(dataset.images[indices], dataset.labels[indices], dataset.augment)
    return dataset.subset(indices)


def _fill_splits(given, val_fraction, test_fraction, seed):
    """Hold the missing test and val splits out of train (seeded); say where each split came from."""
    missing = [s for s in ("test", "val") if s not in given]
    origin = {s: "given" for s in given}
    splits = dict(given)
    if missing:
        pool = given["train"]
        order = np.random.RandomState(seed).permutation(len(pool))
        start = 0
        for split in missing:
            fraction = test_fraction if split == "test" else val_fraction
            count = max(1, int(round(fraction * len(pool))))
            splits[split] = _take(pool, np.sort(order[start:start + count]))
            origin[split] = f"{fraction:g} of the given train data (seed {seed})"
            start += count
        if start >= len(pool):
            raise DataError(f"data: {len(pool)} samples are too few to hold out {', '.join(missing)}",
                            "give more samples, or pass the splits as a dict {'train': ..., 'val': ..., 'test': ...}")
        splits["train"] = _take(pool, np.sort(order[start:]))
        origin["train"] = "the given train data less the held-out splits" if origin["train"] == "given" \
            else origin["train"]
    return splits, origin


def _bundle(splits, origin, num_classes, input_shape):
    train = splits["train"]
    shape = tuple(input_shape) if input_shape else _sample_shape(train)
    classes = num_classes or _count_classes(splits)
    description = {"source": "arrays" if isinstance(train, ArrayDataset) else type(train.dataset).__name__,
                   "splits": {s: {"samples": len(splits[s]), "from": origin[s]} for s in SPLITS},
                   "num_classes": classes, "input_shape": list(shape),
                   "normalisation": "none (used as given)"}
    return DataBundle(name="own data", train=train, val=splits["val"], test=splits["test"], num_classes=classes,
                      input_shape=shape, class_names=[str(i) for i in range(classes)], description=description)


def _sample_shape(dataset):
    if isinstance(dataset, ArrayDataset):
        return tuple(dataset.images.shape[1:])
    return tuple(dataset[0][0].shape)


def _count_classes(splits):
    """One more than the largest label of any split (read from the arrays, or from every sample)."""
    def largest(dataset):
        if isinstance(dataset, ArrayDataset):
            return int(dataset.labels.max())
        own = getattr(dataset.dataset, "num_classes", None)
        if isinstance(own, int):
            return own - 1
        return max(int(dataset[i][1]) for i in range(len(dataset)))

    return 1 + max(largest(splits[s]) for s in SPLITS)


def data_identity(bundle):
    """`name#checksum` of the samples of every split, so a resumed run notices other data."""
    checksum = 0
    for split in SPLITS:
        dataset = getattr(bundle, split)
        if isinstance(dataset, ArrayDataset):
            for array in (dataset.images, dataset.labels):
                checksum = zlib.crc32(np.ascontiguousarray(array).tobytes(), checksum)
        else:  # reading every sample of a user's Dataset could be slow: its size stands in
            checksum = zlib.crc32(f"{split}:{len(dataset)}".encode(), checksum)
    return f"{bundle.name}#{checksum:08x}"


def from_factory(config):
    """Call the `data.factory` function of a config and turn what it returns into a DataBundle."""
    from ..models.zoo import import_factory

    factory = import_factory(config.factory, "data.factory")
    try:
        made = factory(**config.args)
    except TypeError as err:
        raise ConfigError("data.args", f"cannot call {config.factory} with {config.args}: {err}",
                          "check data.args against the function's parameters") from None
    if isinstance(made, (str, DataConfig)) or made is None:
        raise ConfigError("data.factory", f"{config.factory} returned {made!r}",
                          "return (X, y), a paddle.io.Dataset, a dict of splits or a DataBundle")
    bundle = to_bundle(made, num_classes=config.num_classes, val_fraction=config.val_fraction, seed=config.seed)
    bundle.name = config.factory
    if bundle.description is not None:
        bundle.description = {"factory": config.factory, "args": config.args, **bundle.description}
    return bundle
