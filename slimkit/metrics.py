"""Metrics as accumulators over numpy batches: `update(outputs, labels)` per batch, `result()` per split.

Numpy, not tensors, so the eager model and an exported one (Paddle Inference) are measured
by the same code.
"""

import numpy as np

from .errors import ModelError


def topk_hits(logits, labels, k):
    """(top-1 hits, top-k hits) of numpy `logits` [N, classes] against integer `labels` [N]."""
    topk = np.argsort(-np.asarray(logits), axis=1, kind="stable")[:, :k]
    y = np.asarray(labels).reshape(-1, 1)
    return int((topk[:, :1] == y).sum()), int((topk == y).any(axis=1).sum())


class TopK:
    """Top-1 and top-5 accuracy (fractions) of class scores [N, C] against labels [N]."""

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
