"""What the engine trains and measures: a task's loss and metric, by name or as the user's functions.

    task = build_task(TaskConfig(loss="segmentation"), data)
    loss, logits = task.loss_fn(model, images, labels)        # the engine's default loss
    acc = task.metric(); acc.update(logits_np, labels_np); acc.result()   # {"miou": ..., "pixel_acc": ...}

Built in: `classification` (cross-entropy with label smoothing; top-1/top-5) and
`segmentation` (per-pixel cross-entropy with an ignore index; mIoU and pixel accuracy).
A loss or metric of the form `package.module:function` imports the user's own; in Python
the function itself works too. Labels reach the loss as the data gives them (masks, several
targets, dicts: slimkit.data.labels). Data without labels gets the agreement objective
(slimkit.train.reference): the original model's outputs are the labels. Metrics are
accumulators over numpy outputs (slimkit.train.metrics), so the eager model and an exported
one (Paddle Inference) are measured by the same code.
"""

import copy
import dataclasses
import inspect
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import paddle
import paddle.nn.functional as F

from .. import compat
from ..core import device as devices
from ..core.errors import ConfigError, DataError, ModelError, suggest
from ..core.imports import import_object, is_reference
from ..core.schema import Options, option
from ..core.surgery import train_mode
from .metrics import BatchMean, SegmentationMetric, TopK

TASKS = {}


@dataclasses.dataclass
class TaskConfig(Options):
    """What the model is trained on and measured with (config block `task`)."""

    loss: Optional[Union[str, Callable]] = option(
        None, "`classification`, `segmentation` or `package.module:function` (`fn(outputs, labels) -> scalar "
              "tensor`; labels as the data gives them); in Python also the function; null = the data's task, or for "
              "data without labels distillation from the original model")
    metric: Optional[Union[str, Callable]] = option(
        None, "`classification` (top-1/top-5), `segmentation` (mIoU, pixel accuracy) or `package.module:function` "
              "(`fn(outputs, labels) -> number or dict`, or an accumulator class; see docs/tasks.md); in Python also "
              "the function or class; null = the data's task")
    agreement: Optional[Union[str, Callable]] = option(
        None, "data without labels: how the model is compared with the original, `package.module:function` "
              "`fn(outputs, reference_outputs) -> score` (numpy; averaged over samples); in Python also the "
              "function; null = top-1 agreement for [N, classes] outputs, per-pixel agreement for "
              "[N, classes, H, W]")
    output: Optional[Union[int, str]] = option(None, "which output of a model with several outputs the loss and "
                                                     "metric read: an index (list/tuple) or a key (dict); "
                                                     "null = the output itself, or the first of a list/tuple")
    aux_weights: Union[List[float], Dict[Union[int, str], float]] = option(
        default_factory=dict, doc="loss weights of the auxiliary outputs the model returns in training mode: "
                                  "[w1, w2, ...] for the outputs of a list/tuple other than `output`, in order, "
                                  "or {index or key: weight}; outputs not named are not trained")
    ignore_index: int = option(255, "label of pixels the segmentation loss and metric ignore")

    def check(self):
        for key in ("loss", "metric", "agreement"):
            value = getattr(self, key)
            if isinstance(value, str) and not is_reference(value) and (key == "agreement" or value not in TASKS):
                valid = sorted(TASKS) if key != "agreement" else []
                raise ConfigError(key, f"unknown {key} {value!r}",
                                  (suggest(value, valid) + " (or `package.module:function`)") if valid else
                                  "use `package.module:function`")
            if value is not None:
                check_function(user_function(value, key), key)
        named = isinstance(self.aux_weights, dict)
        for key, weight in self.aux_weights.items() if named else enumerate(self.aux_weights):
            path = f"aux_weights.{key}" if named else f"aux_weights[{key}]"
            if weight < 0:
                raise ConfigError(path, f"expected a weight >= 0, got {weight!r}")
            if named and (key == self.output or (self.output is None and key == 0)):
                raise ConfigError(f"aux_weights.{key}", "is the main output (task.output), weighted 1",
                                  "name only the auxiliary outputs")

    def to_dict(self):
        out = super().to_dict()
        for key in ("loss", "metric", "agreement"):  # a function is recorded by name (report.json, resume)
            if callable(out[key]):
                out[key] = f"{out[key].__module__}:{out[key].__qualname__}"
        return out


def user_function(value, key):
    """The user's loss/metric/agreement: the function (or class) itself, or the one `package.module:name` names."""
    if callable(value):
        return value
    if not is_reference(value):
        return None
    return import_object(value, lambda message, hint: ConfigError(key, message, hint))


# How each is called: a loss and an agreement with (outputs, labels), a metric too, or built as an accumulator.
_CALLED = {"loss": "fn(outputs, labels)", "metric": "fn(outputs, labels)",
           "agreement": "fn(outputs, reference_outputs)"}


def check_function(fn, key):
    """ConfigError unless `fn` can be called as the task calls it (an accumulator class for a metric)."""
    if fn is None:
        return
    if not callable(fn):
        raise ConfigError(key, f"{fn!r} is not a function", f"give a function called as {_CALLED[key]}")
    if inspect.isclass(fn):
        missing = [m for m in ("update", "result") if not callable(getattr(fn, m, None))]
        if key != "metric" or missing:
            raise ConfigError(key, f"{fn.__name__} is a class" + (f" without {', '.join(missing)}" if missing else ""),
                              "a metric class has update(outputs, labels) and result() -> {name: value}" if key ==
                              "metric" else f"give a function called as {_CALLED[key]}")
        return
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        name = getattr(fn, "__qualname__", repr(fn))
        raise ConfigError(key, f"{name}{inspect.signature(fn)} cannot be called as {_CALLED[key]}",
                          "give a function of two arguments") from None
    except ValueError:  # a builtin without a signature: called as it is
        return


# --- tasks: one small class each, registered by name ----------------------------------------

class Task:
    """A loss on one output tensor, the metric accumulator and a training accuracy for progress bars."""

    name = ""
    metric_names = ()  # the reported metric values, the primary one first

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            TASKS[cls.name] = cls

    def __init__(self, num_classes, ignore_index=255, label_smoothing=0.0):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def loss(self, outputs, labels):
        raise NotImplementedError

    def metric(self):
        raise NotImplementedError

    def correct(self, outputs, labels):
        """(correct, counted) predictions of one training batch (tensors)."""
        hits = outputs.argmax(axis=1) == labels
        return int(hits.astype("int64").sum().item()), int(np.prod(labels.shape))


class Classification(Task):
    name = "classification"
    metric_names = ("top1", "top5")

    def loss(self, outputs, labels):
        return F.cross_entropy(outputs, labels, label_smoothing=self.label_smoothing)

    def metric(self):
        return TopK(self.num_classes)


class Segmentation(Task):
    name = "segmentation"
    metric_names = ("miou", "pixel_acc")

    def loss(self, outputs, labels):
        return compat.pixel_cross_entropy(outputs, labels, self.ignore_index, self.label_smoothing)

    def metric(self):
        return SegmentationMetric(self.num_classes, self.ignore_index)

    def correct(self, outputs, labels):
        valid = labels != self.ignore_index
        hits = (outputs.argmax(axis=1) == labels).logical_and(valid)
        return int(hits.astype("int64").sum().item()), int(valid.astype("int64").sum().item())


class OwnTask(Task):
    """The user's loss and metric: a training accuracy only where outputs and labels look like classes."""

    def correct(self, outputs, labels):
        if isinstance(labels, paddle.Tensor) and labels.dtype == paddle.int64 and list(labels.shape) == \
                list(outputs.shape[:1]) + list(outputs.shape[2:]):
            return super().correct(outputs, labels)
        return 0, 0


# --- the task a pipeline runs: chosen loss and metric, output selector, auxiliary weights ----

class Objective:
    """What one pipeline trains and measures with, built from a TaskConfig and the data.

    `loss_fn(model, images, labels) -> (loss, main output)` is the engine's default loss;
    `metric()` a fresh accumulator; `primary` the metric strategies compare (sensitivity
    scans): the first of `metric_names`, or of a user metric's results.
    """

    unlabelled = False  # the agreement objective (slimkit.train.reference) learns from the original instead

    def __init__(self, config, num_classes, default="classification", label_smoothing=0.0):
        self.config = config
        self.num_classes = num_classes
        self.classes_inferred = False  # num_classes is the data's largest label + 1 (the model may know more)
        loss, metric = _or(config.loss, default), _or(config.metric, default)
        builtin_loss = isinstance(loss, str) and loss in TASKS
        builtin_metric = isinstance(metric, str) and metric in TASKS
        self.name = metric if builtin_metric else loss if builtin_loss else "custom"
        self.task = (TASKS[self.name] if self.name in TASKS else OwnTask)(num_classes, config.ignore_index)
        if builtin_loss:
            # Evaluation reports the plain loss; label smoothing only shapes training.
            self._loss = TASKS[loss](num_classes, config.ignore_index, label_smoothing).loss
            self.eval_loss = TASKS[loss](num_classes, config.ignore_index).loss
        else:
            self._loss = self.eval_loss = user_function(loss, "loss")
        self._metric = None if builtin_metric else user_function(metric, "metric")
        self.metric_names = self.task.metric_names if builtin_metric else ()
        self.builtin = {name for name, value in (("loss", loss), ("metric", metric)) if value in TASKS}

    def targets(self, images, labels):
        """What the loss and metric compare a batch's outputs with: its labels."""
        if labels is None:
            raise DataError("a batch without labels", "data without labels needs the original model as the "
                                                      "reference: Pipeline(model, data) sets it")
        return labels

    def set_classes(self, count):
        """Use `count` classes (the model's, when the data's labels do not reach them all)."""
        self.num_classes = self.task.num_classes = count

    def correct(self, outputs, labels):
        """(correct, counted) predictions of one training batch, for progress bars and history."""
        return self.task.correct(outputs, labels)

    @property
    def primary(self):
        return self.metric_names[0] if self.metric_names else None

    def primary_value(self, metrics):
        """The primary metric's value in an `evaluate` result."""
        if self.primary in metrics:
            return metrics[self.primary]
        return metrics[next(k for k in metrics if k not in ("loss", "samples"))]  # a user engine's own metrics

    def metric(self):
        if self._metric is None:
            return self.task.metric()
        if isinstance(self._metric, type):  # an accumulator class: update(outputs, labels), result()
            return self._metric()
        return BatchMean(self._metric, getattr(self._metric, "__name__", "metric"))

    def select(self, outputs, key=None, path="task.output"):
        """The output the loss and metric read (`key`: another one, for auxiliary losses)."""
        key = self.config.output if key is None else key
        if isinstance(outputs, paddle.Tensor) or isinstance(outputs, np.ndarray):
            if key in (None, 0):
                return outputs
            raise ConfigError(path, f"the model returns a single tensor, which has no output {key!r}",
                              "remove it (null), or return several outputs from forward")
        if isinstance(outputs, dict):
            if key in outputs:
                return outputs[key]
            keys = [str(k) for k in outputs]
            raise ConfigError(path, f"the model returns a dict with keys {keys}" +
                              ("" if key is None else f", not {key!r}"), suggest(str(key), keys))
        if isinstance(outputs, (list, tuple)):
            index = 0 if key is None else key
            if isinstance(index, int) and -len(outputs) <= index < len(outputs):
                return outputs[index]
            raise ConfigError(path, f"the model returns {len(outputs)} outputs, {index!r} is not one of them",
                              f"use an index from 0 to {len(outputs) - 1}")
        raise ModelError(f"the model returned {type(outputs).__name__}, not a tensor, list, tuple or dict")

    def aux_outputs(self, outputs):
        """[(key, weight)] of the auxiliary outputs the training loss adds, for the model's training-mode outputs."""
        weights = self.config.aux_weights
        if isinstance(weights, dict):
            return list(weights.items())
        if not weights:
            return []
        if not isinstance(outputs, (list, tuple)):
            kind = "a dict" if isinstance(outputs, dict) else "one tensor"
            raise ConfigError("task.aux_weights", f"a list of weights is for auxiliary outputs in a list or tuple, "
                                                  f"and the model returns {kind} in training mode",
                              "give {key: weight} for a dict, or no aux_weights")
        main = self.config.output or 0
        aux = [i for i in range(len(outputs)) if i != main % len(outputs)]
        if len(aux) != len(weights):
            raise ConfigError("task.aux_weights", f"{len(weights)} weights, but the model returns {len(aux)} "
                                                  f"auxiliary outputs in training mode (besides output {main})",
                              f"give {len(aux)} weights, one per auxiliary output in order")
        return list(zip(aux, weights))

    def loss_fn(self, model, images, labels):
        """Loss of the main output plus the weighted losses of auxiliary outputs; (loss, main output)."""
        outputs = model(images)
        main = self.select(outputs)
        loss = self._loss(main, labels)
        for key, weight in self.aux_outputs(outputs):
            loss = loss + weight * self._loss(self.select(outputs, key, f"task.aux_weights.{key}"), labels)
        return loss, main

    def eval_loss_fn(self, model, images, labels):
        """The plain loss of the main output alone (eval mode: no auxiliary outputs); (loss, main output)."""
        main = self.select(model(images))
        return self.eval_loss(main, labels), main

    def check_outputs(self, model, input_shape, sample=None):
        """Run a copy of the model once, in eval mode, to find a bad `output` or labels it cannot fit before any work.

        With `aux_weights`, the copy also runs in training mode, where the auxiliary outputs are.
        `sample` (inputs, labels as numpy) is a few real samples: the loss and metric run on
        them once, so a loss that cannot take the labels fails here, not in training.
        """
        from .checks import check_against_outputs, forward_once, try_loss_and_metric

        probe = copy.deepcopy(model)
        devices.move(probe, devices.current())  # on the run's device, like every later forward
        if self.config.aux_weights:
            with train_mode(probe), paddle.no_grad():
                outputs = forward_once(probe, input_shape, "in training mode")
                self.select(outputs)
                for key, _ in self.aux_outputs(outputs):
                    self.select(outputs, key, f"task.aux_weights.{key}")
        probe.eval()
        with paddle.no_grad():
            out = self.select(forward_once(probe, input_shape))
        check_against_outputs(self, out)
        if sample is not None:
            try_loss_and_metric(self, probe, sample)


def check_stages(task, stages):
    """Reject, before any work, a stage that cannot handle the task (a strategy's `tasks`)."""
    if task is None:
        return
    for i, stage in enumerate(stages):
        supported = getattr(stage, "tasks", None)
        if supported is not None and task.name not in supported:
            hint = f"remove the {stage.type_name} stage (see docs/tasks.md for what each strategy supports)"
            if task.unlabelled:
                hint += "; without labels finetune, filter_pruning's finetune and qat learn from the original model"
            raise ConfigError(f"stages[{i}]", f"{stage.type_name} works on {' and '.join(supported)} models "
                                              f"only, and this pipeline's task is {task.name}", hint)


def _or(value, default):
    return default if value is None else value
