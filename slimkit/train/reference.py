"""Data without labels: the original model is the reference, its outputs are the labels.

    task = build_task({}, to_bundle(X), reference=model)      # X: inputs only
    images, reference_outputs = next(engine.batches("test"))  # what every stage sees as labels
    task.metric()  -> {"top1_agreement": ...} for [N, classes] outputs, {"pixel_agreement": ...} for [N, C, H, W]

Training stages learn from the original's outputs: the default loss is distillation from
them (KL divergence of the softmax over the class axis for class scores, per pixel for
dense scores; mean squared error for any other output). Evaluation reports the agreement
with the original: the share of equal predictions (argmax over axis 1), or the user's
`task.agreement(outputs, reference_outputs) -> score`, averaged over samples (e.g. a CTC
decode compared as strings). `task.loss` may be the user's function of (outputs,
reference_outputs); built-in losses and metrics need labels.
"""

import copy

import paddle
import paddle.nn.functional as F

from ..core import device as devices
from ..core.errors import ConfigError
from ..core.imports import is_reference
from ..core.surgery import eval_mode
from ..distill.losses import kd_loss
from .metrics import Agreement, BatchMean
from .tasks import Objective, Task, user_function

AGREEMENT_NAMES = {"classes": "top1_agreement", "dense": "pixel_agreement"}


class ReferenceModel:
    """A frozen copy of the original model; called on a batch, its selected output (no gradients)."""

    def __init__(self, model, select):
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.stop_gradient = True
        self.model.eval()
        self.select = select
        self._device = None

    def __call__(self, images):
        device = devices.current()
        if device != self._device:  # the run's device, once it is known
            devices.move(self.model, device)
            self._device = device
        with paddle.no_grad(), eval_mode(self.model):
            return self.select(self.model(images)).detach()


def output_kind(shape):
    """"classes" for [N, classes] outputs, "dense" for [N, classes, H, W], "other" for anything else."""
    return {2: "classes", 4: "dense"}.get(len(shape), "other")


def reference_loss(kind):
    """The distillation loss from the reference outputs of an output kind: fn(outputs, reference_outputs)."""
    if kind == "other":
        return F.mse_loss
    return lambda outputs, reference: kd_loss(outputs, reference, temperature=1.0, kind="kl", axis=1)


class AgreementObjective(Objective):
    """The objective of data without labels: learn from and agree with the original model's outputs."""

    unlabelled = True

    def __init__(self, config, reference, input_shape):
        if reference is None:
            raise ConfigError("data", "the data has no labels, and no reference model was given",
                              "Pipeline(model, data) makes the model the reference; with slimkit.Engine, pass "
                              "reference=model")
        for key in ("metric", "loss"):
            if isinstance(getattr(config, key), str) and not is_reference(getattr(config, key)):
                raise ConfigError(f"task.{key}", f"{getattr(config, key)} needs labels, and the data has none",
                                  "drop it: without labels the stages learn from and are measured against the "
                                  "original model (task.agreement, task.loss: your functions of (outputs, "
                                  "reference_outputs))")
        if config.metric is not None:
            raise ConfigError("task.metric", "the data has no labels: the metric is the agreement with the original",
                              "give your function as task.agreement: fn(outputs, reference_outputs) -> score")
        if config.aux_weights:
            raise ConfigError("task.aux_weights", "auxiliary outputs are trained on labels, and the data has none",
                              "remove aux_weights")
        self.config, self.num_classes, self.classes_inferred, self.builtin = config, None, False, set()
        self.reference = ReferenceModel(reference, self.select)
        with paddle.no_grad():
            shape = list(self.reference(paddle.zeros(input_shape, dtype="float32")).shape)
        self.kind = output_kind(shape)
        self._agreement = user_function(config.agreement, "agreement")
        if self.kind == "other" and self._agreement is None:
            raise ConfigError("task.agreement", f"the model's output has shape {shape}: slimkit compares [N, classes] "
                                                "(top-1) and [N, classes, H, W] (per pixel) outputs with the "
                                                "original's by itself",
                              "give task.agreement: fn(outputs, reference_outputs) -> score (numpy arrays), e.g. "
                              "the share of equal CTC-decoded strings")
        self.name = "agreement"
        self.task = Task(None)
        self._loss = self.eval_loss = user_function(config.loss, "loss") or reference_loss(self.kind)
        self._metric = self._agreement
        self.metric_names = () if self._agreement is not None else (AGREEMENT_NAMES[self.kind],)

    def targets(self, images, labels):
        """The original model's outputs on the batch (the data's labels, had it any)."""
        return self.reference(images) if labels is None else labels

    def metric(self):
        if self._agreement is None:
            return Agreement(self.metric_names[0])
        if isinstance(self._agreement, type):
            return self._agreement()
        return BatchMean(self._agreement, getattr(self._agreement, "__name__", "agreement"))

    def correct(self, outputs, labels):
        if self.kind == "other":
            return 0, 0
        same = outputs.argmax(axis=1) == labels.argmax(axis=1)
        return int(same.astype("int64").sum().item()), int(same.size)
