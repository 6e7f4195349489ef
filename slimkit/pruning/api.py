"""One call to prune filters: `prune(model, input_shape, criterion="l1", ratios=0.3)`.

Analyzes the model (`analyze`), scores each group's channels with a criterion, keeps the
best ones (`remove_channels`) and measures FLOPs before and after with `paddle.flops`.
"""

import dataclasses
import numbers
import warnings

from ..core import device as devices
from ..core.errors import ConfigError
from ..report.measure import count_flops
from . import plan
from .criteria import get_criterion
from .analysis import analyze
from .dependency import DependencyGraph
from .latency import ExportBench, check_latency_target
from .plan import prune_to_counts  # noqa: F401  (the one removal path, also importable from here)
from .selection import check_ratio
from .units import check_units

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
          batches=None, target_latency_reduction=None, device=None, timing=None, prune_heads=True, prune_mlp=True,
          prune_embed=False, compensate=False):
    """Remove the fraction `ratios` of output channels of conv/linear layers, in place; return a PruneResult.

    `ratios` is one float in [0, 1) for every prunable group, or {layer name: ratio}
    (default 0.3). `target_latency_reduction` (exclusive with `ratios`) instead removes that
    fraction of the Paddle Inference predictor latency, measured (pruning/latency.py), with
    one channel ratio for every group; `timing` (a slimkit.report.timing.Precision) says how
    precisely it is timed (default: the report's defaults, intervals within 4 %).
    `criterion` is a criterion name ("l1", "l2", ...), a Criterion, or an object with `scores(weights)`;
    a data criterion (taylor) needs `batches`, an iterable of (images, labels) training batches.
    Channels kept per group are rounded to a multiple of `round_to` (default: the CPU's channel block,
    16 with AVX-512 else 8, see `pruning.alignment`) and never fewer than `min_channels`
    (`selection.keep_count`, the same rule as the sensitivity scan).
    `skip` names layers to leave alone. `graph` reuses an `analyze` result of this
    (unpruned) model. On any error the model is left unchanged.
    `device` ("cpu", "gpu", "gpu:N"; default: where the model's parameters are) is where the
    work runs and every tensor it creates lives; the model is moved there. The session's
    `paddle.get_device()` is put back afterwards.
    `prune_heads`, `prune_mlp`, `prune_embed` choose the units of attention models (see
    `pruning.units`): whole heads and MLP hidden widths are pruned, embedding widths not.
    `compensate=True` folds the removed channels' means, measured on `batches` (inputs, or
    (inputs, labels) pairs), into the biases of the conv / linear layers reading them
    (`pruning.compensate`); the `variance` criterion also measures on `batches`.
    """
    with devices.model_on(model, device):
        request = plan.Request(criterion, ratios, None, target_latency_reduction,
                               "uniform" if target_latency_reduction is not None else "explicit",
                               skip, round_to, min_channels, prune_heads=prune_heads, prune_mlp=prune_mlp,
                               prune_embed=prune_embed, compensate=compensate)
        return _prune(model, input_shape, request, graph, batches, timing)


def _prune(model, input_shape, request, graph, batches, timing):
    _check(request, batches)
    request.criterion = get_criterion(request.criterion)
    graph = graph or analyze(model, input_shape)
    targets = plan.resolve(graph, request.ratios, request.skip, plan.units(request))
    flops_before = count_flops(model, input_shape)[0]
    if request.target_latency_reduction is not None:
        bench = ExportBench(input_shape, timing)
        try:
            reached, keep, pruned_graph = plan.prune_latency(request, model, graph, input_shape, targets, bench,
                                                             batches=batches)
        finally:
            bench.close()
        layers = [(root, g.channels, keep[g.name].size) for g in targets.groups if g.name in keep
                  for root in g.roots]
        return PruneResult(layers, flops_before, count_flops(model, input_shape)[0], targets.skipped, keep,
                           pruned_graph, reached.to_dict())
    counts = plan.explicit_counts(targets, request.ratios, request.round_to, request.min_channels)
    layers = [(root, g.channels, counts[g.name]) for g in targets.groups
              if counts[g.name] < g.channels for root in g.roots]
    keep, pruned_graph, undo = plan.prune_to_counts(model, graph, counts, request.criterion, batches=batches,
                                                    compensate=request.compensate)
    if not layers:
        warnings.warn(graph.nothing_pruned(targets.groups), stacklevel=3)
    try:
        flops_after = count_flops(model, input_shape)[0]
    except Exception:
        undo()
        raise
    return PruneResult(layers, flops_before, flops_after, targets.skipped, keep, pruned_graph)


def _check(request, batches):
    """The arguments' own checks (exit 2 material), before the model is traced."""
    check_latency_target(request)
    if request.ratios is None:
        request.ratios = None if request.target_latency_reduction is not None else DEFAULT_RATIO
    ratios = request.ratios
    for name, ratio in (ratios.items() if isinstance(ratios, dict) else [(None, ratios)] if ratios is not None
                        else []):
        check_ratio(name, ratio)
    for key, value in (("round_to", request.round_to), ("min_channels", request.min_channels)):
        if value is None and key == "round_to":
            continue  # the default alignment
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ConfigError(key, f"must be an integer >= 1, got {value!r}")
    check_units(*plan.units(request))
    scorer = get_criterion(request.criterion)
    if getattr(scorer, "needs_data", False) and batches is None:
        raise ConfigError("criterion", f"{request.criterion!r} scores channels from activations and gradients: "
                                       "pass batches=[(images, labels), ...]",
                          "or use a weight criterion (l1, l2, fpgm), or the filter_pruning strategy")
    if (request.compensate or getattr(scorer, "needs_inputs", False)) and batches is None:
        what = "compensate=True" if request.compensate else f"criterion {request.criterion!r}"
        raise ConfigError("compensate" if request.compensate else "criterion",
                          f"{what} measures the channels' means and variances: pass batches=[inputs, ...]",
                          "or a weight criterion (l1, l2, fpgm) without compensate, or the filter_pruning strategy")
