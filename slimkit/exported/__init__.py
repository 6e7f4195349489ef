"""Exported inference models (`.json` or `.pdmodel` with `.pdiparams`) rebuilt as paddle.nn.Layers."""

from .api import from_inference, program_input_shape
from .layers import Affine, ExportedModel, Parameters
from .translate import Unsupported, register_translator, registered_translators, translator_for, unregister_translator

__all__ = ["from_inference", "program_input_shape", "ExportedModel", "Affine", "Parameters", "register_translator",
           "unregister_translator", "translator_for", "registered_translators", "Unsupported"]
