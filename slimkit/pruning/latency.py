"""Prune to a deployed-latency target: per-group latency measured in Paddle Inference, confirmed at the end.

`target_latency_reduction=0.5` asks for half of the exported model's predictor latency
removed. As in NetAdapt (Yang et al., 2018) and HALP (Shen et al., 2022) the selection
works from latencies measured on the runtime, not from FLOPs. Every measurement is a
ratio to the unpruned export timed in the same rounds (report.timing.measure), with its
95 % interval, timed until the interval is narrower than the Precision's width or its
budget runs out:

1. `LatencyProbe` exports the model with each group alone pruned to half of its channels
   and times these exports against the unpruned one (eight variants at a time): the
   table of latency saved per removed channel of every group, where the group's
   neighbours keep their channels. A group whose pruning does not save time gets no
   channels removed. The interval of every group's ratio is kept with the table.
2. The selection (`plan.choose`: greedy with the sensitivity scan's losses, or uniform)
   reads the probe like a FLOPs probe (`cost`, `reduction`, `per_channel`): predicted
   latency = measured latency minus the table's savings, so channels go where they cost
   least accuracy per millisecond saved. The table is linear: it misjudges large cuts
   (neighbouring groups pruned together save less than the sum of their single savings,
   and fixed costs do not shrink), which step 3 corrects by measuring. (Scaling the sum
   by the exact FLOPs overlap was tried and measured worse with benchmarks/deploy_latency.py:
   on resnet50 @224 it capped the predicted reduction close to the target, so no
   refinement could ask for more, and 36.5 % was removed for a 50 % target.)
3. The pruned model is exported and timed against the unpruned export. The target counts
   as reached when the interval's upper end of the measured ratio is at most
   1 - target + `TOLERANCE` (reached with 95 % confidence, not by a lucky draw); a cut
   whose upper end is below 1 - target - `OVERSHOOT` removed more than needed. Otherwise
   the predicted target is moved (on a line fitted to the measurements so far, or between
   the closest measurements below and above the target) and the selection runs again, at
   most `REFINEMENTS` times. The model keeps the best selection measured (the least cut
   that reached the target, else the largest cut), and that model is measured once more
   against the original before the result is returned: the figure reported is that last
   measurement, with its interval.
"""

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from ..core.errors import ConfigError, ModelError
from ..core.surgery import capture, restore
from ..report.intervals import Interval
from .selection import keep_indices, temporarily_pruned

__all__ = ["LatencyProbe", "LatencyResult", "ExportBench", "predictor_runner", "prune_to_latency",
           "check_latency_target"]

TOLERANCE = 0.02          # the measured ratio's upper end may pass 1 - target by this much
OVERSHOOT = 0.05          # an upper end this far below 1 - target is refined back: the extra cut costs accuracy
REFINEMENTS = 4           # selections re-run with a moved target after a miss
PROBE_CHUNK = 8           # group variants timed together with the unpruned export
ORIGINAL = "original"


def check_latency_target(options):
    """`target_latency_reduction` excludes `ratios` and `target_flops_reduction` (on any object with them)."""
    target = getattr(options, "target_latency_reduction", None)
    if target is None:
        return
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ConfigError("target_latency_reduction", f"{target!r} is outside (0, 1)",
                          "the fraction of the predictor latency to remove, e.g. 0.5")
    for other in ("ratios", "target_flops_reduction"):
        if getattr(options, other, None) is not None:
            raise ConfigError("target_latency_reduction", f"`{other}` and `target_latency_reduction` exclude "
                                                          "each other", "keep one of them")
    if getattr(options, "steps", 1) != 1:
        raise ConfigError("steps", "a latency target is reached in one round (measured, then refined)",
                          "use steps: 1, or target_flops_reduction for a schedule")


def predictor_runner(prefix, shape, threads=1):
    """The runner of an export in the Paddle Inference predictor (oneDNN), on the session's device."""
    from ..deploy.paddle_inference import InferenceModel

    return InferenceModel(prefix, "onednn_int8", threads).runner(shape)


def default_clock():
    """The clock exports are timed with (report.timing.Clock: wall and process CPU time)."""
    from ..report.timing import Clock

    return Clock()


def default_precision():
    """The report's default timing (ReportConfig): its width, budget and, on the CPU, the CPU-time clock."""
    from ..deploy.stage_latency import report_precision
    from ..report.rows import ReportConfig

    return report_precision(ReportConfig())


class ExportBench:
    """Export models as they are now (`add`) and time them against a reference export (`measure`).

    Exporting at once keeps no copy of each variant in memory; timing them in the same
    rounds as the reference keeps their ratios free of the machine's drift. A runner is
    made once per export and kept until `drop`. `runner_for(prefix, shape) -> callable`
    (default: the predictor) and `clock` (report.timing.Clock) are injectable, so tests
    script latencies and their noise; `precision` is the report.timing.Precision.
    """

    def __init__(self, input_shape, precision=None, runner_for=None, clock=None):
        self.shape = [1, *list(input_shape)[1:]]
        self.precision = precision or default_precision()
        self.runner_for = runner_for or predictor_runner
        self.clock = clock or default_clock()
        self._tmp = tempfile.TemporaryDirectory(prefix="slimkit-latency-")
        self.prefixes, self._runners, self._added = {}, {}, 0
        self.measured = []  # Measurement.to_dict() of every measurement, in order

    def add(self, name, model):
        from ..deploy.paddle_inference import export_float

        self.prefixes[name] = export_float(model, Path(self._tmp.name) / str(self._added), self.shape)
        self._added += 1
        self._runners.pop(name, None)

    def drop(self, *names):
        for name in names:
            self.prefixes.pop(name, None)
            self._runners.pop(name, None)

    def measure(self, names, reference=ORIGINAL):
        """The report.timing Measurement of `names` and `reference`, each judged by its ratio to `reference`."""
        from ..report.timing import measure

        for name in [reference, *names]:
            if name not in self._runners:
                self._runners[name] = self.runner_for(self.prefixes[name], self.shape)
        found = measure({n: self._runners[n] for n in [reference, *names]}, [(n, reference) for n in names],
                        self.precision, self.clock)
        self.measured.append(found.to_dict())
        return found

    def close(self):
        self._runners.clear()
        self._tmp.cleanup()


class LatencyProbe:
    """Predicted predictor latency (ms) of `model` with given kept-channel counts per group.

    Reads like `selection.FlopsProbe` (`base`, `cost(counts)`, `reduction(counts)`,
    `per_channel(groups)`), so the selections select on latency unchanged. The table is
    measured once, for `groups`, on construction, with `bench` (an ExportBench holding the
    unpruned model's export as "original"); `intervals` holds each group's measured ratio.
    """

    unit = "ms"
    target_option = "target_latency_reduction"

    def __init__(self, model, graph, input_shape, groups, bench, snapshot=None):
        self.graph = graph
        snapshot = snapshot or capture(model)
        todo = [g for g in groups if g.channels >= 2]
        self._per_channel, self.intervals, self.measurements, bases = {}, {}, [], []
        # In chunks: a large model's exports need not all be held at once.
        for start in range(0, len(todo), PROBE_CHUNK):
            bases.append(self._measure_chunk(model, todo[start:start + PROBE_CHUNK], bench, snapshot))
        if not bases:  # nothing to probe: the unpruned latency alone
            found = bench.measure([])
            bases.append(found.timing(ORIGINAL).median)
        self.base = float(np.median(bases))
        self.probes = len(todo)

    def _measure_chunk(self, model, groups, bench, snapshot):
        removed = {}
        for g in groups:
            keep = max(1, g.channels // 2)
            removed[g.name] = g.channels - keep
            with temporarily_pruned(model, self.graph, {g.name: keep_indices([0.0] * g.channels, keep, g)}, snapshot):
                bench.add(f"probe:{g.name}", model)
        names = [f"probe:{g.name}" for g in groups]
        try:
            found = bench.measure(names)
        finally:
            bench.drop(*names)
        self.measurements.append(found.to_dict())
        base = found.timing(ORIGINAL).median
        for g in groups:
            ratio = found.ratio(f"probe:{g.name}", ORIGINAL)  # from the rounds both were timed in
            self.intervals[g.name] = ratio
            self._per_channel[g.name] = max(0.0, base * (1.0 - ratio.value) / removed[g.name])
        return base

    def per_channel(self, groups):
        """{group: ms saved per removed channel} (0 for a group whose pruning saved no time)."""
        return {g.name: self._per_channel.get(g.name, 0.0) for g in groups}

    def cost(self, counts):
        """Predicted latency (ms) with group g keeping counts[g] channels."""
        return self.base - sum(self._per_channel.get(g, 0.0) * (self.graph.group(g).channels - int(n))
                               for g, n in counts.items())

    def reduction(self, counts):
        return 1.0 - self.cost(counts) / self.base if self.base else 0.0

    def summary(self):
        """How precisely the table was measured: groups probed, the widest interval, whether all got narrow."""
        widest = max((iv.width for iv in self.intervals.values()), default=0.0)
        return {"groups": self.probes, "base_ms": round(self.base, 4), "widest_interval": round(widest, 4),
                "converged": all(m["converged"] for m in self.measurements),
                "seconds": round(sum(m["seconds"] for m in self.measurements), 2)}


@dataclasses.dataclass
class Trial:
    """One selection, applied and timed against the original export."""

    selection: object
    ratio: Interval           # pruned / original latency, from the same rounds
    latency_before: float     # ms, the original export
    latency_after: float      # ms, the pruned export
    timing: dict              # the Measurement's to_dict()
    noise: str = None         # its noise note, if the interval stayed wide

    @property
    def reduction(self):
        return 1.0 - self.ratio.value


@dataclasses.dataclass
class LatencyResult:
    """What `prune_to_latency` reached: the selection, and the last measurement of the pruned model."""

    selection: object          # selection.Selection on the latency probe (predicted ms in its cost fields)
    ratio: Interval            # measured pruned / original latency, with its interval
    latency_before: float      # measured ms, unpruned export
    latency_after: float       # measured ms, pruned export (timed in the same rounds)
    attempts: int
    target: float = 0.0
    history: tuple = ()        # (predicted reduction asked, measured reduction, its low, its high) per selection
    timing: dict = dataclasses.field(default_factory=dict)   # the last Measurement's to_dict()
    probe: dict = dataclasses.field(default_factory=dict)    # LatencyProbe.summary()
    noise: str = None          # the last measurement's noise note, if its interval stayed wide

    @property
    def reached(self):
        return _reached(self.ratio, self.target)

    @property
    def reduction(self):
        return 1.0 - self.ratio.value

    def summary(self):
        """One sentence: the measured ratio with its interval against the target, and whether it was reached."""
        verdict = "reached" if self.reached else "NOT reached"
        text = (f"measured predictor latency {self.ratio.text(3, 'x')} of the original (95 % interval), "
                f"{self.reduction:.1%} removed: the target {self.target:.0%} (upper end at most "
                f"{1 - self.target + TOLERANCE:.2f}x) is {verdict} after {self.attempts} selection(s)")
        return f"{text}; {self.noise}" if self.noise else text

    def to_dict(self):
        return {"target": self.target, "reached": self.reached, "latency_before_ms": round(self.latency_before, 4),
                "latency_after_ms": round(self.latency_after, 4), "latency_reduction": round(self.reduction, 4),
                "latency_ratio": self.ratio.to_dict(), "attempts": self.attempts,
                "history": [[round(x, 4) for x in h] for h in self.history],
                "predicted_latency_reduction": round(self.selection.reduction, 4),
                "timing": self.timing, "probe": self.probe}


def _reached(ratio, target):
    return ratio.high <= 1 - target + TOLERANCE


def _overshot(ratio, target):
    return ratio.high < 1 - target - OVERSHOOT


def prune_to_latency(model, graph, input_shape, groups, target, select, apply, bench=None):
    """Prune `model` in place until its measured predictor latency is `target` lower; returns a LatencyResult.

    `select(probe, predicted_target) -> Selection` chooses counts on the probe;
    `apply(selection)` removes the channels for real; `bench`: the ExportBench that exports
    and times (default: the predictor, the report's default Precision). On an error the
    model is restored. The search ends when a measurement reached the target without
    overshooting it; the model then keeps the best selection measured (the least cut that
    reached the target, else the largest cut), which is measured once more.
    """
    snapshot = capture(model)
    owned = bench is None
    bench = bench or ExportBench(input_shape)
    try:
        bench.add(ORIGINAL, model)
        probe = LatencyProbe(model, graph, input_shape, groups, bench, snapshot)
        trials = _search(model, snapshot, probe, select, apply, bench, target)
        best = _best([t for _, t in trials], target)
        if best is not trials[-1][1]:  # the model holds the last selection tried
            restore(model, snapshot)
            apply(best.selection)
        final = _measure(bench, model, best.selection, "final")  # the model as it leaves, against the original
    except BaseException:
        restore(model, snapshot)
        raise
    finally:
        if owned:
            bench.close()
    history = tuple((asked, t.reduction, 1 - t.ratio.high, 1 - t.ratio.low) for asked, t in trials)
    return LatencyResult(best.selection, final.ratio, final.latency_before, final.latency_after, len(trials), target,
                         history, final.timing, probe.summary(), final.noise)


def _search(model, snapshot, probe, select, apply, bench, target):
    """[(predicted reduction asked, Trial)] of every selection tried, refining the goal after each miss."""
    goal, trials, ceiling = target, [], None
    for attempt in range(REFINEMENTS + 1):
        try:
            selection = select(probe, goal)
        except ModelError:
            if not trials:
                raise
            # A raised target out of reach: halve the step (the results measured so far stay).
            ceiling = goal
            goal = (trials[-1][0] + ceiling) / 2
            continue
        if trials:
            restore(model, snapshot)  # a refinement starts again from the unpruned model
        apply(selection)
        trials.append((goal, _measure(bench, model, selection, f"selection {attempt + 1}")))
        ratio = trials[-1][1].ratio
        if _reached(ratio, target) and not _overshot(ratio, target):
            break
        goal = _next_goal([(asked, _judged(t.ratio)) for asked, t in trials], target)
        if ceiling is not None and goal >= ceiling:
            goal = (trials[-1][0] + ceiling) / 2
    return trials


def _judged(ratio):
    # The reduction a measurement vouches for: the one at its interval's upper end.
    return 1.0 - ratio.high


def _measure(bench, model, selection, name):
    """Time the model as it is now against the original export, in the same rounds."""
    bench.add(name, model)
    try:
        found = bench.measure([name])
    finally:
        bench.drop(name)
    return Trial(selection, found.ratio(name, ORIGINAL), found.timing(ORIGINAL).median, found.timing(name).median,
                 found.to_dict(), found.noise_note())


def _best(trials, target):
    reached = [t for t in trials if _reached(t.ratio, target)]
    if reached:
        return max(reached, key=lambda t: t.ratio.value)  # the least cut that reached the target
    return min(trials, key=lambda t: t.ratio.value)


def _next_goal(tried, target):
    """The predicted reduction to ask for next, from the (asked, measured) pairs so far.

    Between the closest pairs below and above the target when there are both (regula falsi),
    else on the line through the origin that fits all pairs, at least a point on from the last.
    """
    below = [p for p in tried if p[1] < target]
    above = [p for p in tried if p[1] >= target]
    if below and above:
        (lo, lo_m), (hi, hi_m) = max(below, key=lambda p: p[1]), min(above, key=lambda p: p[1])
        if hi > lo and hi_m > lo_m:
            return lo + (target - lo_m) * (hi - lo) / (hi_m - lo_m)
        return (lo + hi) / 2  # noise put the pairs out of order: split the difference
    # One line through the origin fitted to all pairs (measured = k * asked): timing noise moves
    # single measurements by a few points, which sends a secant through two of them anywhere.
    k = sum(a * m for a, m in tried) / sum(a * a for a, _ in tried)
    goal, measured = tried[-1]
    step = (target / k - goal) if k > 0.05 else target - measured
    step = max(step, 0.01) if measured < target else min(step, -0.01)
    return min(0.99, max(0.01, goal + step))
