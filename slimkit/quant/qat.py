"""Quantization-aware training: put fake-quant layers into a copy of the model, train it, convert it.

Built on Paddle's own `paddle.quantization` (QuantConfig, QAT): weights use PaddleSlim's
channel-wise abs-max fake quanter (`FakeQuanterChannelWiseAbsMaxObserver`), activations
Paddle's moving-average abs-max quanter (`FakeQuanterWithAbsMaxObserver`). Only the layers
chosen by type (`Conv2D`, `Linear`; depthwise convs are `Conv2D` with groups) and not
skipped by name get quanters, so "which layers are quantized" is exactly what was asked.
"""

import copy
import warnings

import paddle

from .. import compat
from ..core.errors import ConfigError
from ..core.schema import _suggest
from ..core.surgery import eval_mode
from .joins import observe_joins

# The layer types paddle.quantization can replace by a quantized twin (its DEFAULT_QAT_LAYER_MAPPINGS).
QUANTIZABLE_TYPES = {"Conv2D": paddle.nn.Conv2D, "Linear": paddle.nn.Linear}
WEIGHT_QUANTIZERS = ("channel_wise_abs_max", "abs_max")
ACTIVATION_QUANTIZERS = ("moving_average_abs_max",)


def check_layer_types(names, path="quantizable_layer_type"):
    """Raise ConfigError for a layer type name paddle.quantization cannot quantize."""
    if not names:
        raise ConfigError(path, "no layer type to quantize", f"use e.g. {list(QUANTIZABLE_TYPES)}")
    for i, name in enumerate(names):
        if name not in QUANTIZABLE_TYPES:
            raise ConfigError(f"{path}[{i}]", f"{name!r} is not a layer type paddle.quantization can quantize",
                              _suggest(name, list(QUANTIZABLE_TYPES)))


def layers_to_quantize(model, layer_types, skip=(), path="skip"):
    """Structured names of the layers that get quanters: `layer_types` minus the `skip` names.

    Raises ConfigError naming the closest layer when a `skip` entry is not a quantizable
    layer of `model`, before anything is changed.
    """
    check_layer_types(layer_types)
    types = tuple(QUANTIZABLE_TYPES[t] for t in layer_types)
    chosen = [name for name, layer in model.named_sublayers() if type(layer) in types]
    for i, name in enumerate(skip):
        if name not in chosen:
            raise ConfigError(f"{path}[{i}]", f"{name!r} is not a quantizable layer of the model",
                              _suggest(name, chosen))
    return [name for name in chosen if name not in set(skip)]


def weight_quanter(kind, bits):
    """The weight fake quanter of a QAT config."""
    if kind == "channel_wise_abs_max":
        return compat.channel_wise_weight_quanter(bits)  # PaddleSlim's, without its cross-process all-reduce
    if kind == "abs_max":
        from paddle.quantization.quanters import FakeQuanterWithAbsMaxObserver

        # A moving rate of 0 keeps no history: the scale is the current abs-max of the weight.
        return FakeQuanterWithAbsMaxObserver(moving_rate=0.0, bit_length=bits)
    raise ConfigError("weight_quantize_type", f"unknown weight quantizer {kind!r}",
                      _suggest(kind, list(WEIGHT_QUANTIZERS)))


def activation_quanter(kind, bits, moving_rate=0.9):
    """The activation fake quanter of a QAT config."""
    if kind == "moving_average_abs_max":
        from paddle.quantization.quanters import FakeQuanterWithAbsMaxObserver

        return FakeQuanterWithAbsMaxObserver(moving_rate=moving_rate, bit_length=bits)
    raise ConfigError("activation_quantize_type", f"unknown activation quantizer {kind!r}",
                      _suggest(kind, list(ACTIVATION_QUANTIZERS)))


def quant_config(model, names, activation, weight, input_shape=None):
    """A `paddle.quantization.QuantConfig` that quantizes exactly the layers `names` of `model`.

    With `input_shape`, `model` (a copy) also gets observers where branches join (`joins`).
    """
    from paddle.quantization import QuantConfig

    # No global config: layers not named here (BN, ReLU, pooling) get no observers.
    config = QuantConfig(activation=None, weight=None)
    stubs = observe_joins(model, input_shape) if input_shape is not None else []
    layers = dict(model.named_sublayers())
    # full_name() survives paddle's deepcopy of model and config; layer objects would not.
    config.add_name_config([layers[n].full_name() for n in names], activation=activation, weight=weight)
    if stubs:
        config.add_name_config([layers[n].full_name() for n in stubs], activation=activation, weight=None)
    return config


def quantize_for_training(model, layer_types=("Conv2D", "Linear"), skip=(), weight_bits=8, activation_bits=8,
                          weight_quantize_type="channel_wise_abs_max",
                          activation_quantize_type="moving_average_abs_max", moving_rate=0.9, input_shape=None):
    """A copy of `model` with fake-quant layers, in train mode, ready for `engine.train` (model untouched).

    `input_shape` also places quanters where branches join (`joins`), for int8 residual convolutions.
    """
    names = layers_to_quantize(model, list(layer_types), list(skip))
    from paddle.quantization import QAT

    work = copy.deepcopy(model)
    config = quant_config(work, names, activation_quanter(activation_quantize_type, activation_bits, moving_rate),
                          weight_quanter(weight_quantize_type, weight_bits), input_shape)
    work.train()
    with compat.session_guard():
        quantized = QAT(config).quantize(work, inplace=True)
    return quantized


def quantized_layer_names(model):
    """Structured names of the layers of `model` that carry a weight quanter (quantized layers)."""
    from paddle.nn.quant.format import ConvertibleQuantedLayer

    return [name for name, layer in model.named_sublayers() if isinstance(layer, ConvertibleQuantedLayer)]


def convert(quantized, remain_weight=True):
    """A converted copy of a QAT/PTQ model: quantize/dequantize layers that `paddle.jit.save` exports.

    `remain_weight=True` keeps float weights in front of a quantize op, so the export's
    weight pass can store them as int8 with their scales.
    """
    from paddle.quantization import QAT
    from paddle.quantization.config import QuantConfig

    compat.fix_linear_quanter_zero_point()
    with eval_mode(quantized), warnings.catch_warnings():
        # paddle's LinearQuanter copies its scales with paddle.to_tensor(tensor) and warns about it.
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        # convert() reads only the quanters already in the model; the config is unused.
        return QAT(QuantConfig(activation=None, weight=None)).convert(quantized, inplace=False,
                                                                      remain_weight=remain_weight)
