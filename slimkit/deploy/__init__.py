"""The deployed model: exports for Paddle Inference and ONNX Runtime, and the runtimes that run them."""

from .paddle_inference import (INFERENCE_DIR, InferenceModel, export_float, export_int8, export_stage,
                               exported_size, int8_verdict, stage_export_prefix)
from ..core.cpu import cpu_features  # handed on: the deployed latency depends on them
# The timer every latency goes through:
from ..report.timing import Clock, Measurement, Precision, Timing, eager_latency, measure, time_runners

__all__ = ["InferenceModel", "export_float", "export_int8", "export_stage", "exported_size", "int8_verdict",
           "stage_export_prefix", "INFERENCE_DIR", "measure", "Precision", "Clock", "Measurement", "Timing",
           "time_runners", "eager_latency", "cpu_features"]
