"""Post-training quantization: observe a few batches of inputs, no training, then convert.

Built on Paddle's own `paddle.quantization.PTQ`, with slimkit's observers
(`slimkit.quant.observers`, numpy) plugged in as Paddle observer layers: activations get
the chosen calibration method, weights one abs-max per output channel (or per tensor).
PaddleSlim's own `PTQ` class is not used: its save only works with the process-wide
legacy-IR flag, which would change the user's whole session.
"""

import copy

import numpy as np
import paddle
from paddle.quantization.base_observer import BaseObserver
from paddle.quantization.factory import ObserverFactory

from .. import compat
from ..core.errors import ConfigError, DataError, suggest
from .layers import layers_to_quantize
from .observers import OBSERVERS, get_observer
from .qat import convert, quant_config

WEIGHT_OBSERVERS = ("channel_wise_abs_max", "abs_max")
# The output-channel axis of each quantizable layer's weight: Conv2D [out, in, kh, kw], Linear [in, out].
WEIGHT_AXIS = {paddle.nn.Conv2D: 0, paddle.nn.Linear: 1}


class ObserverLayer(BaseObserver):
    """A slimkit Observer as a Paddle observer layer: records each tensor it sees, passes it on unchanged."""

    def __init__(self, layer, method, bits, options, weight=False):
        super().__init__()
        if weight and OBSERVERS.get(method) is not None and OBSERVERS[method].per_channel:
            options = {**options, "axis": WEIGHT_AXIS.get(type(layer), 0)}
        self.observer = get_observer(method, **{"bits": bits, **options})
        self._scale = None

    def forward(self, input):
        self.observer.observe(input.numpy())
        self._scale = None
        return input

    def cal_thresholds(self):
        self._scale = paddle.to_tensor(np.asarray(self.observer.threshold(), dtype=np.float32))

    def scales(self):
        if self._scale is None:
            self.cal_thresholds()
        return self._scale

    def zero_points(self):
        return paddle.zeros_like(self.scales())

    def quant_axis(self):
        return self.observer.axis if self.observer.per_channel else -1

    def bit_length(self):
        return self.observer.bits


class Observe(ObserverFactory):
    """The factory paddle.quantization builds an ObserverLayer from, one per observed tensor."""

    def __init__(self, method="abs_max", bits=8, options=None, weight=False):
        super().__init__(method=method, bits=bits, options=dict(options or {}), weight=weight)

    def _get_class(self):
        return ObserverLayer


def activation_observer(algo, bits, **options):
    """The activation observer factory of a PTQ config (`algo`: a registered calibration method)."""
    observer = get_observer(algo, **options)  # an unknown name fails here, naming the closest one
    if not observer.activations:
        raise ConfigError("algo", f"{algo!r} observes weights only", suggest(algo, _activation_names()))
    return Observe(observer.name, bits, options)


def _activation_names():
    return [name for name, cls in OBSERVERS.items() if cls.activations]


def weight_observer(kind, bits):
    """The weight observer factory of a PTQ config: per output channel or per tensor abs-max."""
    if kind not in WEIGHT_OBSERVERS:
        raise ConfigError("weight_quantize_type", f"unknown weight observer {kind!r}",
                          suggest(kind, list(WEIGHT_OBSERVERS)))
    return Observe(kind, bits, weight=True)


def prepare_ptq(model, layer_types=("Conv2D", "Linear"), skip_layers=(), skip_types=(), weight_bits=8,
                activation_bits=8, algo="abs_max", weight_quantize_type="channel_wise_abs_max", input_shape=None,
                **observer_options):
    """A copy of `model` with observers on the chosen layers, in eval mode (model untouched).

    `observer_options` go to the calibration method (`percentile` for hist, `moving_rate`
    for moving_average_abs_max, `bins` for the histogram methods). `input_shape` also places
    observers where branches join (`joins`), for int8 residual convolutions.
    """
    names = layers_to_quantize(model, layer_types, skip_layers, skip_types)
    activation = activation_observer(algo, activation_bits, **observer_options)
    weight = weight_observer(weight_quantize_type, weight_bits)
    from paddle.quantization import PTQ

    work = copy.deepcopy(model)
    work.eval()
    config = quant_config(work, names, activation, weight, input_shape)
    with compat.session_guard():
        return PTQ(config).quantize(work, inplace=True)


def _inputs(batch):
    """The model input of a calibration batch: the batch itself, or the first item of (inputs, labels)."""
    if isinstance(batch, (list, tuple)):
        if not batch:
            raise DataError("a calibration batch is empty", "yield input batches, or (inputs, labels) pairs")
        batch = batch[0]
    return batch if isinstance(batch, paddle.Tensor) else paddle.to_tensor(np.asarray(batch, dtype=np.float32))


@paddle.no_grad()
def calibrate(observed, batches, progress=None, total=None):
    """Run `batches` through an observed model; returns how many were seen.

    A batch is an input array/tensor or an (inputs, labels) pair (labels are not used:
    calibration needs only inputs). `progress` shows a bar (None: only on a terminal);
    `total` is its length when `batches` has none.
    """
    from tqdm.auto import tqdm

    observed.eval()
    total = total if total is not None else (len(batches) if hasattr(batches, "__len__") else None)
    count = 0
    with tqdm(batches, total=total, desc="calibration", leave=False, unit="batch",
              disable=None if progress is None else not progress) as bar:
        for batch in bar:
            observed(_inputs(batch))
            count += 1
    return count


def quantize_post_training(model, batches, progress=None, **options):
    """PTQ in one call: observe `batches` on a copy of `model`, return the converted (quantized) copy."""
    observed = prepare_ptq(model, **options)
    if calibrate(observed, batches, progress) == 0:
        raise DataError("no calibration batch was read", "give at least one batch of inputs")
    return convert(observed)
