"""Time models where they run: runners interleaved round by round until the figures are known well enough.

On a shared, noisy machine a latency measured now and another measured a minute later do
not compare; runs of different models taken turn by turn do. `measure` is the one timer:
it warms every runner up, then times them round-robin, in a new random order every round
(in a fixed order each runner would always follow the same one and inherit its caches). In
every round each runner is first run `rewarm` times untimed (its weights back in the
caches the others used), then `calls` times timed.
After `min_rounds` it judges the figures asked for (`compare`): the ratio between two
runners, computed per round and summarised by its median with a confidence interval over
rounds (slimkit.report.intervals), or one runner's median latency. It stops once every
interval is narrower than `width`, or when `budget` seconds or `max_rounds` are used up;
the Measurement then says the figures are noisy, and by how much.

Each run is read on two clocks: the wall clock and the process's CPU time. On a machine
other work shares, the wall time of a run includes the time the process waited for a core,
which has nothing to do with the model; the CPU time does not. For a one-thread predictor on
the CPU the CPU time of a run is its wall time on an idle core, so that is what `clock="cpu"`
reports; several threads or a GPU need the wall clock. The share CPU/wall of every run says
how often other work preempted it (docs/benchmarks.md has what was measured on this).

A runner is any no-argument callable: a Paddle Inference predictor's `run`, an ONNX Runtime
session call, an eager forward. `time_runners` is the fixed-count form of the same timer.
"""

import dataclasses
import math
import os
import time
from typing import Callable

import numpy as np
import paddle

from ..core import device as devices
from .intervals import CONFIDENCE, Interval

CLOCKS = ("cpu", "wall")
PREEMPTED_SHARE = 0.9  # a run whose CPU/wall share falls below 0.9 of its runner's usual share was preempted
# How far a ratio between two models moves from one run (process) to the next on the same
# shared machine, beyond what the rounds of one run show: three runs of
# benchmarks/deploy_latency.py in a row moved by up to 5 % end to end (docs/benchmarks.md),
# while each run's intervals were 1-3 % wide. A reported ratio's interval is widened by it.
DRIFT = 0.03


@dataclasses.dataclass(frozen=True)
class Clock:
    """Where the timer reads time, in seconds: the wall clock and this process's CPU time (both injectable)."""

    wall: Callable[[], float] = time.perf_counter
    cpu: Callable[[], float] = time.process_time


@dataclasses.dataclass(frozen=True)
class Precision:
    """How long and how precisely `measure` times: warm-up, round shape, stopping rule, clock."""

    warmup: int = 10          # runs of every runner before the first round
    calls: int = 1            # timed runs of every runner per round
    rewarm: int = 1           # untimed runs of a runner at the start of its turn in a round
    min_rounds: int = 20      # rounds before the intervals are first judged
    max_rounds: int = 2000
    width: float = 0.04       # stop once every interval is narrower than this, relative to its value
    budget: float = 60.0      # seconds of timing at most (warm-up not counted)
    clock: str = "cpu"        # which clock the figures are read on: "cpu" or "wall"
    confidence: float = CONFIDENCE
    drift: float = DRIFT      # run-to-run drift of a ratio: reported ratio intervals are widened by it

    def __post_init__(self):
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {self.clock!r}")
        if not 0 <= self.drift < 1:
            raise ValueError(f"drift must be in [0, 1), got {self.drift!r}")

    @classmethod
    def fixed(cls, warmup=10, runs=50, rounds=None, clock="wall"):
        """Exactly `runs` timed runs per runner (over `rounds` rounds, default one run each), no stopping rule."""
        rounds = max(1, min(int(rounds or runs), int(runs)))
        return cls(warmup=warmup, calls=math.ceil(runs / rounds), rewarm=0, min_rounds=rounds, max_rounds=rounds,
                   width=0.0, budget=math.inf, clock=clock)

    def describe(self):
        """How the runs were timed, for reports (without what this measurement happened to need)."""
        what = ("process CPU time of each run (a one-thread run's wall time on an idle core: time spent "
                "waiting for a core while other work ran is left out)" if self.clock == "cpu" else
                "wall time of each run")
        turn = f"{self.rewarm} untimed + {self.calls} timed" if self.rewarm else f"{self.calls} timed"
        return (f"{what}; runners interleaved round-robin ({turn} run(s) per runner and round, after {self.warmup} "
                f"warm-up runs), medians over rounds with {self.confidence:.0%} intervals, timed until every "
                f"interval is within {self.width:.0%} (at least {self.min_rounds} round(s), at most {self.budget:g} s)"
                + (f"; ratios' intervals widened by +-{self.drift:.0%}, the drift between runs" if self.drift else ""))


@dataclasses.dataclass
class Timing:
    """Latency of one runner (ms): the median, the 10th/90th percentiles of its runs, the median's interval."""

    median: float
    p10: float
    p90: float
    samples: int
    low: float = None          # confidence interval of the median (over rounds)
    high: float = None
    wall_median: float = None  # median wall time of the same runs, next to a CPU-time figure

    def to_dict(self):
        out = {"median_ms": round(self.median, 4), "p10_ms": round(self.p10, 4), "p90_ms": round(self.p90, 4),
               "samples": self.samples}
        for key, value in (("low_ms", self.low), ("high_ms", self.high), ("wall_median_ms", self.wall_median)):
            if value is not None:
                out[key] = round(value, 4)
        return out


@dataclasses.dataclass
class Measurement:
    """What `measure` found: every runner's runs, per-round figures, and whether the intervals got narrow."""

    values: dict          # {runner: per-round figure (ms) on the chosen clock}
    runs: dict            # {runner: [(wall ms, cpu ms), ...] of every timed run}
    compare: list         # [(runner, reference or None)] the stopping rule judged
    precision: Precision
    rounds: int
    seconds: float
    converged: bool

    def timing(self, name):
        runs = np.asarray(self.runs[name], dtype=np.float64)
        mine = runs[:, 1] if self.precision.clock == "cpu" else runs[:, 0]
        ci = Interval.of(self.values[name], self.precision.confidence)
        return Timing(ci.value, float(np.percentile(mine, 10)), float(np.percentile(mine, 90)), int(len(mine)),
                      ci.low, ci.high, float(np.median(runs[:, 0])))

    def timings(self):
        return {name: self.timing(name) for name in self.values}

    def ratio(self, name, reference):
        """Interval of `name`'s latency over `reference`'s, from the rounds both were timed in.

        The interval over this run's rounds, widened by the drift between runs
        (`precision.drift`): what another run of the same comparison should land in.
        """
        within = self.interval(name, reference)
        grow = 1.0 + self.precision.drift
        return dataclasses.replace(within, low=within.low / grow, high=within.high * grow)

    def interval(self, name, reference=None):
        """The interval over this run's rounds alone of the ratio name/reference, or of name's median latency (ms).

        What the stopping rule judges: more rounds narrow it, unlike the drift between runs.
        """
        if reference is None:
            return Interval.of(self.values[name], self.precision.confidence)
        return Interval.of(_ratios(self.values[name], self.values[reference]), self.precision.confidence)

    def widest(self):
        """(pair, Interval over this run's rounds) of the compared figure known least precisely."""
        if not self.compare:
            return None, None
        pairs = [(pair, self.interval(*pair)) for pair in self.compare]
        return max(pairs, key=lambda p: p[1].width)

    @property
    def preempted(self):
        """Share of the timed runs that other work preempted (their CPU/wall share well below the usual)."""
        shares = []
        for runs in self.runs.values():
            runs = np.asarray(runs, dtype=np.float64)
            share = runs[:, 1] / np.maximum(runs[:, 0], 1e-12)
            shares.append(share < PREEMPTED_SHARE * np.percentile(share, 90))
        return float(np.mean(np.concatenate(shares))) if shares else 0.0

    def noise_note(self):
        """None when every interval got narrow enough; else a sentence saying how noisy the figures are."""
        if self.converged:
            return None
        pair, widest = self.widest()
        what = f"{pair[0]} vs {pair[1]}" if pair[1] is not None else f"{pair[0]}"
        return (f"latency figures are noisy: the widest interval ({what}) is {widest.width:.1%} of its value after "
                f"{self.rounds} rounds in {self.seconds:.0f} s, wider than the {self.precision.width:.0%} asked for; "
                f"{self.preempted:.0%} of the timed runs were preempted by other work on this machine")

    def to_dict(self):
        pair, widest = self.widest()
        return {"clock": self.precision.clock, "rounds": self.rounds, "seconds": round(self.seconds, 2),
                "converged": self.converged, "width_asked": self.precision.width,
                "widest": None if widest is None else round(widest.width, 4),
                "preempted_share": round(self.preempted, 3)}


def _ratios(values, reference):
    a, b = np.asarray(values, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return a / np.maximum(b, 1e-12)


def _pairs(names, compare):
    if compare is None:
        return [(n, None) for n in names[:1]] if len(names) == 1 else [(n, names[0]) for n in names[1:]]
    pairs = [(a, b) for a, b in compare]
    unknown = [x for pair in pairs for x in pair if x is not None and x not in names]
    if unknown:
        raise KeyError(f"compare names runners that are not timed: {unknown}")
    return pairs


def measure(runners, compare=None, precision=None, clock=None):
    """Time `runners` ({name: callable}) interleaved until the `compare` figures are known to `precision`.

    `compare`: [(name, reference)] whose ratio intervals must get narrow ((name, None): the
    median latency of `name`); default: every runner against the first one (a single
    runner: its own median). Returns a Measurement.
    """
    precision = precision or Precision()
    clock = clock or Clock()
    names = list(runners)
    pairs = _pairs(names, compare)
    for name in names:
        for _ in range(precision.warmup):
            runners[name]()
    runs = {name: [] for name in names}
    values = {name: [] for name in names}
    # A new order every round (seeded: the same every time): in a fixed or rotated order each
    # runner keeps following the same one, whose cache footprint then biases it.
    orders = np.random.RandomState(0)
    start, rounds, converged = clock.wall(), 0, False
    next_check = max(1, precision.min_rounds)
    while rounds < max(1, precision.max_rounds):
        for index in orders.permutation(len(names)):
            name = names[index]
            values[name].append(_turn(runners[name], precision, clock, runs[name]))
        rounds += 1
        if rounds >= next_check:
            # Judged at growing steps: the check costs a sort per pair, a tiny model's round far less.
            next_check = rounds + max(1, rounds // 20)
            partial = Measurement(values, runs, pairs, precision, rounds, 0.0, False)
            if all(partial.interval(*pair).width <= precision.width for pair in pairs):
                converged = True
                break
        if clock.wall() - start >= precision.budget:
            break
    return Measurement(values, runs, pairs, precision, rounds, clock.wall() - start, converged)


def _turn(run, precision, clock, record):
    """One runner's turn in a round: re-warm, then the timed runs; returns their median on the chosen clock."""
    for _ in range(precision.rewarm):
        run()
    mine = []
    for _ in range(max(1, precision.calls)):
        wall, cpu = clock.wall(), clock.cpu()
        run()
        wall, cpu = (clock.wall() - wall) * 1000.0, (clock.cpu() - cpu) * 1000.0
        record.append((wall, cpu))
        mine.append(cpu if precision.clock == "cpu" else wall)
    return float(np.median(mine))


def time_runners(runners, warmup=10, runs=50, rounds=5, clock=time.perf_counter):
    """{name: Timing} of the runners ({name: callable}), timed interleaved, `runs` timed wall-clock calls each.

    The fixed-count form of `measure`: `rounds` rounds of runs/rounds calls (rounding up),
    no re-warm runs, no stopping rule. Each Timing's median is over all calls, as before
    intervals existed; `low`/`high` are the interval of the median over rounds.
    """
    found = measure(runners, [], Precision.fixed(warmup, runs, rounds), Clock(wall=clock))
    out = {}
    for name in runners:
        timing = found.timing(name)
        timing.median = float(np.median(np.asarray(found.runs[name])[:, 0]))
        out[name] = timing
    return out


def eager_runner(model, input_shape):
    """A callable running `model` forward (no grad) on a random batch; the caller sets eval mode."""
    x = paddle.randn(list(input_shape), dtype="float32")

    def run():
        with paddle.no_grad():
            _sync(model(x))
    return run


def _sync(out):
    # The clock may stop only once the forward has finished: a GPU queues kernels and returns
    # at once, so wait for it (no copy to the host, which is not part of the forward); on the
    # CPU, touch the result so lazily computed values are done.
    first = out[0] if isinstance(out, (list, tuple)) else out
    if not isinstance(first, paddle.Tensor):
        return
    if first.place.is_gpu_place():
        devices.synchronize(devices.place_name(first.place))
    else:
        first.numpy()


def eager_latency(model, input_shape, warmup=10, runs=50):
    """Median wall time (ms) of one forward pass, eval mode, no grad, batch as in `input_shape`."""
    return measure_eager(model, input_shape, Precision.fixed(warmup, runs)).timing("eager").median


def measure_eager(model, input_shape, precision=None, clock=None):
    """A Measurement of the eager forward (runner "eager"), eval mode, no grad; the model's mode is kept."""
    was_training = model.training
    model.eval()
    try:
        return measure({"eager": eager_runner(model, input_shape)}, None, precision, clock)
    finally:
        if was_training:
            model.train()


def eager_where(input_shape, device=None):
    """What runs when the eager forward is timed, on `device` (default: the session's)."""
    device = devices.current() if device is None else device
    if device.startswith("gpu"):
        where = f"{device} (synchronised before each clock read)"
    else:
        where = f"CPU ({os.environ.get('OMP_NUM_THREADS') or f'{os.cpu_count()} cores'})"
    return f"paddle eager (dygraph), eval mode, no_grad, input {list(input_shape)}, {where}"


def eager_latency_method(input_shape, warmup, runs, device=None):
    """How `eager_latency` timed the eager forward, on `device` (default: the session's)."""
    return f"{eager_where(input_shape, device)}; median of {runs} runs after {warmup} warm-up runs"
