"""Labels of any shape, and what a dataset holds, read once before any work.

A label is whatever the task's loss takes: a class index, a mask of class indices per
pixel, a float target, several targets (a tuple or list) or a dict of them; or there is
none (inputs only). Labels are kept as given, with numpy leaves: integers become int64,
floats float32, and an integer label of shape (1,) per sample (as paddle.vision's datasets
give) becomes a scalar. `summarize` reads a dataset once: how many samples hold NaN or inf
(inputs or float labels), the input shapes, and the labels' kind, shape and distinct values,
so bad data is refused with one message before training instead of failing inside it.
"""

import dataclasses
from typing import Optional

import numpy as np
import paddle

from ..core.errors import DataError

MAX_VALUES = 65536  # distinct integer labels listed; more is not a class index (num_classes stays unknown)
SHOWN = 5  # sample indices named in a message


# --- label structures: a leaf array, a tuple/list of them, a dict of them, or None -------------

def as_labels(value):
    """`value` (numpy, tensor, number, or a tuple/list/dict of them) with numpy leaves in slimkit's dtypes."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {key: as_labels(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)) and not all(isinstance(v, (int, float, np.number)) for v in value):
        return type(value)(as_labels(v) for v in value)
    array = value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    if array.dtype == bool:
        return array
    raise DataError(f"labels of type {array.dtype} cannot be batched",
                    "give numbers: class indices as integers, targets as floats (strings: map them to indices)")


def leaves(labels):
    """The arrays of a label structure, in order."""
    if labels is None:
        return []
    if isinstance(labels, dict):
        return [leaf for v in labels.values() for leaf in leaves(v)]
    if isinstance(labels, (list, tuple)):
        return [leaf for v in labels for leaf in leaves(v)]
    return [labels]


def map_labels(fn, labels):
    """`fn` applied to every leaf, the structure kept."""
    if labels is None:
        return None
    if isinstance(labels, dict):
        return {key: map_labels(fn, v) for key, v in labels.items()}
    if isinstance(labels, (list, tuple)):
        return type(labels)(map_labels(fn, v) for v in labels)
    return fn(labels)


def squeeze_class_column(labels):
    """Integer labels of shape (1,) per sample become one index per sample: [N, 1] -> [N], (1,) -> ()."""
    def squeeze(leaf):
        if np.issubdtype(leaf.dtype, np.integer) and leaf.shape[-1:] == (1,) and leaf.ndim in (1, 2):
            return leaf.reshape(leaf.shape[:-1])
        return leaf
    return map_labels(squeeze, labels)


def first_batch_count(labels):
    """Samples in a batch of labels: the first axis of its first leaf (0 for none)."""
    found = leaves(labels)
    return int(found[0].shape[0]) if found else 0


# --- what a dataset holds -------------------------------------------------------------------

@dataclasses.dataclass
class DataSummary:
    """What the samples of one dataset (or of all splits) hold."""

    samples: int
    labels: str                          # "none", "int", "float" or "structured"
    label_shape: Optional[tuple] = None  # one sample's label shape ("int"/"float"); None when it varies
    values: Optional[list] = None        # the distinct integer labels, sorted ("int"; None: too many)
    input_shape: Optional[tuple] = None  # one sample's input shape

    def classes(self, ignore=None):
        """1 + the largest integer label other than `ignore`, or None when the labels are not class indices."""
        if self.values is None:
            return None
        used = [v for v in self.values if v != ignore]
        return 1 + max(used) if used else None


def kind_of(labels):
    """"none", "int", "float" or "structured" for one sample's (or one array's) labels."""
    if labels is None:
        return "none"
    if isinstance(labels, (dict, list, tuple)):
        return "structured"
    return "int" if np.issubdtype(labels.dtype, np.integer) else "float"


def summarize_arrays(images, labels, path):
    """The summary of in-memory arrays; DataError for NaN/inf inputs or float labels."""
    n = len(images)
    flat = np.asarray(images).reshape(n, -1)
    bad = ~np.isfinite(flat).all(axis=1) if np.issubdtype(flat.dtype, np.floating) else np.zeros(n, bool)
    for leaf in leaves(labels):
        if np.issubdtype(leaf.dtype, np.floating):
            bad |= ~np.isfinite(leaf.reshape(n, -1)).all(axis=1)
    _refuse_nonfinite(np.flatnonzero(bad).tolist(), n, path)
    kind = kind_of(labels)
    summary = DataSummary(n, kind, input_shape=tuple(np.shape(images)[1:]))
    if kind in ("int", "float"):
        summary.label_shape = tuple(labels.shape[1:])
    if kind == "int":
        distinct = np.unique(labels)
        summary.values = distinct.tolist() if len(distinct) <= MAX_VALUES else None
    return summary


def summarize_samples(dataset, path):
    """The summary of a Dataset of (input, label) samples, read one by one; DataError for NaN/inf or mixed shapes."""
    bad, shapes, kinds, label_shapes, values = [], {}, set(), set(), set()
    for i in range(len(dataset)):
        image, label = dataset.sample(i)
        shapes.setdefault(image.shape, i)
        if not _finite(image) or not all(_finite(leaf) for leaf in leaves(label)):
            bad.append(i)
        kind = kind_of(label)
        kinds.add(kind)
        if kind in ("int", "float"):
            label_shapes.add(label.shape)
        if kind == "int" and values is not None:
            values.update(np.unique(label).tolist())
            values = values if len(values) <= MAX_VALUES else None
    _refuse_nonfinite(bad, len(dataset), path)
    if len(shapes) > 1:
        first = sorted(shapes.items(), key=lambda item: item[1])[:3]
        raise DataError(f"{path}: the samples have {len(shapes)} different input shapes ("
                        + ", ".join(f"{list(s)} at sample {i}" for s, i in first) + ")",
                        "batches need one shape: resize or pad the inputs in the Dataset's __getitem__")
    if len(kinds) > 1:
        raise DataError(f"{path}: some samples have labels and some do not, or labels of different kinds "
                        f"({', '.join(sorted(kinds))})", "give every sample the same kind of label")
    kind = kinds.pop() if kinds else "none"
    summary = DataSummary(len(dataset), kind, input_shape=next(iter(shapes), None))
    if kind in ("int", "float"):
        summary.label_shape = label_shapes.pop() if len(label_shapes) == 1 else None
    if kind == "int" and values is not None:
        summary.values = sorted(values)
    return summary


def merged(summaries, paths):
    """One summary of several splits' summaries (given as {path: summary}); DataError when they disagree."""
    items = list(zip(paths, summaries))
    kinds = {s.labels for _, s in items}
    if len(kinds) > 1:
        described = ", ".join(f"{p}: {s.labels}" for p, s in items)
        raise DataError(f"the splits hold different kinds of labels ({described})",
                        "give every split labels of the same kind (or none to all)")
    shapes = {s.input_shape for _, s in items}
    if len(shapes) > 1:
        raise DataError("the splits hold inputs of different shapes ("
                        + ", ".join(f"{p}: {list(s.input_shape or [])}" for p, s in items) + ")",
                        "give every split inputs of one shape")
    first = items[0][1]
    label_shapes = {s.label_shape for _, s in items}
    values = None if any(s.values is None for _, s in items) else sorted({v for _, s in items for v in s.values})
    return DataSummary(sum(s.samples for _, s in items), first.labels,
                       label_shapes.pop() if len(label_shapes) == 1 else None,
                       values if first.labels == "int" else None, first.input_shape)


def _finite(array):
    return not np.issubdtype(array.dtype, np.floating) or bool(np.isfinite(array).all())


def _refuse_nonfinite(indices, total, path):
    if not indices:
        return
    more = f", ... ({len(indices) - SHOWN} more)" if len(indices) > SHOWN else ""
    which = "sample" if len(indices) == 1 else "samples"
    raise DataError(f"{path}: {len(indices)} of {total} samples hold NaN or inf values ({which} "
                    f"{', '.join(map(str, indices[:SHOWN]))}{more})",
                    "fix or drop them before passing the data (np.isfinite(X).reshape(len(X), -1).all(axis=1) "
                    "finds them in arrays); nothing was trained")
