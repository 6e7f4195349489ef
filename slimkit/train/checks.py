"""Labels and outputs checked against the task before any work: one slimkit error naming the fix, never a raw one.

`check_labels` reads the data's summary (slimkit.data.labels): a built-in loss or metric
needs integer class indices, one per sample (classification) or per pixel (segmentation),
within 0..classes-1. `check_against_outputs` compares them with the model's output on one
forward, `try_loss_and_metric` runs the loss and metric once on a few real samples.
"""

import numpy as np
import paddle

from ..core.errors import ConfigError, DataError, ModelError
from ..data.labels import map_labels

SEGMENTATION_HINT = "per-pixel labels (masks): set task={loss: segmentation, metric: segmentation}"


def check_labels(task, data):
    """DataError when the labels cannot be what the task's built-in loss or metric reads."""
    summary = getattr(data, "summary", None)
    if summary is None or not task.builtin:
        return
    what = " and ".join(f"task.{key}" for key in sorted(task.builtin))
    if summary.labels != "int":
        kinds = {"float": "floats", "structured": "several targets"}
        raise DataError(f"data: the labels are {kinds[summary.labels]}, and the {task.name} {what} takes integer "
                        f"class indices", "pass labels as integers 0..num_classes-1 (e.g. y.astype('int64')), or "
                                          "give your own task.loss and task.metric functions")
    want = 2 if task.name == "segmentation" else 0
    shape = summary.label_shape
    if shape is not None and len(shape) != want:
        layout = "one class index per pixel, [H, W] per sample" if want else "one class index per sample"
        hint = SEGMENTATION_HINT if want == 0 and len(shape) == 2 else \
            "one-hot rows? pass y.argmax(1)" if want == 0 else "give [H, W] masks of class indices"
        raise DataError(f"data: the labels have shape {list(shape)} per sample; {task.name} takes {layout}", hint)
    _check_values(task, summary.values)


def _check_values(task, values):
    if values is None:
        return
    ignore = task.config.ignore_index if task.name == "segmentation" else None
    used = [v for v in values if v != ignore]
    negative = [v for v in used if v < 0]
    if negative:
        allowed = f" (or ignore_index {ignore})" if ignore is not None else ""
        raise DataError(f"data: labels must be class indices 0..{_top(task)}{allowed}; found negative label(s) "
                        f"{negative[:5]}", "map them to class indices (or to task.ignore_index for pixels to skip)")
    above = [v for v in used if task.num_classes and v >= task.num_classes]
    if above and not task.classes_inferred:
        raise DataError(f"data: label {above[0]} is out of range for {task.num_classes} classes (0.."
                        f"{task.num_classes - 1})" + (f"; {len(above)} such labels" if len(above) > 1 else ""),
                        "fix the labels, or give num_classes to match them")


def _top(task):
    return task.num_classes - 1 if task.num_classes else "num_classes-1"


def forward_once(model, input_shape, where=""):
    """The model's output on zeros of `input_shape`; ModelError naming the shape (and a missing channel axis)."""
    try:
        return model(paddle.zeros(input_shape, dtype="float32"))
    except Exception as err:  # any failure of the user's forward means the same: it does not take this input
        text = str(err).strip().splitlines()
        hint = ("the inputs have no channel axis: give X[:, None] ([N, 1, H, W])" if len(input_shape) == 3 else
                "check input_shape ([batch, channels, height, width] of your data) and that "
                "model(paddle.randn(input_shape)) works")
        raise ModelError(f"the model cannot run {where + ' ' if where else ''}on input_shape {list(input_shape)}: "
                         f"{type(err).__name__}: {text[-1] if text else ''}", hint) from None


def check_against_outputs(task, out):
    """The class count and the masks' size against the model's output (one eval forward)."""
    if not task.metric_names or task.unlabelled:
        return  # the user's metric decides what it reads
    want = 4 if task.name == "segmentation" else 2
    layout = "[N, classes, H, W]" if want == 4 else "[N, classes]"
    shape = list(out.shape)
    if len(shape) != want:
        raise ModelError(f"the {task.name} output has shape {shape}, expected {layout}",
                         "set task.output to the logits, or task.loss/metric to your own functions")
    classes = shape[1]
    if classes != task.num_classes:
        if task.classes_inferred and classes > task.num_classes:
            task.set_classes(classes)  # classes the data's labels do not reach are fine
        elif task.classes_inferred:
            raise DataError(f"data: label {task.num_classes - 1} is out of range: the model predicts {classes} "
                            f"classes (0..{classes - 1})", f"fix the labels to 0..{classes - 1}, or build the model "
                                                           f"with {task.num_classes} classes")
        else:
            raise ModelError(f"the {task.name} output has shape {shape}, expected {layout} with "
                             f"{task.num_classes} classes", "set task.output to the logits, or task.loss/metric to "
                                                            "your own functions")


def try_loss_and_metric(task, model, sample):
    """Run the loss and the metric once on a few real samples (eval mode, no gradients)."""
    images, labels = sample
    x = paddle.to_tensor(images)
    with paddle.no_grad():
        out = task.select(model(x))
        targets = task.targets(x, map_labels(paddle.to_tensor, labels))
        _check_sample_shapes(task, out, targets)
        try:
            loss = task.eval_loss(out, targets)
        except Exception as err:  # the loss, built in or the user's, cannot take these outputs and labels
            raise ConfigError("task.loss", f"the loss fails on the first samples: {type(err).__name__}: "
                                           f"{_last_line(err)}", _fit_hint(task)) from None
    if not isinstance(loss, paddle.Tensor) or int(np.prod(loss.shape)) != 1:
        raise ConfigError("task.loss", f"the loss returned {type(loss).__name__} "
                                       f"{list(getattr(loss, 'shape', []))}, not a scalar tensor",
                          "return one number as a paddle tensor (e.g. a mean over the batch)")
    try:
        metric = task.metric()
        metric.update(out.numpy(), map_labels(lambda t: t.numpy(), targets))
        metric.result()
    except Exception as err:  # the same for the metric
        raise ConfigError("task.metric" if not task.unlabelled else "task.agreement",
                          f"the metric fails on the first samples: {type(err).__name__}: {_last_line(err)}",
                          _fit_hint(task)) from None


def _check_sample_shapes(task, out, labels):
    if task.name == "segmentation" and isinstance(labels, paddle.Tensor) and not task.unlabelled:
        if list(labels.shape[1:]) != list(out.shape[2:]):
            raise DataError(f"data: the masks are {list(labels.shape[1:])} per sample, the model's scores "
                            f"{list(out.shape[2:])}", "give masks of the model's output size (resize them, or "
                                                      "upsample the scores in the model)")


def _fit_hint(task):
    if task.unlabelled:
        return "the function gets the model's outputs and the original model's (numpy for a metric)"
    return "the loss gets the selected output (task.output) and the labels as the data gives them; check both"


def _last_line(err):
    text = str(err).strip().splitlines()
    return text[-1][:300] if text else ""
