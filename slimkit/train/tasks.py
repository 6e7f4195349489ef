"""What the engine trains and measures: a task's loss and metric, by name or as the user's functions.

    task = build_task(TaskConfig(loss="segmentation"), data)
    loss, logits = task.loss_fn(model, images, labels)        # the engine's default loss
    acc = task.metric(); acc.update(logits_np, labels_np); acc.result()   # {"miou": ..., "pixel_acc": ...}

Built in: `classification` (cross-entropy with label smoothing; top-1/top-5) and
`segmentation` (per-pixel cross-entropy with an ignore index; mIoU and pixel accuracy).
A loss or metric of the form `package.module:function` imports the user's own. Metrics
are accumulators over numpy outputs (slimkit.train.metrics), so the eager model and an exported one (Paddle
Inference) are measured by the same code.
"""

import copy
import dataclasses
import importlib
from typing import Dict, List, Optional, Union

import numpy as np
import paddle
import paddle.nn.functional as F

from .. import compat
from ..core import device as devices
from ..core.errors import ConfigError, ModelError
from ..core.schema import Options, _suggest, option
from ..core.surgery import train_mode
from .metrics import BatchMean, SegmentationMetric, TopK

TASKS = {}


@dataclasses.dataclass
class TaskConfig(Options):
    """What the model is trained on and measured with (config block `task`)."""

    loss: Optional[str] = option(None, "`classification`, `segmentation` or `package.module:function` "
                                       "(`fn(outputs, labels) -> scalar tensor`); null = the dataset's task")
    metric: Optional[str] = option(None, "`classification` (top-1/top-5), `segmentation` (mIoU, pixel accuracy) "
                                         "or `package.module:function` (see docs/tasks.md); null = the dataset's task")
    output: Optional[Union[int, str]] = option(None, "which output of a model with several outputs the loss and "
                                                     "metric read: an index (list/tuple) or a key (dict); "
                                                     "null = the output itself, or the first of a list/tuple")
    aux_weights: Union[List[float], Dict[Union[int, str], float]] = option(
        default_factory=dict, doc="loss weights of the auxiliary outputs the model returns in training mode: "
                                  "[w1, w2, ...] for the outputs of a list/tuple other than `output`, in order, "
                                  "or {index or key: weight}; outputs not named are not trained")
    ignore_index: int = option(255, "label of pixels the segmentation loss and metric ignore")

    def check(self):
        for key in ("loss", "metric"):
            value = getattr(self, key)
            if value is not None and ":" in value:
                _import(value, key)
            elif value is not None and value not in TASKS:
                raise ConfigError(key, f"unknown {key} {value!r}",
                                  _suggest(value, sorted(TASKS)) + " (or `package.module:function`)")
        named = isinstance(self.aux_weights, dict)
        for key, weight in self.aux_weights.items() if named else enumerate(self.aux_weights):
            path = f"aux_weights.{key}" if named else f"aux_weights[{key}]"
            if weight < 0:
                raise ConfigError(path, f"expected a weight >= 0, got {weight!r}")
            if named and (key == self.output or (self.output is None and key == 0)):
                raise ConfigError(f"aux_weights.{key}", "is the main output (task.output), weighted 1",
                                  "name only the auxiliary outputs")


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


# --- the task a pipeline runs: chosen loss and metric, output selector, auxiliary weights ----

class Objective:
    """What one pipeline trains and measures with, built from a TaskConfig and the data.

    `loss_fn(model, images, labels) -> (loss, main output)` is the engine's default loss;
    `metric()` a fresh accumulator; `primary` the metric strategies compare (sensitivity
    scans): the first of `metric_names`, or of a user metric's results.
    """

    def __init__(self, config, num_classes, default="classification", label_smoothing=0.0):
        self.config = config
        self.num_classes = num_classes
        loss_name, metric_name = config.loss or default, config.metric or default
        builtin_loss, builtin_metric = loss_name in TASKS, metric_name in TASKS
        self.name = metric_name if builtin_metric else loss_name if builtin_loss else default
        self.task = TASKS[self.name](num_classes, config.ignore_index)  # its metric and training accuracy
        if builtin_loss:
            # Evaluation reports the plain loss; label smoothing only shapes training.
            self._loss = TASKS[loss_name](num_classes, config.ignore_index, label_smoothing).loss
            self.eval_loss = TASKS[loss_name](num_classes, config.ignore_index).loss
        else:
            self._loss = self.eval_loss = _import(config.loss, "loss")
        self._metric = None if builtin_metric else _import(config.metric, "metric")
        self.metric_names = self.task.metric_names if builtin_metric else ()

    def correct(self, outputs, labels):
        """(correct, counted) predictions of one training batch, for progress bars and history."""
        return self.task.correct(outputs, labels)

    @property
    def primary(self):
        return self.metric_names[0] if self.metric_names else None

    def primary_value(self, metrics):
        """The primary metric's value in an `evaluate` result."""
        key = self.primary or next(k for k in metrics if k not in ("loss", "samples"))
        return metrics[key]

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
                              ("" if key is None else f", not {key!r}"), _suggest(str(key), keys))
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

    def check_outputs(self, model, input_shape):
        """Run a copy of the model once, in eval mode, to find a bad `output` before any work.

        With `aux_weights`, the copy also runs in training mode, where the auxiliary outputs are.
        """
        probe = copy.deepcopy(model)
        devices.move(probe, devices.current())  # on the run's device, like every later forward
        x = paddle.zeros(input_shape, dtype="float32")
        if self.config.aux_weights:
            with train_mode(probe), paddle.no_grad():
                outputs = probe(x)
                self.select(outputs)
                for key, _ in self.aux_outputs(outputs):
                    self.select(outputs, key, f"task.aux_weights.{key}")
        probe.eval()
        with paddle.no_grad():
            out = self.select(probe(x))
        if not self.metric_names:
            return  # the user's metric decides what it reads
        want = 4 if self.name == "segmentation" else 2
        if len(out.shape) != want or (self.metric_names and out.shape[1] != self.num_classes):
            layout = "[N, classes, H, W]" if want == 4 else "[N, classes]"
            raise ModelError(f"the {self.name} output has shape {list(out.shape)}, expected {layout} "
                             f"with {self.num_classes} classes",
                             "set task.output to the logits, or task.loss/metric to your own functions")


def build_task(config=None, data=None, label_smoothing=0.0):
    """The Objective of a TaskConfig (or its fields as a dict) on a DataBundle."""
    if isinstance(config, Objective):
        return config
    config = config if isinstance(config, TaskConfig) else TaskConfig.from_dict(config or {}, "task")
    return Objective(config, getattr(data, "num_classes", 0), getattr(data, "task", "classification"),
                     label_smoothing)


def check_stages(task, stages):
    """Reject, before any work, a stage that cannot handle the task (a strategy's `tasks`)."""
    if task is None:
        return
    for i, stage in enumerate(stages):
        supported = getattr(stage, "tasks", None)
        if supported is not None and task.name not in supported:
            raise ConfigError(f"stages[{i}]", f"{stage.type_name} works on {' and '.join(supported)} models "
                                              f"only, and this pipeline's task is {task.name}",
                              f"remove the {stage.type_name} stage (see docs/tasks.md for what each strategy supports)")


def metric_of(engine, num_classes):
    """A fresh metric accumulator of the engine's task (top-1/top-5 for an engine without a task)."""
    from .metrics import TopK

    task = getattr(engine, "task", None)
    return task.metric() if task is not None else TopK(num_classes)


def output_key(engine):
    """The engine's `task.output` (None for an engine without a task): what an exported model's metric reads."""
    task = getattr(engine, "task", None)
    return task.config.output if task is not None else None


def primary_metric(engine, metrics):
    """The value strategies compare: the task's primary metric, top-1 for an engine without a task."""
    task = getattr(engine, "task", None)
    return task.primary_value(metrics) if task is not None else metrics["top1"]


def _import(spec, key):
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(key, f"cannot import {module_name!r}: {err}",
                          "make the module importable (pip install it or add its folder to PYTHONPATH)") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(key, f"{module_name} has no callable {attr!r}", "use `package.module:function`")
    return fn
