"""Feature distillation: L2 between named intermediate outputs of student and teacher.

Forward post-hooks on the named layers keep each layer's output of the current batch.
After filter pruning the student's layers have fewer channels than the teacher's, so a
learned 1x1 conv adapter (a linear layer for 2-D outputs) maps student channels onto
teacher channels before the L2; the adapters train with the student and are discarded
afterwards.
"""

import dataclasses

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..core.errors import ConfigError, suggest
from ..core.schema import Options, option
from ..core.surgery import eval_mode


@dataclasses.dataclass
class FeaturePair(Options):
    """One intermediate output the student learns to match (an entry of `features`)."""

    student: str = option(doc="student layer name, as in `model.named_sublayers()` (e.g. `features.9`)")
    teacher: str = option(doc="teacher layer name whose output is the target")
    weight: float = option(1.0, "weight of this pair's mean squared error in the total loss", ge=0)

    def check(self):
        for side in ("student", "teacher"):
            if not getattr(self, side).strip():
                raise ConfigError(side, "empty layer name", "give a name from model.named_sublayers()")


def layer_names(model):
    """The names `features` may refer to: every sublayer of `model`."""
    return [name for name, _ in model.named_sublayers() if name]


def check_layer_names(pairs, student, teacher, path="features"):
    """Raise ConfigError for a pair naming a layer its model lacks (closest names suggested)."""
    for side, model in (("student", student), ("teacher", teacher)):
        names = layer_names(model)
        known = set(names)
        for i, pair in enumerate(pairs):
            name = getattr(pair, side)
            if name not in known:
                raise ConfigError(f"{path}[{i}].{side}", f"the {side} model has no layer {name!r}",
                                  suggest(name, names))


def make_adapter(student_shape, teacher_shape):
    """A layer mapping a student output onto the teacher's shape; None when they already match."""
    if list(student_shape[1:]) == list(teacher_shape[1:]):
        return None
    if len(student_shape) != len(teacher_shape) or len(student_shape) not in (2, 4) or \
            list(student_shape[2:]) != list(teacher_shape[2:]):
        raise ValueError(f"student output {list(student_shape)} cannot be mapped onto teacher output "
                         f"{list(teacher_shape)}: only the channel count (axis 1) may differ")
    if len(student_shape) == 4:
        return nn.Conv2D(student_shape[1], teacher_shape[1], 1)
    return nn.Linear(student_shape[1], teacher_shape[1])


class FeatureDistiller(nn.Layer):
    """Hooks the named layers of a student and a teacher and holds the adapters between them.

    Build it with a sample input (shapes are probed once, in eval mode, without gradients),
    call `attach()` before training and `detach()` after; `loss()` is the weighted sum of the
    mean squared errors of the current batch. Only the adapters are sublayers (trainable);
    the two models are never registered here.
    """

    def __init__(self, pairs, student, teacher, sample, path="features"):
        super().__init__()
        self.pairs = [p if isinstance(p, FeaturePair) else FeaturePair(**p) for p in pairs]
        check_layer_names(self.pairs, student, teacher, path)
        self._models = {"student": student, "teacher": teacher}  # a plain dict: not sublayers
        self._outputs = {"student": {}, "teacher": {}}
        self._handles = []
        shapes = self._probe(sample)
        adapters = []
        for i, pair in enumerate(self.pairs):
            s_shape, t_shape = shapes["student"][pair.student], shapes["teacher"][pair.teacher]
            try:
                adapters.append(make_adapter(s_shape, t_shape))
            except ValueError as err:
                raise ConfigError(f"{path}[{i}]", str(err),
                                  "pair layers whose outputs have the same spatial size") from None
        # nn.Identity keeps the list indexable; the `mapped` flags say which ones learn.
        self.mapped = [a is not None for a in adapters]
        self.adapters = nn.LayerList([a if a is not None else nn.Identity() for a in adapters])
        self.shapes = [(shapes["student"][p.student], shapes["teacher"][p.teacher]) for p in self.pairs]

    def _probe(self, sample):
        shapes = {}
        self.attach()
        try:
            with paddle.no_grad():
                for side, model in self._models.items():
                    with eval_mode(model):  # a train-mode probe would move BatchNorm statistics
                        model(sample)
                    shapes[side] = {name: list(out.shape) for name, out in self._outputs[side].items()}
        finally:
            self.detach()
        for side, names in (("student", [p.student for p in self.pairs]), ("teacher", [p.teacher for p in self.pairs])):
            for name in names:
                if name not in shapes[side]:
                    raise ConfigError("features", f"{side} layer {name!r} is not called in the forward pass "
                                                  "or does not return a single tensor",
                                      "pick a layer that runs in forward() and outputs a tensor")
        return shapes

    def attach(self):
        """Register the forward hooks on both models (idempotent)."""
        if self._handles:
            return self
        for side, model in self._models.items():
            layers = dict(model.named_sublayers())
            names = {getattr(p, side) for p in self.pairs}
            for name in names:
                self._handles.append(layers[name].register_forward_post_hook(self._keeper(side, name)))
        return self

    def detach(self):
        """Remove the hooks and forget the kept outputs."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._outputs = {"student": {}, "teacher": {}}

    def _keeper(self, side, name):
        def hook(layer, inputs, output):
            if isinstance(output, paddle.Tensor):
                # A layer called twice in one forward (a shared ReLU) keeps its last output.
                self._outputs[side][name] = output
        return hook

    def loss(self):
        """Weighted MSE between (adapted) student and teacher outputs of the last forward passes."""
        total = None
        for pair, adapter in zip(self.pairs, self.adapters):
            student = self._outputs["student"].get(pair.student)
            teacher = self._outputs["teacher"].get(pair.teacher)
            if student is None or teacher is None:
                raise RuntimeError("feature distillation found no kept outputs: run teacher and student "
                                   "forward after attach()")
            term = pair.weight * F.mse_loss(adapter(student), teacher.detach())
            total = term if total is None else total + term
        return total
