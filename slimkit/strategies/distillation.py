"""Knowledge distillation as a stage: train the current (e.g. pruned) model against a teacher.

The teacher is the pipeline's model as it was before the first compressing stage, or a
model named in the config. The loss is Hinton's `alpha * CE + (1 - alpha) * T^2 * KL`
(see slimkit.distill.losses), optionally plus L2 terms between named feature maps.
"""

import dataclasses
from pathlib import Path
from typing import Literal, Optional

import paddle
import paddle.nn as nn

from ..core.errors import ConfigError, ModelError, suggest
from ..core.imports import is_reference
from ..core.schema import option
from ..core.surgery import capture, eval_mode, restore
from ..distill.features import FeatureDistiller, FeaturePair
from ..distill.losses import DistillLoss
from ..models.zoo import ModelConfig, available_models, build_model
from .base import Strategy

__all__ = ["Distillation"]


class _StudentWithAdapters(nn.Layer):
    """The student plus the feature adapters, so one optimizer trains both; forward = student's."""

    def __init__(self, student, features):
        super().__init__()
        self.student = student
        self.features = features

    def forward(self, x):
        return self.student(x)


@dataclasses.dataclass
class Distillation(Strategy, type_name="distill"):
    """Train the current model (the student) to match a teacher's softened outputs and features."""

    compresses = False
    tasks = ("classification",)  # the soft targets are one class distribution per image

    epochs: Optional[int] = option(None, "epochs; null = train.epochs", ge=0)
    lr: Optional[float] = option(None, "peak learning rate; null = train.lr", gt=0)
    temperature: float = option(4.0, "softmax temperature T of the soft targets (higher = softer); "
                                     "the soft term is scaled by T^2", gt=0)
    alpha: float = option(0.5, "weight of the cross-entropy on the labels; 1 - alpha weighs the soft "
                               "targets (1 = plain training, 0 = pure distillation)", ge=0, le=1)
    kd_loss: Literal["kl", "soft_ce", "mse"] = option(
        "kl", "soft-target loss: `kl` (T^2 * KL divergence), `soft_ce` (T^2 * soft cross-entropy, same "
              "gradients as kl) or `mse` (mean squared error of the raw logits; ignores temperature)")
    teacher: Optional[ModelConfig] = option(
        None, "teacher model `{name, args, checkpoint}` (built like `model`; num_classes, in_channels and "
              "input_size come from the data); null = the model before the first compressing stage")
    features: list[FeaturePair] = option(
        default_factory=list, doc="feature distillation pairs `{student: layer, teacher: layer, weight: 1.0}`: "
                                  "mean squared error between the named layers' outputs, through a learned "
                                  "1x1 conv adapter when channel counts differ")

    def check(self):
        if self.teacher is not None:
            _check_teacher(self.teacher, "teacher")

    @property
    def trains(self):
        return self.epochs is None or self.epochs > 0

    @property
    def needs_teacher(self):
        return self.teacher is None  # the model before the first compressing stage

    def to_dict(self):
        out = super().to_dict()
        out["features"] = [p.to_dict() for p in self.features]
        return out

    # --- running --------------------------------------------------------------------------
    def apply(self, model, ctx):
        teacher, from_config = self._teacher(ctx)
        sample = paddle.zeros(ctx.input_shape, dtype="float32")
        _check_logits(model, teacher, sample)
        distiller = FeatureDistiller(self.features, model, teacher, sample) if self.features else None
        if self.alpha == 1.0 and not self.features:
            ctx.note("alpha=1 and no features: the teacher does not contribute (plain training)")
        if self.kd_loss == "mse":
            ctx.note("kd_loss=mse compares raw logits: temperature is not used")
        if distiller is not None:
            for pair, mapped, (s, t) in zip(distiller.pairs, distiller.mapped, distiller.shapes):
                if mapped:
                    ctx.note(f"feature {pair.student} {s[1:]} -> {pair.teacher} {t[1:]} through a learned adapter")
        if from_config:
            ctx.metrics["teacher_top1"] = round(ctx.engine.evaluate(teacher)["top1"], 5)

        loss_fn = DistillLoss(teacher, self.temperature, self.alpha, self.kd_loss, ctx.train.label_smoothing,
                              distiller)
        trained = model if distiller is None else _StudentWithAdapters(model, distiller)
        snapshot = capture(model)
        try:
            with eval_mode(teacher):
                if distiller is not None:
                    distiller.attach()
                history = ctx.engine.train(trained, epochs=ctx.hyper("epochs", self.epochs),
                                           lr=ctx.hyper("lr", self.lr), loss_fn=loss_fn,
                                           desc=ctx.stage_name or self.display_name)
        except BaseException:
            restore(model, snapshot)  # a failed stage leaves the student as it came in
            raise
        finally:
            if distiller is not None:
                distiller.detach()
        model.eval()
        if history:
            ctx.metrics["train_loss"] = round(history[-1]["loss"], 5)
            steps = ctx.engine.steps_per_epoch()
            for key, value in loss_fn.mean_of_last(steps).items():
                ctx.metrics[f"distill_{key}"] = round(value, 5)
        return model  # the adapters stay behind in the discarded wrapper

    def _teacher(self, ctx):
        """(teacher model, built from the config?); errors before any training."""
        if self.teacher is None:
            if ctx.teacher is None:
                raise ConfigError("teacher", "no teacher: no compressing stage ran before this distill stage, "
                                             "so the pipeline has no earlier model to learn from",
                                  "put distill after a compressing stage (e.g. filter_pruning), or give "
                                  "`teacher: {name: ..., args: {...}, checkpoint: ...}`")
            return ctx.teacher, False
        data = ctx.data
        try:
            teacher = build_model(self.teacher.name, num_classes=data.num_classes, in_channels=data.input_shape[0],
                                  input_size=data.input_shape[-1], checkpoint=self.teacher.checkpoint,
                                  **self.teacher.args)
        except ModelError as err:
            raise ConfigError("teacher", err.message, err.hint) from None
        for p in teacher.parameters():
            p.stop_gradient = True  # a teacher of our own: make it frozen, not only unused
        teacher.eval()
        return teacher, True


def _check_teacher(config, path):
    """The teacher reference must resolve before any training: a known model and an existing checkpoint."""
    names = list(available_models())
    if not is_reference(config.name) and config.name not in names:
        raise ConfigError(f"{path}.name", f"unknown model {config.name!r}",
                          suggest(config.name, names) + " (or `package.module:function`)")
    if not config.checkpoint:
        raise ConfigError(f"{path}.checkpoint", "a teacher needs trained weights",
                          "give the teacher's `.pdparams` file or slimkit model folder, or drop `teacher` "
                          "to learn from the model before the first compressing stage")
    checkpoint = Path(config.checkpoint).expanduser()
    if not checkpoint.exists():
        raise ConfigError(f"{path}.checkpoint", f"file not found: {checkpoint}",
                          "give an existing `.pdparams` file or a folder written by slimkit.save_model "
                          "(relative paths are relative to the working directory)")


def _check_logits(student, teacher, sample):
    """Teacher and student must predict the same number of classes."""
    with paddle.no_grad():
        shapes = []
        for model in (student, teacher):
            with eval_mode(model):
                shapes.append(list(model(sample).shape))
    if shapes[0] != shapes[1]:
        raise ConfigError("teacher", f"teacher output {shapes[1]} differs from the student's {shapes[0]}",
                          "the teacher must be trained on the same classes as the student")
