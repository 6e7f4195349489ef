"""Models: the built-in zoo, building by name or `package.module:function`, and slimkit's save and load."""

from .checkpoint import load_into, load_weights, record_spec, save_model
from .zoo import (REGISTRY, BasicBlock, CifarResNet, MobileNetV1, ModelConfig, SmallCNN, SmallUNet, available_models,
                  build_model, import_factory, mobilenet_v1, resnet20, resnet56, small_cnn, small_unet,
                  vision_model_names)

__all__ = ["ModelConfig", "build_model", "available_models", "vision_model_names", "import_factory", "load_weights",
           "save_model", "load_into", "record_spec", "REGISTRY", "SmallCNN", "BasicBlock", "CifarResNet",
           "MobileNetV1", "SmallUNet", "small_cnn", "resnet20", "resnet56", "mobilenet_v1", "small_unet"]
