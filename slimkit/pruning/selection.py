"""Choose how many channels each group keeps: explicit ratios, or a measured FLOPs (or latency) target.

The user-facing target is `target_flops_reduction`, the fraction of FLOPs removed as
`paddle.flops` (slimkit.count_flops) counts them on the actually pruned model. A channel
ratio is not a FLOPs ratio: removing a layer's output channels also shrinks the next
layer's input, so a uniform channel ratio of 0.5 removes about 75 % of a plain CNN's FLOPs.

Three ways to reach a target, each a family of plans indexed by one number that is
bisected on a probe's cost: FLOPs measured after pruning (`FlopsProbe`: each probe prunes in
place, counts, restores) or the predicted latency of `latency.LatencyProbe`. A probe has
`base`, `cost(counts)`, `reduction(counts)`, `per_channel(groups)`, its `unit` and the
option its target comes from (`target_option`), so the selections never ask which it is:

- `uniform`:   the same channel ratio for every group.
- `threshold`: PaddleSlim's `get_ratios_by_sensitivity`: each group gets the largest ratio
  whose interpolated accuracy loss stays under a loss threshold.
- `greedy`:    channels are removed in order of predicted accuracy loss per FLOP saved
  (the lower convex hull of each group's scanned loss curve, with FLOPs per channel
  measured once per group), so cheap-to-prune, FLOPs-heavy groups go first.
"""

import contextlib
import dataclasses
import math
import numbers

import numpy as np

from ..core.errors import ConfigError, ModelError
from ..core.surgery import capture, restore
from ..report.measure import count_flops
from .alignment import channel_step

__all__ = ["Selection", "FlopsProbe", "channels_to_keep", "keep_count", "keep_counts", "keep_indices",
           "explicit_ratios", "select_uniform", "select_by_threshold", "select_greedy", "check_ratio",
           "temporarily_pruned", "interpolate_loss"]


def check_ratio(name, ratio, path="ratios"):
    """A pruning ratio must be a number in [0, 1): 1 would remove every channel."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 <= float(ratio) < 1:
        raise ConfigError(f"{path}.{name}" if name else path, f"ratio {ratio!r} is outside [0, 1)",
                          "a ratio is the fraction of a layer's output channels removed: 0.3 removes 30%, "
                          "1.0 would remove all of them")
    return float(ratio)


def channels_to_keep(channels, ratio, round_to=1, min_channels=1, multiple=1):
    """Channels a group keeps after removing `ratio` of them, rounded, never below `min_channels` or 1.

    `round_to=None` is the default alignment (`alignment.channel_step`).
    """
    step = math.lcm(channel_step(channels, round_to), max(1, int(multiple)))
    keep = channels - int(round(channels * ratio))
    if keep >= channels:
        return int(channels)  # nothing to remove: rounding must not cut an untouched layer
    if step > 1:
        keep = int(math.floor(keep / step + 0.5)) * step  # nearest multiple, ties keep more
    floor = max(1, int(min_channels))
    floor = int(math.ceil(floor / step)) * step
    return int(min(channels, max(keep, floor)))


def keep_count(group, ratio, round_to=1, min_channels=1):
    """Channels `group` keeps at `ratio`: `channels_to_keep` with the group's own floor and channel multiple."""
    return channels_to_keep(group.channels, ratio, round_to, max(min_channels, group.min_channels),
                            group.channel_multiple)


def keep_counts(groups, ratios, round_to=1, min_channels=1):
    """{group name: channels kept} at `ratios` ({group name: ratio}, 0 for a group not named)."""
    return {g.name: keep_count(g, ratios.get(g.name, 0.0), round_to, min_channels) for g in groups}


def keep_indices(scores, keep, group=None):
    """Sorted indices of the `keep` highest scores (ties keep the lower index).

    For a group that passes a grouped conv (`group.blocks` > 1) every block keeps
    keep/blocks channels: its own best ones, or, for `group.aligned`, the positions whose
    scores summed over the blocks are best, the same in every block.
    """
    scores = np.asarray(scores)
    blocks = getattr(group, "blocks", 1) or 1
    if blocks <= 1:
        return np.sort(np.argsort(-scores, kind="stable")[:keep])
    per_block, size = keep // blocks, scores.size // blocks
    runs = scores.reshape(blocks, size)
    if group.aligned:
        positions = np.sort(np.argsort(-runs.sum(axis=0), kind="stable")[:per_block])
        return (np.arange(blocks)[:, None] * size + positions[None, :]).ravel()
    return np.concatenate([k * size + np.sort(np.argsort(-runs[k], kind="stable")[:per_block])
                           for k in range(blocks)])


def _restore_layers(model, snapshot, layer_names):
    # Restoring only the layers a removal touched keeps a trial cheap on large models.
    names = set(layer_names)
    part = {"tensors": {k: v for k, v in snapshot["tensors"].items() if k[0] in names},
            "attrs": {k: v for k, v in snapshot["attrs"].items() if k in names}}
    restore(model, part)


def _member_layers(graph, group_names):
    return {m[0] for name in group_names for m in graph.group(name).members}


@contextlib.contextmanager
def temporarily_pruned(model, graph, keep, snapshot, means=None):
    """Remove channels (`keep`: {group: indices}) for the body, then put the touched layers back.

    `means` (`compensate.measured_inputs`): the removed channels' means go into the readers'
    biases first, as `plan.prune_to_counts(compensate=True)` does (the readers are members too).
    """
    from .compensate import fold_means, kept_mask
    from .remove import remove_channels

    try:
        if means is not None:
            groups = [graph.group(name) for name in keep]
            fold_means(model, groups, {g.name: kept_mask(g, keep[g.name]) for g in groups}, means)
        remove_channels(model, graph, keep)
        yield model
    finally:
        _restore_layers(model, snapshot, _member_layers(graph, keep))


class FlopsProbe:
    """FLOPs of `model` with given kept-channel counts per group, measured by pruning and restoring.

    Measured FLOPs are cached by counts; `per_channel()` measures, once per group, the
    FLOPs one removed channel saves when that group alone is pruned (exactly linear for a
    single group; pruning two adjacent groups saves less than the sum).
    """

    unit = "FLOPs"
    target_option = "target_flops_reduction"

    def __init__(self, model, graph, input_shape, snapshot=None):
        self.model, self.graph, self.input_shape = model, graph, list(input_shape)
        self.snapshot = snapshot or capture(model)
        self.base = count_flops(model, self.input_shape)[0]
        self._cache = {}
        self._per_channel = {}
        self.probes = 0

    def cost(self, counts):
        """FLOPs with group g keeping counts[g] channels (the first ones: FLOPs do not depend on which)."""
        cut = {g: int(n) for g, n in counts.items() if int(n) < self.graph.group(g).channels}
        key = tuple(sorted(cut.items()))
        if key not in self._cache:
            if not cut:
                self._cache[key] = self.base
            else:
                keep = {g: keep_indices(np.zeros(self.graph.group(g).channels), n, self.graph.group(g))
                        for g, n in cut.items()}
                with temporarily_pruned(self.model, self.graph, keep, self.snapshot):
                    self._cache[key] = count_flops(self.model, self.input_shape)[0]
                self.probes += 1
        return self._cache[key]

    def reduction(self, counts):
        return 1.0 - self.cost(counts) / self.base

    def per_channel(self, groups):
        """{group: FLOPs saved per removed channel}, measured with each group pruned to half alone."""
        for g in groups:
            if g.name not in self._per_channel:
                keep = max(1, g.channels // 2)
                removed = g.channels - keep
                saved = self.base - self.cost({g.name: keep}) if removed else 0
                self._per_channel[g.name] = saved / removed if removed else 0.0
        return {g.name: self._per_channel[g.name] for g in groups}


@dataclasses.dataclass
class Selection:
    """Kept channels per group, the ratios they came from, and the probe's cost before and after.

    The cost is in the probe's `unit`: FLOPs measured with paddle.flops (`FlopsProbe`), or the
    predicted latency in ms (`latency.LatencyProbe`).
    """

    method: str
    keep: dict                 # group name -> channels kept
    channels: dict             # group name -> channels before
    ratios: dict               # group name -> requested ratio (before rounding)
    cost_before: float
    cost_after: float
    predicted_loss: dict = dataclasses.field(default_factory=dict)  # group -> scanned loss at its ratio
    unit: str = "FLOPs"

    @classmethod
    def on(cls, probe, method, groups, counts, ratios, predicted_loss=None):
        """The Selection of `counts` with the probe's cost before and after."""
        return cls(method, counts, {g.name: g.channels for g in groups}, dict(ratios), probe.base,
                   probe.cost(counts), dict(predicted_loss or {}), probe.unit)

    @property
    def reduction(self):
        """The fraction of the cost removed (of FLOPs, or of the predicted latency)."""
        return 1.0 - self.cost_after / self.cost_before if self.cost_before else 0.0

    # The FLOPs view of a FLOPs selection (what slimkit.prune users and the demos read).
    @property
    def flops_before(self):
        return self._flops(self.cost_before)

    @property
    def flops_after(self):
        return self._flops(self.cost_after)

    @property
    def flops_reduction(self):
        return self._flops(self.reduction)

    def _flops(self, value):
        if self.unit != "FLOPs":
            raise AttributeError(f"a selection on the {self.unit} probe has no FLOPs; read cost_before/"
                                 "cost_after/reduction")
        return value

    def to_dict(self):
        return {"method": self.method, "unit": self.unit, "cost_before": self.cost_before,
                "cost_after": self.cost_after, "reduction": round(self.reduction, 5),
                "ratios": {k: round(v, 4) for k, v in self.ratios.items()},
                "channels": {g: [self.channels[g], self.keep[g]] for g in self.keep},
                "predicted_loss": {k: round(v, 5) for k, v in self.predicted_loss.items()}}


def explicit_ratios(probe, groups, ratios, round_to=1, min_channels=1):
    """A Selection for explicit per-group ratios ({group name: ratio})."""
    return Selection.on(probe, "explicit", groups, keep_counts(groups, ratios, round_to, min_channels), ratios)


def _bisect(probe, plan_for, lo, hi, target, describe, iterations=30):
    """Smallest t in [lo, hi] whose plan's reduction on the probe reaches `target`."""
    best = plan_for(hi)
    reached = probe.reduction(best[0])
    if reached < target:
        raise ModelError(f"a {target:.1%} {_what(probe)} cannot be reached: at most {reached:.1%} "
                         f"({describe}); the model is unchanged",
                         f"lower {probe.target_option}, skip fewer layers, lower min_channels/round_to, "
                         "or allow larger ratios (max_ratio / larger sensitivity ratios)")
    for _ in range(iterations):
        if hi - lo <= 1e-6 * max(1.0, abs(hi)):
            break
        mid = (lo + hi) / 2
        plan = plan_for(mid)
        if probe.reduction(plan[0]) >= target:
            hi, best = mid, plan
        else:
            lo = mid
    return best


def select_uniform(probe, groups, target, round_to=1, min_channels=1, max_ratio=0.9):
    """The smallest uniform channel ratio whose reduction on the probe reaches `target`."""
    _check_groups(probe, groups, target)

    def plan_for(r):
        ratios = {g.name: r for g in groups}
        return keep_counts(groups, ratios, round_to, min_channels), ratios

    counts, ratios = _bisect(probe, plan_for, 0.0, max_ratio, target,
                             f"uniform ratio {max_ratio} on {len(groups)} groups")
    return Selection.on(probe, "uniform", groups, counts, ratios)


def interpolate_loss(curve, ratio):
    """Accuracy loss at `ratio` from a scanned {ratio: loss} curve (linear, with loss 0 at ratio 0)."""
    xs, ys = _curve(curve)
    return float(np.interp(ratio, xs, ys))


def _curve(curve):
    points = sorted((float(r), float(l)) for r, l in curve.items())
    if not points or points[0][0] > 0:
        points.insert(0, (0.0, 0.0))
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def _ratio_under_loss(curve, threshold):
    # PaddleSlim's _get_ratios_by_loss: the last scanned point under the threshold, then
    # linear interpolation towards the next one.
    xs, ys = _curve(curve)
    under = np.nonzero(ys <= threshold)[0]
    if len(under) == 0:
        return 0.0
    i = under[-1]
    if i == len(xs) - 1:
        return float(xs[i])
    if ys[i + 1] == ys[i]:
        return float(xs[i])
    return float(xs[i] + (threshold - ys[i]) * (xs[i + 1] - xs[i]) / (ys[i + 1] - ys[i]))


def select_by_threshold(probe, groups, sensitivities, target, round_to=1, min_channels=1):
    """PaddleSlim's loss-threshold bisection: the smallest loss threshold whose ratios reach `target`."""
    _check_groups(probe, groups, target)
    curves = _curves_for(groups, sensitivities)

    def plan_for(t):
        ratios = {g.name: _ratio_under_loss(curves[g.name], t) for g in groups}
        return keep_counts(groups, ratios, round_to, min_channels), ratios

    top = max(max(c.values()) for c in curves.values())
    counts, ratios = _bisect(probe, plan_for, min(0.0, top), max(top, 0.0) + 1e-9, target,
                             "every group at its largest scanned ratio")
    loss = {g: interpolate_loss(curves[g], ratios[g]) for g in ratios if counts[g] < probe.graph.group(g).channels}
    return Selection.on(probe, "threshold", groups, counts, ratios, loss)


def select_greedy(probe, groups, sensitivities, target, round_to=1, min_channels=1):
    """Remove channels in order of scanned accuracy loss per unit of cost saved until the probe's target is met.

    Each group's scanned curve (channels removed -> loss) is reduced to its lower convex
    hull; hull segments of all groups are taken cheapest-first. The predicted saving is
    the sum of per-group savings (an overestimate where adjacent groups are both pruned),
    so the predicted target is bisected upwards until the measured reduction reaches it.
    """
    _check_groups(probe, groups, target)
    curves = _curves_for(groups, sensitivities)
    per_channel = probe.per_channel(groups)
    segments = []
    most = {}
    for gi, g in enumerate(groups):
        step = math.lcm(channel_step(g.channels, round_to), max(1, g.channel_multiple))
        points = {0: 0.0}
        for r, loss in curves[g.name].items():
            kept = keep_count(g, r, round_to, min_channels)
            if kept < g.channels:
                points[g.channels - kept] = min(points.get(g.channels - kept, math.inf), loss)
        most[g.name] = max(points)
        if per_channel[g.name] <= 0:
            continue  # removing its channels saves no cost: never worth a loss
        for k, (a, b) in enumerate(_lower_hull(sorted(points.items()))):
            slope = (b[1] - a[1]) / ((b[0] - a[0]) * per_channel[g.name])
            segments.append((slope, gi, k, g, a, b, step))
    segments.sort(key=lambda s: (s[0], s[1], s[2]))
    base = probe.base

    def plan_for(t):
        need = t * base
        removed = {g.name: 0 for g in groups}
        loss = {g.name: 0.0 for g in groups}
        for _slope, _, _, g, a, b, step in segments:
            if need <= 0:
                break
            if removed[g.name] != a[0]:
                continue  # an earlier segment of this group was only partly taken
            full = (b[0] - a[0]) * per_channel[g.name]
            if full <= need:
                removed[g.name], loss[g.name] = b[0], b[1]
                need -= full
            else:
                n = min(b[0] - a[0], int(math.ceil(need / max(per_channel[g.name], 1e-12) / step)) * step)
                removed[g.name] = a[0] + n
                loss[g.name] = a[1] + (b[1] - a[1]) * n / (b[0] - a[0])
                need = 0
        counts = {g.name: g.channels - removed[g.name] for g in groups}
        return counts, {g.name: removed[g.name] / g.channels for g in groups}, loss

    predicted_max = sum(most[g.name] * per_channel[g.name] for g in groups) / base if base else 0.0
    counts, ratios, loss = _bisect(probe, plan_for, target, max(target, predicted_max) + 1e-9, target,
                                   "every group at its largest scanned ratio")
    return Selection.on(probe, "greedy", groups, counts, ratios,
                        {g: v for g, v in loss.items() if counts[g] < probe.graph.group(g).channels})


def _lower_hull(points):
    """Segments of the lower convex hull of (removed, loss) points sorted by `removed`, from (0, 0)."""
    hull = []
    for p in points:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or above the line from hull[-2] to p
            if (y2 - y1) * (p[0] - x1) >= (p[1] - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append(p)
    return list(zip(hull[:-1], hull[1:]))


def _curves_for(groups, sensitivities):
    missing = [g.name for g in groups if g.name not in sensitivities]
    if missing:
        raise ModelError(f"the sensitivity scan has no results for {missing[:5]}",
                         "scan these layers too (delete or change the sensitivity file), or skip them")
    return {g.name: {float(r): float(l) for r, l in sensitivities[g.name].items()} for g in groups}


def _what(probe):
    return "FLOPs reduction" if probe.unit == "FLOPs" else "predicted latency reduction"


def _check_groups(probe, groups, target):
    if not 0 < target < 1:
        raise ConfigError(probe.target_option, f"{target!r} is outside (0, 1)",
                          "the fraction to remove, e.g. 0.5")
    if not groups:
        raise ModelError(f"a {target:.1%} {_what(probe)} cannot be reached: at most 0.0% "
                         "(no prunable layer is left after skips); the model is unchanged",
                         "skip fewer layers")
