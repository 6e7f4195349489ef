"""Prune to a deployed-latency target: per-group latency measured in Paddle Inference, confirmed at the end.

`target_latency_reduction=0.5` asks for half of the exported model's predictor latency
removed. As in NetAdapt (Yang et al., 2018) and HALP (Shen et al., 2022) the selection
works from latencies measured on the runtime, not from FLOPs:

1. `LatencyProbe` exports the model with each group alone pruned to half of its channels
   and times these exports and the unpruned one interleaved (report.timing; eight variants
   and the unpruned model at a time): the table of
   latency saved per removed channel of every group, where the group's neighbours keep
   their channels. A group whose pruning does not save time gets no channels removed.
2. The selection (`selection.select_greedy` with the sensitivity scan's losses, or
   `select_uniform`) reads the probe like a FLOPs probe: predicted latency = measured
   latency minus the table's savings, so channels go where they cost least accuracy per
   millisecond saved. The table is linear: it misjudges large cuts (neighbouring groups
   pruned together save less than the sum of their single savings, and fixed costs do not
   shrink), which step 3 corrects by measuring. (Scaling the sum by the exact FLOPs overlap
   was tried and measured worse with benchmarks/deploy_latency.py: on resnet50 @224 it capped
   the predicted reduction close to the target, so no refinement could ask for more, and
   36.5 % was removed for a 50 % target.)
3. The pruned model is exported and timed against the unpruned export, interleaved. If the
   measured reduction falls short of the target by more than `TOLERANCE`, or passes it by
   more than `OVERSHOOT` (the table over- as well as underestimates), the predicted target
   is moved (on a line fitted to the measurements so far, or between the closest
   measurements below and above the target) and the selection runs again, at most
   `REFINEMENTS` times. The model keeps the best selection measured, and what was
   measured is returned, so the caller can say so.
"""

import dataclasses
import tempfile
from pathlib import Path

from ..core.errors import ConfigError, ModelError
from ..core.surgery import capture, restore
from .selection import keep_indices, temporarily_pruned

__all__ = ["LatencyProbe", "LatencyResult", "ExportTimer", "time_exports", "prune_to_latency",
           "check_latency_target"]

TOLERANCE = 0.02          # a measured reduction this close below the target counts as reached
OVERSHOOT = 0.05          # one this far above it is refined back down: the extra cut costs accuracy
REFINEMENTS = 4           # selections re-run with a moved target after a miss
PROBE_WARMUP, PROBE_RUNS, PROBE_ROUNDS = 5, 30, 5
PROBE_CHUNK = 8           # group variants timed together with one unpruned export


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


def time_exports(prefixes, shape, threads=1):
    """{name: median ms} of exports ({name: prefix}) timed interleaved in the Paddle Inference predictor."""
    from ..deploy.paddle_inference import InferenceModel
    from ..report.timing import time_runners

    runners = {name: InferenceModel(prefix, "onednn_int8", threads).runner(shape) for name, prefix in prefixes.items()}
    return {name: t.median for name, t in time_runners(runners, PROBE_WARMUP, PROBE_RUNS, PROBE_ROUNDS).items()}


class ExportTimer:
    """Export models as they are now (`add`), time all the exports together later (`times`).

    Exporting at once keeps no copy of each variant in memory; timing them together keeps
    their differences free of the machine's drift. `time_prefixes(prefixes, shape)` is injectable.
    """

    def __init__(self, input_shape, time_prefixes=None):
        self.shape = [1, *list(input_shape)[1:]]
        self.time_prefixes = time_prefixes or time_exports
        self._tmp = tempfile.TemporaryDirectory(prefix="slimkit-latency-")
        self.prefixes = {}

    def add(self, name, model):
        from ..deploy.paddle_inference import export_float

        self.prefixes[name] = export_float(model, Path(self._tmp.name) / str(len(self.prefixes)), self.shape)

    def times(self):
        try:
            return self.time_prefixes(dict(self.prefixes), self.shape)
        finally:
            self._tmp.cleanup()


class LatencyProbe:
    """Predicted predictor latency (ms) of `model` with given kept-channel counts per group.

    Reads like `selection.FlopsProbe` (`base`, `flops(counts)`, `reduction(counts)`,
    `per_channel(groups)`), so the FLOPs selections select on latency unchanged. The table
    is measured once, for `groups`, on construction.
    """

    def __init__(self, model, graph, input_shape, groups, time_prefixes=None, snapshot=None):
        self.graph = graph
        snapshot = snapshot or capture(model)
        todo = [g for g in groups if g.channels >= 2]
        self._per_channel, bases = {}, []
        # In chunks, each with the unpruned model: a large model's exports need not all be held at once.
        for start in range(0, max(1, len(todo)), PROBE_CHUNK):
            bases.append(self._measure_chunk(model, input_shape, todo[start:start + PROBE_CHUNK], time_prefixes,
                                             snapshot))
        self.base = float(sorted(bases)[len(bases) // 2])
        self.probes = len(todo)

    def _measure_chunk(self, model, input_shape, groups, time_prefixes, snapshot):
        timer = ExportTimer(input_shape, time_prefixes)
        timer.add("base", model)
        removed = {}
        for g in groups:
            keep = max(1, g.channels // 2)
            removed[g.name] = g.channels - keep
            with temporarily_pruned(model, self.graph, {g.name: keep_indices([0.0] * g.channels, keep, g)}, snapshot):
                timer.add(g.name, model)
        times = timer.times()
        base = times["base"]  # timed with the others: the savings come from one interleaved run
        for name, n in removed.items():
            self._per_channel[name] = max(0.0, (base - times[name]) / n)
        return base

    def per_channel(self, groups):
        """{group: ms saved per removed channel} (0 for a group whose pruning saved no time)."""
        return {g.name: self._per_channel.get(g.name, 0.0) for g in groups}

    def flops(self, counts):
        """Predicted latency (ms) with group g keeping counts[g] channels (named `flops` for the selections)."""
        return self.base - sum(self._per_channel.get(g, 0.0) * (self.graph.group(g).channels - int(n))
                               for g, n in counts.items())

    def reduction(self, counts):
        return 1.0 - self.flops(counts) / self.base if self.base else 0.0


@dataclasses.dataclass
class LatencyResult:
    """What `prune_to_latency` reached: the selection and the measured latencies."""

    selection: object          # selection.Selection, predicted latencies (ms) in its flops fields
    latency_before: float      # measured ms, unpruned export
    latency_after: float       # measured ms, pruned export (timed interleaved with the unpruned one)
    attempts: int
    target: float = 0.0
    history: tuple = ()        # (predicted reduction asked, measured reduction) of every selection tried

    @property
    def reached(self):
        return self.reduction >= self.target - TOLERANCE

    @property
    def reduction(self):
        return 1.0 - self.latency_after / self.latency_before if self.latency_before else 0.0

    def to_dict(self):
        return {"target": self.target, "reached": self.reached, "latency_before_ms": round(self.latency_before, 4),
                "latency_after_ms": round(self.latency_after, 4), "latency_reduction": round(self.reduction, 4),
                "attempts": self.attempts, "history": [[round(a, 4), round(m, 4)] for a, m in self.history],
                "predicted_latency_reduction": round(self.selection.flops_reduction, 4)}


def prune_to_latency(model, graph, input_shape, groups, target, select, apply, time_prefixes=None):
    """Prune `model` in place until its measured predictor latency is `target` lower; returns a LatencyResult.

    `select(probe, predicted_target) -> Selection` chooses counts on the probe;
    `apply(selection)` removes the channels for real. On an error the model is restored.
    A measured reduction within [target - TOLERANCE, target + OVERSHOOT] ends the search;
    otherwise the model keeps the best selection measured: the smallest reduction that
    reached the target (more would cost accuracy for nothing), else the largest one.
    """
    snapshot = capture(model)
    probe = LatencyProbe(model, graph, input_shape, groups, time_prefixes, snapshot)
    goal, results, ceiling = target, [], None
    try:
        for _ in range(REFINEMENTS + 1):
            try:
                selection = _select(select, probe, goal)
            except ModelError:
                if not results:
                    raise
                # A raised target out of reach: halve the step (the results measured so far stay).
                ceiling = goal
                goal = (results[-1][0] + ceiling) / 2
                continue
            results.append((goal, _measure(model, snapshot, selection, apply, input_shape, time_prefixes,
                                           target, bool(results))))
            if _on_target(results[-1][1].reduction, target):
                break
            goal = _next_goal([(asked, r.reduction) for asked, r in results], target)
            if ceiling is not None and goal >= ceiling:
                goal = (results[-1][0] + ceiling) / 2
        best = _best([r for _, r in results], target)
        if best is not results[-1][1]:
            restore(model, snapshot)
            apply(best.selection)
    except BaseException:
        restore(model, snapshot)
        raise
    return dataclasses.replace(best, attempts=len(results),
                               history=tuple((asked, r.reduction) for asked, r in results))


def _measure(model, snapshot, selection, apply, input_shape, time_prefixes, target, pruned):
    """Apply `selection` to the unpruned model and time its export against the unpruned one, interleaved."""
    timer = ExportTimer(input_shape, time_prefixes)
    timer.add("before", _unpruned(model, snapshot, pruned))
    apply(selection)
    timer.add("after", model)
    times = timer.times()
    return LatencyResult(selection, times["before"], times["after"], 1, target)


def _on_target(reduction, target):
    return target - TOLERANCE <= reduction <= target + OVERSHOOT


def _best(results, target):
    reached = [r for r in results if r.reduction >= target - TOLERANCE]
    if reached:
        return min(reached, key=lambda r: r.reduction)
    return max(results, key=lambda r: r.reduction)


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


def _unpruned(model, snapshot, pruned):
    # The model as it came in (a refinement starts again from there).
    if pruned:
        restore(model, snapshot)
    return model


def _select(select, probe, goal):
    try:
        return select(probe, goal)
    except ModelError as err:  # the selections speak of FLOPs; here they bisect predicted latency
        raise ModelError(err.message.replace("FLOPs reduction", "predicted latency reduction"),
                         (err.hint or "").replace("target_flops_reduction", "target_latency_reduction")) from None
