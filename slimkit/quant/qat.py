"""Quantization-aware training: put fake-quant layers into a copy of the model, train it, convert it.

Built on Paddle's own `paddle.quantization` (QuantConfig, QAT): weights use PaddleSlim's
channel-wise abs-max fake quanter (`FakeQuanterChannelWiseAbsMaxObserver`), activations
Paddle's moving-average abs-max quanter (`FakeQuanterWithAbsMaxObserver`). Only the layers
chosen by type (`Conv2D`, `Linear`; depthwise convs are `Conv2D` with groups) and not
skipped by name get quanters, so "which layers are quantized" is exactly what was asked.
"""

import copy
import warnings


from .. import compat
from ..core.errors import ConfigError, suggest
from ..core.surgery import eval_mode
from .joins import observe_joins
from .layers import layers_to_quantize

WEIGHT_QUANTIZERS = ("channel_wise_abs_max", "abs_max")
ACTIVATION_QUANTIZERS = ("moving_average_abs_max",)


def weight_quanter(kind, bits):
    """The weight fake quanter of a QAT config."""
    if kind == "channel_wise_abs_max":
        return compat.channel_wise_weight_quanter(bits)  # PaddleSlim's, without its cross-process all-reduce
    if kind == "abs_max":
        from paddle.quantization.quanters import FakeQuanterWithAbsMaxObserver

        # A moving rate of 0 keeps no history: the scale is the current abs-max of the weight.
        return FakeQuanterWithAbsMaxObserver(moving_rate=0.0, bit_length=bits)
    raise ConfigError("weight_quantize_type", f"unknown weight quantizer {kind!r}",
                      suggest(kind, list(WEIGHT_QUANTIZERS)))


def activation_quanter(kind, bits, moving_rate=0.9):
    """The activation fake quanter of a QAT config."""
    if kind == "moving_average_abs_max":
        from paddle.quantization.quanters import FakeQuanterWithAbsMaxObserver

        return FakeQuanterWithAbsMaxObserver(moving_rate=moving_rate, bit_length=bits)
    raise ConfigError("activation_quantize_type", f"unknown activation quantizer {kind!r}",
                      suggest(kind, list(ACTIVATION_QUANTIZERS)))


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


def quantize_for_training(model, layer_types=("Conv2D", "Linear"), skip_layers=(), skip_types=(), weight_bits=8,
                          activation_bits=8, weight_quantize_type="channel_wise_abs_max",
                          activation_quantize_type="moving_average_abs_max", moving_rate=0.9, input_shape=None):
    """A copy of `model` with fake-quant layers, in train mode, ready for `engine.train` (model untouched).

    `skip_layers` / `skip_types` keep layers float by name or by type (`slimkit.quant.layers`);
    `input_shape` also places quanters where branches join (`joins`), for int8 residual convolutions.
    """
    names = layers_to_quantize(model, layer_types, skip_layers, skip_types)
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

    return [name for name, layer in model.named_sublayers() if isinstance(layer, ConvertibleQuantedLayer)
            and any(getattr(layer, q, None) is not None for _, q in layer.weights_to_quanters())]


def keep_float(quantized, names):
    """A copy of a QAT/PTQ model (not converted yet) whose layers `names` compute in float again.

    Their weight and activation quanters are dropped, so `convert` and the export give them
    no quantize/dequantize ops; their weights are the float ones they always kept.
    """
    from paddle.nn.quant.format import ConvertibleQuantedLayer

    copied = copy.deepcopy(quantized)
    if not names:
        return copied
    layers = dict(copied.named_sublayers())
    for name in names:
        layer = layers[name]
        if not isinstance(layer, ConvertibleQuantedLayer) or layer.converted:
            raise ValueError(f"{name} is not an unconverted quantized layer")
        for quanter in [q for _, q in layer.weights_to_quanters()] + list(layer.activation_quanters()):
            setattr(layer, quanter, None)
        layer.converted = True  # nothing left to convert: convert() and the export pass it by
    return copied


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
