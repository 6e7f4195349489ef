"""Quantization-aware training, post-training quantization and int8 export."""

from .export import InferenceModel, export_float, export_quantized, exported_size, int8_verdict
from .layers import layers_to_quantize
from .observers import OBSERVERS, Observer, get_observer
from .ptq import calibrate, prepare_ptq, quantize_post_training
from .qat import convert, keep_float, quantize_for_training, quantized_layer_names

__all__ = ["quantize_for_training", "prepare_ptq", "calibrate", "quantize_post_training", "convert", "keep_float",
           "layers_to_quantize", "quantized_layer_names", "export_quantized", "export_float", "exported_size",
           "InferenceModel", "int8_verdict", "Observer", "OBSERVERS", "get_observer"]
