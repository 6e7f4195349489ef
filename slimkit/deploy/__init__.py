"""The deployed model: exports for Paddle Inference and ONNX Runtime, the runtimes that run them, timing."""

from .paddle_inference import (INFERENCE_DIR, InferenceModel, export_float, export_int8, export_stage,
                               exported_size, int8_verdict, stage_export_prefix)
from .timing import Timing, cpu_features, eager_latency, time_runners

__all__ = ["InferenceModel", "export_float", "export_int8", "export_stage", "exported_size", "int8_verdict",
           "stage_export_prefix", "INFERENCE_DIR", "Timing", "time_runners", "eager_latency", "cpu_features"]
