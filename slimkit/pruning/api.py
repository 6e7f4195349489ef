"""One call to prune filters: `prune(model, input_shape, criterion="l1", ratios=0.3)`.

Analyzes the model (`analyze`), scores each group's channels with a criterion, keeps the
best ones (`remove_channels`) and measures FLOPs before and after with `paddle.flops`.
"""

import dataclasses
import numbers
import warnings

from ..core import device as devices
from ..core.errors import ConfigError, ModelError
from ..core.schema import _suggest
from ..report.measure import count_flops
from .criteria import get_criterion, score_groups
from .analysis import analyze
from .dependency import DependencyGraph
from .latency import check_latency_target
from .remove import remove_with_undo
from .selection import channels_to_keep, check_ratio, keep_indices, select_uniform
from .units import check_units, unit_skips

DEFAULT_RATIO = 0.3


@dataclasses.dataclass
class PruneResult:
    """What `prune` did: channels per pruned layer, FLOPs (paddle.flops) before/after, what it skipped and why."""

    layers: list  # [(layer name, channels before, channels after)], every root layer of every pruned group
    flops_before: int
    flops_after: int
    skipped: dict  # {layer or group name: reason}
    keep: dict = dataclasses.field(default_factory=dict, repr=False)  # {group name: channel indices kept}
    graph: DependencyGraph = dataclasses.field(default=None, repr=False)  # the pruned model's graph
    latency: dict = dataclasses.field(default_factory=dict)  # measured latencies, with target_latency_reduction

    @property
    def flops_ratio(self):
        return self.flops_after / self.flops_before if self.flops_before else 1.0


def prunable_layers(model, input_shape):
    """Sublayer names whose output channels can be pruned (valid keys of `prune(ratios={...})`)."""
    return [root for g in analyze(model, input_shape).prunable() for root in g.roots]


def prune(model, input_shape, criterion="l1", ratios=None, skip=(), round_to=None, min_channels=1, graph=None,
          batches=None, target_latency_reduction=None, device=None, prune_heads=True, prune_mlp=True,
          prune_embed=False):
    """Remove the fraction `ratios` of output channels of conv/linear layers, in place; return a PruneResult.

    `ratios` is one float in [0, 1) for every prunable group, or {layer name: ratio}
    (default 0.3). `target_latency_reduction` (exclusive with `ratios`) instead removes that
    fraction of the Paddle Inference predictor latency, measured (pruning/latency.py), with
    one channel ratio for every group.
    `criterion` is a criterion name ("l1", "l2", ...), a Criterion, or an object with `scores(weights)`;
    a data criterion (taylor) needs `batches`, an iterable of (images, labels) training batches.
    Channels kept per group are rounded to a multiple of `round_to` (default: the CPU's channel block,
    16 with AVX-512 else 8, see `pruning.alignment`) and never fewer than `min_channels`
    (`selection.channels_to_keep`, the same rule as the sensitivity scan).
    `skip` names layers to leave alone. `graph` reuses an `analyze` result of this
    (unpruned) model. On any error the model is left unchanged.
    `device` ("cpu", "gpu", "gpu:N"; default: where the model's parameters are) is where the
    work runs and every tensor it creates lives; the model is moved there. The session's
    `paddle.get_device()` is put back afterwards.
    `prune_heads`, `prune_mlp`, `prune_embed` choose the units of attention models (see
    `pruning.units`): whole heads and MLP hidden widths are pruned, embedding widths not.
    """
    with devices.model_on(model, device):
        return _prune(model, input_shape, criterion, ratios, skip, round_to, min_channels, graph, batches,
                      target_latency_reduction, (prune_heads, prune_mlp, prune_embed))


def _prune(model, input_shape, criterion, ratios, skip, round_to, min_channels, graph, batches,
           target_latency_reduction, units):
    check_latency_target(_Targets(ratios, target_latency_reduction))
    if ratios is None:
        ratios = 0.0 if target_latency_reduction is not None else DEFAULT_RATIO
    for name, ratio in (ratios.items() if isinstance(ratios, dict) else [(None, ratios)]):
        check_ratio(name, ratio)
    for key, value in (("round_to", round_to), ("min_channels", min_channels)):
        if value is None and key == "round_to":
            continue  # the default alignment
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ConfigError(key, f"must be an integer >= 1, got {value!r}")
    check_units(*units)
    scorer = get_criterion(criterion)
    if getattr(scorer, "needs_data", False) and batches is None:
        raise ConfigError("criterion", f"{criterion!r} scores channels from activations and gradients: pass "
                                       "batches=[(images, labels), ...]", "or use a weight criterion (l1, l2, fpgm), "
                                                                          "or the filter_pruning strategy")
    graph = graph or analyze(model, input_shape)
    skip = [skip] if isinstance(skip, str) else list(skip)
    switched_off = unit_skips(graph, ratios, *units)
    targets = _targets(graph, ratios, skip + list(switched_off))
    skipped = graph.skipped()
    skipped.update(switched_off)
    for name in skip:
        skipped.setdefault(graph.group(name).name, f"skipped as asked (skip={skip})")

    flops_before = count_flops(model, input_shape)[0]
    if target_latency_reduction is not None:
        return _prune_to_latency(model, input_shape, graph, scorer, [g for g, _ in targets], skipped,
                                 target_latency_reduction, round_to, min_channels, flops_before, batches)
    counts = {group.name: channels_to_keep(group.channels, ratio, round_to, max(min_channels, group.min_channels),
                                           group.channel_multiple) for group, ratio in targets}
    layers = [(root, group.channels, counts[group.name]) for group, _ in targets
              if counts[group.name] < group.channels for root in group.roots]
    keep, pruned_graph, undo = prune_to_counts(model, graph, counts, scorer, batches=batches)
    if not layers:
        warnings.warn(graph.nothing_pruned(targets), stacklevel=3)
    try:
        flops_after = count_flops(model, input_shape)[0]
    except Exception:
        undo()
        raise
    return PruneResult(layers, flops_before, flops_after, skipped, keep, pruned_graph)


def prune_to_counts(model, graph, counts, criterion, engine=None, batches=None):
    """Keep `counts[group]` channels of each group (its highest-scoring ones), removing the rest in place.

    The one removal path: `prune`, the filter_pruning stage and its rounds all come here.
    Returns (keep: {group: indices kept}, the pruned model's graph, undo()).
    """
    cut = [graph.group(name) for name, n in counts.items() if n < graph.group(name).channels]
    if not cut:
        return {}, graph, lambda: None
    scores = score_groups(model, cut, criterion, engine, batches)
    keep = {g.name: keep_indices(scores[g.name], counts[g.name], g) for g in cut}
    pruned_graph, undo = remove_with_undo(model, graph, keep)
    return keep, pruned_graph, undo


@dataclasses.dataclass
class _Targets:
    ratios: object
    target_latency_reduction: object


def _prune_to_latency(model, input_shape, graph, scorer, groups, skipped, target, round_to, min_channels,
                      flops_before, batches):
    """A uniform channel ratio bisected on the latency probe, confirmed by measuring the export."""
    from .latency import prune_to_latency

    found = {}

    def select(probe, goal):
        return select_uniform(probe, groups, goal, round_to, min_channels)

    def apply(selection):
        found["keep"], found["graph"], _ = prune_to_counts(model, graph, selection.keep, scorer, batches=batches)

    reached = prune_to_latency(model, graph, input_shape, groups, target, select, apply)
    layers = [(root, g.channels, found["keep"][g.name].size) for g in groups if g.name in found["keep"]
              for root in g.roots]
    return PruneResult(layers, flops_before, count_flops(model, input_shape)[0], skipped, found["keep"],
                       found["graph"], reached.to_dict())


def _targets(graph, ratios, skip):
    """[(group, ratio)] to prune, each group once."""
    skipped_groups = {graph.group(name).name for name in skip}  # ModelError for unknown names
    if not isinstance(ratios, dict):
        return [(g, float(ratios)) for g in graph.prunable() if g.name not in skipped_groups]
    chosen = {}
    for name, ratio in ratios.items():
        group = graph.group(name)
        if not group.prunable:
            raise ModelError(f"layer {name!r} cannot be pruned: {group.reason}",
                             _suggest(name, [r for g in graph.prunable() for r in g.roots]))
        if group.name in skipped_groups:
            continue
        if group.name in chosen and chosen[group.name][1] != float(ratio):
            raise ConfigError(f"ratios[{name!r}]", f"{name!r} is pruned together with {group.roots} "
                                                    f"(same channels), but gets another ratio",
                              f"give all of {group.roots} the same ratio, or only one of them")
        chosen[group.name] = (group, float(ratio))
    return list(chosen.values())
