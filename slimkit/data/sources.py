"""The user's own data as a DataBundle: numpy arrays, paddle.io.Dataset objects, files, or a factory.

    to_bundle((X, y))                                   # one pool, split seeded into train/val/test
    to_bundle((X, masks), task={"loss": "segmentation"})   # labels of any shape the task's loss takes
    to_bundle(X)                                        # inputs only: the original model is the reference
    to_bundle({"train": (X, y), "test": (Xt, yt)})      # splits given; a missing val is held out of train
    to_bundle(my_dataset, num_classes=10)               # a paddle.io.Dataset, split the same way
    to_bundle({"train": train_ds, "val": val_ds, "test": test_ds})

Arrays and samples are used as given (cast to float32 inputs; labels as slimkit.data.labels
says): normalise them the way the model expects before passing them. Every sample is read
once before any work: NaN or inf values, inputs of different shapes and mixed labels are
refused with one message. What was used (where each split came from, its size, the classes,
the input shape) is kept in `DataBundle.description` and written to report.json.
"""

import zlib

import numpy as np
import paddle

from ..core.errors import ConfigError, DataError
from .datasets import ArrayDataset, DataBundle, DataConfig, load_named
from .labels import as_labels, leaves, map_labels, merged, squeeze_class_column, summarize_arrays, \
    summarize_samples

SPLITS = ("train", "val", "test")
BUILT_IN_TASKS = ("classification", "segmentation")


def load_dataset(config=None, task=None, **kwargs):
    """Load a dataset by `DataConfig` (or its fields as keyword arguments): a built-in one, files, or `factory`'s.

    `task` (a TaskConfig or its fields) tells what the labels are for (see `to_bundle`).
    """
    config = config if isinstance(config, DataConfig) else DataConfig(**{**(config or {}), **kwargs})
    if config.factory:
        return from_factory(config, task)
    if config.inputs or config.images:
        return _from_files(config, task)
    return load_named(config)


def to_bundle(data, num_classes=None, input_shape=None, val_fraction=0.1, test_fraction=0.2, seed=0, task=None):
    """A DataBundle from a dataset name, DataConfig, arrays `(X, y)` or `X`, a paddle Dataset or a dict of splits.

    `task` (a TaskConfig or its fields, optional) says what the labels are for: with a
    segmentation loss or metric the labels are masks, `ignore_index` is not a class, and the
    bundle's task is segmentation. The labels' shape alone never decides it.
    """
    if isinstance(data, DataBundle):
        return data
    if isinstance(data, str):
        return load_dataset(DataConfig(name=data), task)
    if isinstance(data, DataConfig):
        return load_dataset(data, task)
    if isinstance(data, dict) and data and set(data) <= set(SPLITS):
        given = {split: _as_dataset(part, f"data[{split!r}]") for split, part in data.items()}
    elif isinstance(data, dict):
        return load_dataset(DataConfig.from_dict(data, "data"), task)
    elif data is None:
        raise ConfigError("data", "no data given",
                          "pass data=(X, y), inputs X alone, a paddle.io.Dataset, a dict of splits or a dataset name "
                          "such as 'digits' (docs/own-project.md)")
    else:
        given = {"train": _as_dataset(data, "data")}
    if "train" not in given:
        raise ConfigError("data", f"splits {sorted(given)} have no 'train'", "add data['train']")
    summary = merged([_summarize(part, path) for path, part in _paths(given).items()], list(_paths(given)))
    splits, origin = _fill_splits(given, val_fraction, test_fraction, seed)
    return _bundle(splits, origin, summary, num_classes, input_shape, task)


def _paths(given):
    return {("data" if list(given) == ["train"] else f"data[{split!r}]"): part for split, part in given.items()}


def _summarize(part, path):
    if isinstance(part, ArrayDataset):
        return summarize_arrays(part.images, part.labels, path)
    return summarize_samples(part, path)


def _as_dataset(part, path):
    """An ArrayDataset for `(X, y)` or `X`, a sample-normalising view for a paddle Dataset."""
    if isinstance(part, (tuple, list)) and len(part) == 2:
        images, labels = np.asarray(part[0]), as_labels(part[1])
        counts = {len(leaf) if leaf.ndim else 0 for leaf in leaves(labels)}
        if labels is not None and counts != {len(images)}:
            raise DataError(f"{path}: {len(images)} inputs but {sorted(counts)[0]} labels",
                            "give one label per input: (X, y) with len(X) == len(y) (every array of y, for "
                            "several targets)")
        return ArrayDataset(images, labels)
    if isinstance(part, np.ndarray):
        return ArrayDataset(part)  # inputs only
    if isinstance(part, paddle.io.Dataset):
        return part if isinstance(part, ArrayDataset) else SampleDataset(part)
    raise ConfigError(path, f"expected (X, y) arrays, inputs X, or a paddle.io.Dataset, got {type(part).__name__}",
                      "pass numpy arrays as a tuple (X, y) or X alone, or a paddle.io.Dataset yielding (image, label) "
                      "or images alone")


class SampleDataset(paddle.io.Dataset):
    """A user's Dataset whose samples come out as (float32 array,) or (float32 array, labels as numpy).

    A sample is an input alone (an array or tensor, or a 1-tuple), `(input, label)` with a
    label of any shape or structure, or `(input, target1, target2, ...)` (several targets,
    labels a tuple).
    """

    def __init__(self, dataset, indices=None):
        super().__init__()
        self.dataset = dataset.dataset if isinstance(dataset, SampleDataset) else dataset
        self.indices = indices

    def __len__(self):
        return len(self.indices) if self.indices is not None else len(self.dataset)

    def sample(self, index):
        """(input as float32 numpy, labels as numpy or None) of sample `index`."""
        sample = self.dataset[int(self.indices[index]) if self.indices is not None else index]
        if isinstance(sample, dict):
            raise DataError(f"the samples of {type(self.dataset).__name__} are dicts",
                            "yield (image, label) tuples, or the image alone")
        parts = list(sample) if isinstance(sample, (tuple, list)) else [sample]
        image = parts[0].numpy() if isinstance(parts[0], paddle.Tensor) else np.asarray(parts[0])
        label = None if len(parts) == 1 else parts[1] if len(parts) == 2 else tuple(parts[1:])
        return image.astype(np.float32), squeeze_class_column(as_labels(label))

    def __getitem__(self, index):
        image, label = self.sample(index)
        return (image,) if label is None else (image, label)

    def subset(self, indices):
        return SampleDataset(self, indices if self.indices is None else np.asarray(self.indices)[indices])


def _take(dataset, indices):
    return dataset.take(indices) if isinstance(dataset, ArrayDataset) else dataset.subset(indices)


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


def task_name(task, default="classification"):
    """The built-in task a TaskConfig (or its fields, or None) names by its loss or metric, else `default`."""
    names = [_field(task, key) for key in ("metric", "loss")]
    return next((n for n in names if isinstance(n, str) and n in BUILT_IN_TASKS), default)


def _field(task, key, default=None):
    if task is None:
        return default
    return task.get(key, default) if isinstance(task, dict) else getattr(task, key, default)


def _bundle(splits, origin, summary, num_classes, input_shape, task):
    train = splits["train"]
    shape = tuple(input_shape) if input_shape else summary.input_shape
    name = task_name(task)
    ignore = _field(task, "ignore_index", 255) if name == "segmentation" else None
    classes = num_classes or summary.classes(ignore)
    labels = {"none": "none: the original model's outputs are the reference", "structured": "several targets"}
    description = {"source": "arrays" if isinstance(train, ArrayDataset) else type(train.dataset).__name__,
                   "splits": {s: {"samples": len(splits[s]), "from": origin[s]} for s in SPLITS},
                   "num_classes": classes, "input_shape": list(shape),
                   "labels": labels.get(summary.labels, f"{summary.labels} {list(summary.label_shape or [])} "
                                                         "per sample"),
                   "normalisation": "none (used as given)"}
    return DataBundle(name="own data", train=train, val=splits["val"], test=splits["test"], num_classes=classes,
                      input_shape=shape, class_names=[str(i) for i in range(classes or 0)], description=description,
                      task=name, summary=summary, classes_inferred=num_classes is None and classes is not None)


def data_identity(bundle):
    """`name#checksum` of the samples of every split, so a resumed run notices other data."""
    checksum = 0
    for split in SPLITS:
        dataset = getattr(bundle, split)
        if isinstance(dataset, ArrayDataset):
            for array in (dataset.images, *leaves(dataset.labels)):
                checksum = zlib.crc32(np.ascontiguousarray(array).tobytes(), checksum)
        else:  # reading every sample of a user's Dataset could be slow: its size stands in
            checksum = zlib.crc32(f"{split}:{len(dataset)}".encode(), checksum)
    return f"{bundle.name}#{checksum:08x}"


def first_samples(dataset, count=2):
    """(inputs, labels or None) numpy of the first `count` samples of a split (labels batched like the engine's)."""
    if isinstance(dataset, ArrayDataset):
        return next(dataset.batches(count))
    loader = paddle.io.DataLoader(dataset, batch_size=count)
    batch = next(iter(loader))
    parts = list(batch) if isinstance(batch, (list, tuple)) else [batch]
    labels = None if len(parts) == 1 else parts[1] if len(parts) == 2 else parts[1:]
    return parts[0].numpy(), map_labels(lambda t: t.numpy() if isinstance(t, paddle.Tensor) else t, labels)


def from_factory(config, task=None):
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
                          "return (X, y), inputs X, a paddle.io.Dataset, a dict of splits or a DataBundle")
    bundle = to_bundle(made, num_classes=config.num_classes, val_fraction=config.val_fraction, seed=config.seed,
                       task=task)
    bundle.name = config.factory
    if bundle.description is not None:
        bundle.description = {"factory": config.factory, "args": config.args, **bundle.description}
    return bundle


def _from_files(config, task):
    """The bundle of `data.inputs` (+ `labels`) `.npy` files or a `data.images` folder."""
    from .images import load_arrays, load_images

    if config.images:
        (inputs, described), labels = load_images(config), None
    else:
        inputs, labels, described = load_arrays(config)
    bundle = to_bundle(inputs if labels is None else (inputs, labels), num_classes=config.num_classes,
                       val_fraction=config.val_fraction, seed=config.seed, task=task)
    bundle.name = str(config.images or config.inputs)
    bundle.description = {**bundle.description, **described, "source": "images" if config.images else "npy files"}
    return bundle
