"""Distillation losses on logits (Hinton et al. 2015) and the engine loss that runs the teacher.

    total = alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))

The T^2 factor keeps the gradient of the soft term at the same scale whatever the
temperature (the softened gradients shrink as 1/T^2), so `alpha` means the same thing
at T=2 and T=8. PaddleSlim's `Distill` divides by T without this rescaling.
"""

import paddle
import paddle.nn.functional as F

KD_LOSSES = ("kl", "soft_ce", "mse")


def softmax_with_temperature(logits, temperature=1.0):
    """The softened distribution softmax(logits / T); higher T spreads the probability mass."""
    return F.softmax(logits / temperature, axis=-1)


def kd_loss(student_logits, teacher_logits, temperature=4.0, kind="kl", axis=-1):
    """The soft-target term alone, averaged over the batch (and, for dense scores, over the positions).

    `kl`: T^2 * KL(p_teacher || p_student) with p = softmax(logits / T) over `axis` (the
    class axis: -1 for [N, classes], 1 for [N, classes, H, W] scores, per pixel);
    `soft_ce`: T^2 * cross-entropy of p_student against p_teacher (KL plus the teacher's
    entropy, a constant: same gradients, different value);
    `mse`: mean squared difference of the raw logits (the temperature is not used).
    """
    if kind not in KD_LOSSES:
        raise ValueError(f"unknown kd_loss {kind!r}; valid: {', '.join(KD_LOSSES)}")
    if kind == "mse":
        return F.mse_loss(student_logits, teacher_logits)
    # log_softmax on both sides: no exp/log of tiny probabilities, finite for huge logits.
    log_student = F.log_softmax(student_logits / temperature, axis=axis)
    log_teacher = F.log_softmax(teacher_logits / temperature, axis=axis)
    if kind == "kl":
        soft = (paddle.exp(log_teacher) * (log_teacher - log_student)).sum(axis=axis).mean()
    else:
        soft = -(paddle.exp(log_teacher) * log_student).sum(axis=axis).mean()
    return soft * (temperature ** 2)


def distillation_loss(student_logits, teacher_logits, labels, temperature=4.0, alpha=0.5, kind="kl",
                      label_smoothing=0.0):
    """`alpha * CE + (1 - alpha) * kd_loss`; returns (total, {"ce": ..., "kd": ...}) as tensors.

    alpha=1 is plain training on the labels, alpha=0 pure distillation.
    """
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    kd = kd_loss(student_logits, teacher_logits, temperature, kind)
    return alpha * ce + (1.0 - alpha) * kd, {"ce": ce, "kd": kd}


class DistillLoss:
    """The engine's `loss_fn(model, images, labels)` for distillation.

    Runs the teacher once per batch, in eval mode and under `paddle.no_grad()`, on the very
    batch (augmentation included) the student sees; adds the feature terms of an optional
    `FeatureDistiller`. Keeps the per-step loss parts in `history` (floats).
    """

    def __init__(self, teacher, temperature=4.0, alpha=0.5, kind="kl", label_smoothing=0.0, features=None):
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha
        self.kind = kind
        self.label_smoothing = label_smoothing
        self.features = features
        self.history = []

    def __call__(self, model, images, labels):
        if self.teacher.training:
            self.teacher.eval()
        with paddle.no_grad():
            teacher_logits = self.teacher(images)
        logits = model(images)
        if list(teacher_logits.shape) != list(logits.shape):
            raise ValueError(f"teacher logits {list(teacher_logits.shape)} and student logits "
                             f"{list(logits.shape)} differ; both must predict the same classes")
        loss, parts = distillation_loss(logits, teacher_logits, labels, self.temperature, self.alpha,
                                        self.kind, self.label_smoothing)
        if self.features is not None:
            parts["feature"] = self.features.loss()
            loss = loss + parts["feature"]
        self.history.append({"loss": float(loss), **{k: float(v) for k, v in parts.items()}})
        return loss, logits

    def mean_of_last(self, steps):
        """Mean of each loss part over the last `steps` steps (e.g. the final epoch)."""
        recent = self.history[-steps:] if steps else self.history
        if not recent:
            return {}
        return {key: sum(h[key] for h in recent) / len(recent) for key in recent[0]}
