"""Confidence intervals of medians and of ratios between runners timed in the same rounds.

A latency on a shared machine is a distribution, not a number: other work preempts the
runs, evicts caches and drifts in and out. What holds from one run to the next is the
ratio between two models timed turn by turn, round after round: within one round both see
the same machine. So a ratio is estimated per round (runner over reference, both from that
round) and summarised by the median over rounds, with the distribution-free interval of a
median: the order statistics k and n-k+1 of the sorted values, k from the binomial
distribution. It needs no resampling (it is exact for independent rounds, deterministic and
cheap enough to check after every round) and is what a bootstrap of the median over rounds
approximates.
"""

import dataclasses
import math

import numpy as np

CONFIDENCE = 0.95


def order_rank(n, confidence=CONFIDENCE):
    """The largest k (1-based) with P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2; 0 when n is too small."""
    alpha = (1.0 - confidence) / 2.0
    if n > 1000:  # the normal approximation is exact to the rank at this size
        z = _z(confidence)
        return max(0, int(math.floor((n - z * math.sqrt(n)) / 2.0)))
    total, below, k = 2 ** n, 0, 0
    for i in range(n):
        below += math.comb(n, i)
        if below * 1.0 / total > alpha:
            break
        k = i + 1
    return k


def _z(confidence):
    # Two-sided normal quantile by bisection on erf (the standard library has no inverse).
    lo, hi, target = 0.0, 10.0, confidence
    for _ in range(60):
        mid = (lo + hi) / 2
        if math.erf(mid / math.sqrt(2)) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def median_interval(values, confidence=CONFIDENCE):
    """(median, low, high) of `values`; the interval spans all values when there are too few for `confidence`."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, math.nan
    k = order_rank(n, confidence)
    median = float(np.median(x))
    if k == 0:
        return median, float(x[0]), float(x[-1])
    return median, float(x[k - 1]), float(x[n - k])


@dataclasses.dataclass(frozen=True)
class Interval:
    """A median with its confidence interval: a latency (ms) or a ratio between two runners."""

    value: float
    low: float
    high: float
    rounds: int
    confidence: float = CONFIDENCE

    @classmethod
    def of(cls, values, confidence=CONFIDENCE):
        value, low, high = median_interval(values, confidence)
        return cls(value, low, high, int(np.size(values)), confidence)

    @property
    def width(self):
        """The interval's width relative to its value (0.04: the value is known to within about +-2 %)."""
        if not self.value or math.isnan(self.value):
            return math.inf
        return (self.high - self.low) / abs(self.value)

    def contains(self, x):
        return self.low <= x <= self.high

    def text(self, digits=3, suffix=""):
        """'0.512x (0.503-0.521)' style: the value and its interval."""
        return f"{self.value:.{digits}f}{suffix} ({self.low:.{digits}f}-{self.high:.{digits}f})"

    def to_dict(self, digits=4):
        return {"value": round(self.value, digits), "low": round(self.low, digits), "high": round(self.high, digits),
                "rounds": self.rounds, "confidence": self.confidence}

    @classmethod
    def from_dict(cls, data):
        return cls(data["value"], data["low"], data["high"], data.get("rounds", 0),
                   data.get("confidence", CONFIDENCE))
