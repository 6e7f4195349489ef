"""Calibration observers: how post-training quantization chooses the range of each tensor.

One small class per method behind one interface, computed in numpy so each is checked
against a plain numpy reference (tests/test_quant_observers.py):

    observer = get_observer("hist", percentile=0.9999)
    for batch in batches:
        observer.observe(array)          # any float array, one calibration batch
    observer.threshold()                 # the abs value mapped to the largest integer (Paddle's "scale")

Activation methods: `abs_max` (largest |x| seen), `avg` (mean of the per-batch abs-max),
`moving_average_abs_max` (exponential moving average of the per-batch abs-max), `hist`
(a percentile of |x|), `mse` (the threshold whose quantize-dequantize error is smallest)
and `kl` (the threshold, between half the abs-max and the abs-max, whose quantized
distribution is closest in KL divergence, as TensorRT calibrates). Weight method:
`channel_wise_abs_max` (one abs-max per output channel); `abs_max` also serves as the
per-tensor weight observer.

The histogram methods keep one histogram of |x| with a fixed number of bins over
[0, range]. When a batch holds a larger value, the range doubles (as often as needed) and
pairs of bins merge; the edges of the coarse bins are edges of the fine ones, so the
result is exactly the histogram of all values seen at the final range.

Observers register themselves by name (`class Mine(Observer, name="mine")`): the registry
is what `get_observer`, the `ptq` stage's `algo` option and its docs accept.
"""

import inspect

import numpy as np

from ..core.errors import ConfigError, suggest

__all__ = ["Observer", "OBSERVERS", "activation_methods", "get_observer", "AbsMax", "Average", "MovingAverageAbsMax",
           "Percentile", "MSE", "KL", "ChannelWiseAbsMax"]

OBSERVERS = {}    # name -> Observer class
ALIASES = {}      # other names -> name
TINY = 1e-8       # threshold of an all-zero tensor: quantizing zeros needs a positive scale


class Observer:
    """Base class: statistics of one tensor over calibration batches, then its quantization threshold.

    `bits` is the integer width (8 -> values map to [-127, 127]); `per_channel` observers
    return one threshold per index of `axis`. Subclasses implement `observe` and `threshold`.
    """

    name = ""
    per_channel = False
    activations = True    # usable for activations (the `algo` option); False: weights only

    def __init_subclass__(cls, name=None, aliases=(), **kwargs):
        super().__init_subclass__(**kwargs)
        if name:
            cls.name = name
            OBSERVERS[name] = cls
            ALIASES.update({alias: name for alias in aliases})

    def __init__(self, bits=8):
        self.bits = int(bits)
        self.batches = 0

    @property
    def levels(self):
        """The largest integer of the symmetric signed range (127 at 8 bits)."""
        return (1 << (self.bits - 1)) - 1

    def observe(self, array):
        raise NotImplementedError

    def threshold(self):
        raise NotImplementedError

    def _checked(self):
        if self.batches == 0:
            raise ConfigError("calibration", f"the {self.name} observer saw no data", "calibrate on at least one batch")

    def __repr__(self):
        return f"{type(self).__name__}(bits={self.bits})"


def _abs_max(array):
    return float(np.max(np.abs(array))) if np.size(array) else 0.0


class AbsMax(Observer, name="abs_max"):
    """The largest |x| over every batch: nothing is clipped (outliers stretch the range)."""

    def __init__(self, bits=8):
        super().__init__(bits)
        self.value = 0.0

    def observe(self, array):
        self.value = max(self.value, _abs_max(array))
        self.batches += 1

    def threshold(self):
        self._checked()
        return max(self.value, TINY)


class Average(Observer, name="avg"):
    """The mean over batches of each batch's abs-max (PaddleSlim's `avg`): one extreme batch weighs 1/N."""

    def __init__(self, bits=8):
        super().__init__(bits)
        self.total = 0.0

    def observe(self, array):
        self.total += _abs_max(array)
        self.batches += 1

    def threshold(self):
        self._checked()
        return max(self.total / self.batches, TINY)


class MovingAverageAbsMax(Observer, name="moving_average_abs_max", aliases=("moving_average",)):
    """Exponential moving average of the per-batch abs-max: the first batch sets it, then
    `value = rate * value + (1 - rate) * batch_abs_max` (as QAT's activation quanters do)."""

    def __init__(self, bits=8, moving_rate=0.9):
        super().__init__(bits)
        self.moving_rate = float(moving_rate)
        self.value = None

    def observe(self, array):
        batch = _abs_max(array)
        self.value = batch if self.value is None else self.moving_rate * self.value + (1 - self.moving_rate) * batch
        self.batches += 1

    def threshold(self):
        self._checked()
        return max(self.value, TINY)


class _Histogram(Observer):
    """A histogram of |x| over [0, range] with `bins` bins; the range doubles when a batch exceeds it."""

    def __init__(self, bits=8, bins=2048):
        super().__init__(bits)
        self.bins = int(bins)
        self.range = 0.0
        self.counts = np.zeros(self.bins, dtype=np.float64)

    def observe(self, array):
        values = np.abs(np.asarray(array, dtype=np.float32)).reshape(-1)
        self.batches += 1
        top = float(values.max()) if values.size else 0.0
        if top == 0.0 and self.range == 0.0:
            self.counts[0] += values.size  # zeros only so far: they sit in the first bin of any range
            return
        if self.range == 0.0:
            self.range = top
        while top > self.range:
            self._double()
        self.counts += np.histogram(values, bins=self.bins, range=(0.0, self.range))[0]

    def _double(self):
        # Bins 2k and 2k+1 of [0, r] are bin k of [0, 2r]; the upper half of [0, 2r] starts empty.
        merged = self.counts.reshape(-1, 2).sum(axis=1)
        self.counts = np.concatenate([merged, np.zeros(self.bins - merged.size)])
        self.range *= 2.0

    @property
    def width(self):
        return self.range / self.bins

    def centers(self):
        return (np.arange(self.bins) + 0.5) * self.width

    def threshold(self):
        self._checked()
        if self.range == 0.0:
            return TINY
        return max(self._choose(), TINY)

    def _choose(self):
        raise NotImplementedError


class Percentile(_Histogram, name="hist", aliases=("percentile", "histogram")):
    """The `percentile` quantile of |x| (upper edge of the bin where the cumulative count reaches it):
    the rarest values are clipped so the rest get finer steps."""

    def __init__(self, bits=8, percentile=0.9999, bins=2048):
        super().__init__(bits, bins)
        self.percentile = float(percentile)

    def _choose(self):
        cumulative = np.cumsum(self.counts)
        index = int(np.searchsorted(cumulative, self.percentile * cumulative[-1]))
        return (min(index, self.bins - 1) + 1) * self.width


class MSE(_Histogram, name="mse"):
    """The threshold (a bin edge) whose symmetric quantize-dequantize of the histogram has the
    smallest squared error: clipping error above it against rounding error below it."""

    def _choose(self):
        centers, counts = self.centers(), self.counts
        first = max(1, self.bins // 64)  # thresholds below 1/64 of the range clip nearly everything
        candidates = (np.arange(first, self.bins) + 1) * self.width
        errors = np.empty(candidates.size)
        for i, t in enumerate(candidates):
            step = t / self.levels
            restored = np.minimum(np.round(centers / step), self.levels) * step
            errors[i] = np.dot(counts, (centers - restored) ** 2)
        return float(candidates[int(np.argmin(errors))])


class KL(_Histogram, name="kl", aliases=("entropy",)):
    """The threshold whose quantized histogram is closest to the clipped one in KL divergence
    (TensorRT's entropy calibration, over the non-negative |x| histogram).

    As in Paddle's static PTQ, only thresholds from half the largest value seen up to it are
    tried, and only bin edges with values just below them: on the sparse histograms of a few
    calibration batches the divergence alone can clip most of a layer's range away.
    """

    def _choose(self):
        levels = self.levels + 1  # |x| maps to levels 0..127: 128 quantized bins
        counts = self.counts
        last = int(np.flatnonzero(counts)[-1]) + 1
        best, best_divergence = last, np.inf
        for stop in range(max(levels, last // 2), last + 1):
            if counts[stop - 1] == 0:
                continue
            divergence = _kl_of_clip(counts, stop, levels)
            if divergence < best_divergence:
                best, best_divergence = stop, divergence
        return best * self.width


def _kl_of_clip(counts, stop, levels):
    """KL(P || Q): P = counts[:stop] with the clipped tail added to its last bin; Q = counts[:stop] merged
    into `levels` equal groups (bin i in group i * levels // stop), each group's total spread evenly over
    its non-empty bins."""
    head = counts[:stop]
    p = head.copy()
    p[-1] += counts[stop:].sum()
    group = np.arange(stop) * levels // stop
    nonzero = head > 0
    totals = np.bincount(group, weights=head, minlength=levels)
    filled = np.bincount(group, weights=nonzero, minlength=levels)
    q = np.where(nonzero, totals[group] / np.maximum(filled[group], 1), 0.0)
    p_sum, q_sum = p.sum(), q.sum()
    if p_sum == 0 or q_sum == 0:
        return np.inf
    p, q = p / p_sum, q / q_sum
    mask = p > 0
    if np.any(q[mask] == 0):
        return np.inf  # the clipped tail landed in an empty last bin: Q cannot represent P
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


class ChannelWiseAbsMax(Observer, name="channel_wise_abs_max"):
    """Weights: the abs-max of each output channel (`axis`: 0 for Conv2D, 1 for Linear's [in, out])."""

    per_channel = True
    activations = False

    def __init__(self, bits=8, axis=0):
        super().__init__(bits)
        self.axis = int(axis)
        self.value = None

    def observe(self, array):
        array = np.asarray(array)
        axes = tuple(i for i in range(array.ndim) if i != self.axis % array.ndim)
        batch = np.max(np.abs(array), axis=axes) if axes else np.abs(array)
        self.value = batch if self.value is None else np.maximum(self.value, batch)
        self.batches += 1

    def threshold(self):
        self._checked()
        return np.where(self.value == 0, TINY, self.value).astype(np.float32)


def activation_methods():
    """Names of the registered observers usable for activations (the `algo` choices)."""
    return [name for name, cls in OBSERVERS.items() if cls.activations]


def get_observer(method="abs_max", path="algo", **options):
    """A new Observer of a registered name (or alias) or class, with the options it takes."""
    if isinstance(method, type) and issubclass(method, Observer):
        cls = method
    else:
        key = ALIASES.get(method, method)
        if key not in OBSERVERS:
            raise ConfigError(path, f"unknown calibration method {method!r}", suggest(str(method), list(OBSERVERS)))
        cls = OBSERVERS[key]
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in options.items() if k in accepted})
