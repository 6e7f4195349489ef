"""Metrics as accumulators over numpy batches: `update(outputs, labels)` per batch, `result()` per split.

Numpy, not tensors, so the eager model and an exported one (Paddle Inference) are measured
by the same code. An accumulator's state is a set of sums, named in its `additive`
attributes, so the shares of a split evaluated by several processes add up to the
split's result (`counts`, `add_counts`).
"""

import numpy as np

from ..core.errors import ConfigError, ModelError


def counts(metric):
    """The additive state of an accumulator (its `additive` attributes) as JSON-able values."""
    names = getattr(metric, "additive", None)
    if names is None:
        raise ConfigError("task.metric", f"{type(metric).__name__} declares no `additive` attributes, so the shares "
                                         "of a data-parallel evaluation cannot be added up",
                          "give the class `additive = (...)`: the names of its attributes that are sums "
                          "(numbers, numpy arrays or dicts of numbers)")
    return {name: _plain(getattr(metric, name)) for name in names}


def add_counts(metric, state):
    """Add `state` (from `counts` of another share) to the accumulator `metric`, in place."""
    for name, value in state.items():
        setattr(metric, name, _added(getattr(metric, name), value))
    return metric


def _plain(value):
    if isinstance(value, np.ndarray):
        return {"array": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value.item() if isinstance(value, np.generic) else value


def _added(current, value):
    if isinstance(current, np.ndarray):
        return current + np.asarray(value["array"], dtype=value["dtype"]).reshape(current.shape)
    if isinstance(current, dict):
        merged = dict(current)
        for key, v in value.items():
            merged[key] = _added(merged[key], v) if key in merged else v
        return merged
    return current + value


def topk_hits(logits, labels, k):
    """(top-1 hits, top-k hits) of numpy `logits` [N, classes] against integer `labels` [N]."""
    topk = np.argsort(-np.asarray(logits), axis=1, kind="stable")[:, :k]
    y = np.asarray(labels).reshape(-1, 1)
    return int((topk[:, :1] == y).sum()), int((topk == y).any(axis=1).sum())


class TopK:
    """Top-1 and top-5 accuracy (fractions) of class scores [N, C] against labels [N]."""

    additive = ("top1", "top5", "total")

    def __init__(self, num_classes):
        self.k = min(5, num_classes)
        self.num_classes = num_classes
        self.top1 = self.top5 = self.total = 0

    def update(self, outputs, labels):
        hits1, hitsk = topk_hits(outputs, labels, self.k)
        self.top1, self.top5, self.total = self.top1 + hits1, self.top5 + hitsk, self.total + len(labels)

    def result(self):
        n = max(self.total, 1)
        return {"top1": self.top1 / n, "top5": self.top5 / n if self.num_classes > 5 else None}


class SegmentationMetric:
    """mIoU and pixel accuracy of class scores [N, C, H, W] against labels [N, H, W].

    One confusion matrix over every pixel of the split (not a mean of per-image scores);
    the mean IoU is over the classes present in the labels or the predictions; pixels
    labelled `ignore_index` count nowhere.
    """

    additive = ("confusion",)

    def __init__(self, num_classes, ignore_index=255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, outputs, labels):
        pred = np.asarray(outputs).argmax(axis=1).reshape(-1)
        y = np.asarray(labels).reshape(-1)
        if pred.shape != y.shape:
            raise ModelError(f"segmentation outputs {list(np.shape(outputs))} do not match labels "
                             f"{list(np.shape(labels))}", "the model must return [N, classes, H, W] scores")
        valid = y != self.ignore_index
        index = y[valid] * self.num_classes + pred[valid]
        self.confusion += np.bincount(index, minlength=self.num_classes ** 2).reshape(self.num_classes, -1)

    def result(self):
        hits = np.diag(self.confusion)
        union = self.confusion.sum(0) + self.confusion.sum(1) - hits
        present = union > 0
        return {"miou": float((hits[present] / union[present]).mean()) if present.any() else 0.0,
                "pixel_acc": float(hits.sum() / max(self.confusion.sum(), 1))}


class BatchMean:
    """A user's metric `fn(outputs, labels) -> number or {name: number}` averaged over samples."""

    additive = ("sums", "total")

    def __init__(self, fn, name):
        self.fn, self.name = fn, name
        self.sums, self.total = {}, 0

    def update(self, outputs, labels):
        value = self.fn(outputs, labels)
        values = value if isinstance(value, dict) else {self.name: value}
        n = len(labels)
        for key, v in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(v) * n
        self.total += n

    def result(self):
        return {k: v / max(self.total, 1) for k, v in self.sums.items()}


class Agreement:
    """Share of predictions equal to the original model's: the argmax over axis 1 of the outputs against the
    reference outputs, per sample for [N, classes] scores (`top1_agreement`), per pixel for [N, classes, H, W]
    (`pixel_agreement`)."""

    additive = ("same", "total")

    def __init__(self, name="top1_agreement"):
        self.name = name
        self.same = self.total = 0

    def update(self, outputs, reference):
        ours, theirs = np.asarray(outputs).argmax(axis=1), np.asarray(reference).argmax(axis=1)
        if ours.shape != theirs.shape:
            raise ModelError(f"outputs {list(np.shape(outputs))} do not match the original model's "
                             f"{list(np.shape(reference))}", "a compressed model keeps the original's output shape")
        self.same += int((ours == theirs).sum())
        self.total += int(ours.size)

    def result(self):
        return {self.name: self.same / max(self.total, 1)}
