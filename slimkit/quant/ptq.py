"""Post-training quantization: observe a few batches, no training, then convert.

Built on Paddle's own `paddle.quantization.PTQ` with observers from Paddle (abs-max) and
PaddleSlim (`paddleslim.quant.observers`: avg, hist, KL, MSE and the channel-wise weight
observer). PaddleSlim's own `PTQ` class is not used: its save only works with the
process-wide legacy-IR flag, which would change the user's whole session.
"""

import copy

import paddle

from .. import compat
from ..core.errors import ConfigError
from ..core.schema import _suggest
from .qat import convert, layers_to_quantize, quant_config

ALGOS = ("abs_max", "avg", "hist", "kl", "mse")
WEIGHT_OBSERVERS = ("channel_wise_abs_max", "abs_max")


def activation_observer(algo, bits):
    """The activation observer of a PTQ config (`algo`: how the activation range is chosen)."""
    if algo == "abs_max":
        from paddle.quantization.observers import AbsmaxObserver

        return AbsmaxObserver(quant_bits=bits)
    if algo not in ALGOS:
        raise ConfigError("algo", f"unknown calibration algorithm {algo!r}", _suggest(algo, list(ALGOS)))
    compat.import_paddleslim()
    from paddleslim.quant import observers

    cls = {"avg": observers.AVGObserver, "hist": observers.HistObserver, "kl": observers.KLObserver,
           "mse": observers.MSEObserver}[algo]
    return cls(quant_bits=bits)


def weight_observer(kind, bits):
    """The weight observer of a PTQ config."""
    if kind == "channel_wise_abs_max":
        compat.import_paddleslim()
        from paddleslim.quant.observers import AbsMaxChannelWiseWeightObserver

        return AbsMaxChannelWiseWeightObserver(quant_bits=bits)
    if kind == "abs_max":
        from paddle.quantization.observers import AbsmaxObserver

        return AbsmaxObserver(quant_bits=bits)
    raise ConfigError("weight_quantize_type", f"unknown weight observer {kind!r}",
                      _suggest(kind, list(WEIGHT_OBSERVERS)))


def prepare_ptq(model, layer_types=("Conv2D", "Linear"), skip=(), weight_bits=8, activation_bits=8,
                algo="abs_max", weight_quantize_type="channel_wise_abs_max", input_shape=None):
    """A copy of `model` with observers on the chosen layers, in eval mode (model untouched).

    `input_shape` also places observers where branches join (`joins`), for int8 residual convolutions.
    """
    names = layers_to_quantize(model, list(layer_types), list(skip))
    from paddle.quantization import PTQ

    work = copy.deepcopy(model)
    work.eval()
    config = quant_config(work, names, activation_observer(algo, activation_bits),
                          weight_observer(weight_quantize_type, weight_bits), input_shape)
    with compat.session_guard():
        return PTQ(config).quantize(work, inplace=True)


@paddle.no_grad()
def calibrate(observed, batches):
    """Run `batches` (iterable of (images, labels)) through an observed model; returns the count."""
    observed.eval()
    count = 0
    for images, _ in batches:
        observed(images)
        count += 1
    return count


def quantize_post_training(model, batches, **options):
    """PTQ in one call: observe `batches` on a copy of `model`, return the converted (quantized) copy."""
    observed = prepare_ptq(model, **options)
    if calibrate(observed, batches) == 0:
        raise ConfigError("calibration_batches", "no calibration batch was read", "check the calibration split")
    return convert(observed)
