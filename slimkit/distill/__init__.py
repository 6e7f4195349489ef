"""Knowledge distillation losses and feature adapters."""

from .features import FeatureDistiller, FeaturePair
from .losses import KD_LOSSES, DistillLoss, distillation_loss, kd_loss, softmax_with_temperature

__all__ = ["distillation_loss", "kd_loss", "softmax_with_temperature", "KD_LOSSES", "DistillLoss",
           "FeatureDistiller", "FeaturePair"]
