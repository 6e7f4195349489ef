"""The pruning plan `slimkit.prune` and the filter_pruning stage share: which groups, how many channels, how.

- `resolve(graph, ratios, skip)`: the groups to prune (each once), their ratios when given
  explicitly, and every group left alone with the reason; unknown or unprunable names fail
  here, before anything changed.
- `explicit_counts` / `select`: the channels each group keeps, from explicit ratios (on the
  schedule of a multi-round stage) or for a FLOPs target by the chosen method (`choose`:
  uniform, greedy, threshold; the selections of `selection.py`).
- `prune_to_counts`: the one removal path (score with the criterion, keep the best).
- `prune_latency`: a latency target, measured in the Paddle Inference predictor
  (`latency.prune_to_latency`), the selection made by the same `choose`.

`request` is any object with the pruning options (`ratios`, `target_flops_reduction`,
`target_latency_reduction`, `method`, `criterion`, `skip`, `round_to`, `min_channels`,
`max_ratio`): the filter_pruning stage itself, or a `Request` that `slimkit.prune` fills in.
"""

import dataclasses
from typing import Optional

from ..core.errors import ConfigError, ModelError, raise_all, suggest
from ..core.surgery import capture, restore
from .compensate import fold_means, kept_mask, measured_inputs, reader_layers
from .criteria import get_criterion, score_groups
from .remove import remove_with_undo
from .units import unit_skips
from .selection import (FlopsProbe, Selection, channels_to_keep, explicit_ratios, keep_counts, keep_indices,
                        select_by_threshold, select_greedy, select_uniform)

SKIP_REASON = "in `skip`"


@dataclasses.dataclass
class Request:
    """The pruning options `slimkit.prune` passes to the plan (the filter_pruning stage passes itself)."""

    criterion: object = "l1"
    ratios: object = None
    target_flops_reduction: Optional[float] = None
    target_latency_reduction: Optional[float] = None
    method: str = "explicit"   # explicit | uniform | greedy | threshold
    skip: tuple = ()
    round_to: Optional[int] = None
    min_channels: int = 1
    max_ratio: float = 0.9
    prune_heads: bool = True
    prune_mlp: bool = True
    prune_embed: bool = False
    compensate: bool = False


@dataclasses.dataclass
class Targets:
    """What a plan acts on: the groups to prune, their explicit ratios (None for a target), what it skips."""

    groups: list
    ratios: Optional[dict]   # {group name: ratio} for explicit ratios
    skipped: dict            # {group name: why it is not pruned}


def units(request):
    """(prune_heads, prune_mlp, prune_embed) of a request: which units of attention models it prunes."""
    return request.prune_heads, request.prune_mlp, request.prune_embed


def resolve(graph, ratios=None, skip=(), unit_switches=(True, True, False)):
    """Targets of `graph`: every prunable group not in `skip` (or those `ratios` names), each group once.

    `unit_switches` (`units(request)`) leave the groups of units switched off whole, with the
    option in the reason (`pruning.units`).

    Unknown layer names are ModelErrors naming the closest ones (graph.group), so is a layer
    in `ratios` that cannot be pruned, all of them raised at once; two layers of one group
    with different ratios are a ConfigError.
    """
    skip = [skip] if isinstance(skip, str) else list(skip)
    errors = []
    skipped_groups = {g.name for g in (_named_group(graph, name, errors) for name in skip) if g is not None}
    named = {name: _named_group(graph, name, errors, prunable=True) for name in ratios} \
        if isinstance(ratios, dict) else {}
    raise_all(errors)
    skipped = dict(graph.skipped())
    for name in sorted(skipped_groups):
        skipped.setdefault(name, SKIP_REASON)
    switched_off = unit_skips(graph, ratios, *unit_switches)  # ratios naming one of them: a ConfigError
    skipped.update({name: why for name, why in switched_off.items() if name not in skipped})
    skipped_groups |= set(switched_off)
    if not isinstance(ratios, dict):
        groups = [g for g in graph.prunable() if g.name not in skipped_groups]
        return Targets(groups, None, skipped)
    chosen = {}
    for name, ratio in ratios.items():
        group = named[name]
        if group.name in skipped_groups:
            continue
        if group.name in chosen and chosen[group.name][1] != float(ratio):
            raise ConfigError(f"ratios[{name!r}]", f"{name!r} is pruned together with {group.roots} "
                                                    f"(same channels), but gets another ratio",
                              f"give all of {group.roots} the same ratio, or only one of them")
        chosen[group.name] = (group, float(ratio))
    return Targets([g for g, _ in chosen.values()], {g.name: r for g, r in chosen.values()}, skipped)


def _named_group(graph, name, errors, prunable=False):
    """The group of layer `name` (None, its ModelError added to `errors`, if unknown or, asked `prunable`, fixed)."""
    try:
        group = graph.group(name)
    except ModelError as err:
        errors.append(err)
        return None
    if prunable and not group.prunable:
        errors.append(ModelError(f"layer {name!r} cannot be pruned: {group.reason}",
                                 "remove it from `ratios`; " + suggest(name, [r for g in graph.prunable()
                                                                                for r in g.roots])))
        return None
    return group


def explicit_ratios_for(targets, ratios, share=1.0, original=None):
    """{group: ratio of its current channels} that removes `share` of the cut `ratios` asks of the original.

    `ratios`: one number or the resolved {group: ratio}; `original`: {group: channels before
    the first round} (default: the current ones). Round i of n removes i/n of the final cut.
    """
    wanted = targets.ratios if targets.ratios is not None else {g.name: float(ratios) for g in targets.groups}
    out = {}
    for g in targets.groups:
        if g.name in wanted:
            base = (original or {}).get(g.name, g.channels)
            goal = channels_to_keep(base, wanted[g.name] * share, 1, 1)
            out[g.name] = max(0.0, 1 - goal / g.channels)
    return out


def explicit_counts(targets, ratios, round_to=None, min_channels=1, share=1.0, original=None):
    """{group: channels kept} for explicit ratios (the rounding and floors of `selection.keep_count`)."""
    chosen = explicit_ratios_for(targets, ratios, share, original)
    return keep_counts([g for g in targets.groups if g.name in chosen], chosen, round_to, min_channels)


def choose(request, probe, groups, target, losses=None):
    """The one dispatch: the Selection reaching `target` on `probe` by `request.method` (losses: the scan's)."""
    if request.method == "uniform":
        return select_uniform(probe, groups, target, request.round_to, request.min_channels, request.max_ratio)
    pick = {"greedy": select_greedy, "threshold": select_by_threshold}.get(request.method)
    if pick is None:
        raise ConfigError("selection", f"{request.method!r} selects no target", "use uniform, greedy or threshold")
    return pick(probe, groups, losses, target, request.round_to, request.min_channels)


def select(request, model, graph, input_shape, targets, share=1.0, flops_before=None, original=None, scan=None):
    """This round's Selection for explicit ratios or a FLOPs target (`share` of it, on the linear schedule).

    `flops_before`: FLOPs before the first round (the target is relative to them);
    `scan()`: the sensitivity scan's losses, called only when the method needs them.
    """
    probe = FlopsProbe(model, graph, input_shape)
    if request.ratios is not None:
        chosen = explicit_ratios_for(targets, request.ratios, share, original)
        return explicit_ratios(probe, [g for g in targets.groups if g.name in chosen], chosen, request.round_to,
                               request.min_channels)
    goal = request.target_flops_reduction * share
    target = 1 - (1 - goal) * (flops_before or probe.base) / probe.base  # relative to the model as it is now
    if target <= 0:
        return Selection(request.method, {}, {}, {}, probe.base, probe.base)
    losses = scan() if request.method in ("greedy", "threshold") else None
    return choose(request, probe, targets.groups, target, losses)


def prune_to_counts(model, graph, counts, criterion, engine=None, batches=None, loss_fn=None, compensate=False):
    """Keep `counts[group]` channels of each group (its highest-scoring ones), removing the rest in place.

    The one removal path: `prune`, the filter_pruning stage and its rounds all come here.
    `loss_fn` is the loss a data criterion (taylor) differentiates (see `score_groups`).
    `compensate`: the removed channels' means, measured on `batches` or the engine's training
    batches, go into the biases of the layers reading them (`compensate.fold_means`).
    Returns (keep: {group: indices kept}, the pruned model's graph, undo()).
    """
    cut = [graph.group(name) for name, n in counts.items() if n < graph.group(name).channels]
    if not cut:
        return {}, graph, lambda: None
    criterion = get_criterion(criterion)
    if batches is not None and not isinstance(batches, (list, tuple)):
        batches = list(batches)  # read twice: by the criterion and by the statistics
    inputs = None
    if compensate or getattr(criterion, "needs_inputs", False):
        inputs = measured_inputs(model, cut, engine, batches)
    scores = score_groups(model, cut, criterion, engine, batches, loss_fn, inputs)
    keep = {g.name: keep_indices(scores[g.name], counts[g.name], g) for g in cut}
    if not compensate:
        pruned_graph, undo = remove_with_undo(model, graph, keep)
        return keep, pruned_graph, undo
    layers = dict(model.named_sublayers(include_self=True))
    readers = {name: capture(layers[name]) for name in reader_layers(model, cut)}

    def put_back():
        for name, snap in readers.items():
            restore(layers[name], snap)

    fold_means(model, cut, {g.name: kept_mask(g, keep[g.name]) for g in cut}, inputs)
    try:
        pruned_graph, undo_removal = remove_with_undo(model, graph, keep)
    except BaseException:
        put_back()
        raise

    def undo():
        undo_removal()
        put_back()

    return keep, pruned_graph, undo


def prune_latency(request, model, graph, input_shape, targets, bench=None, losses=None, engine=None, batches=None,
                  loss_fn=None):
    """Prune `model` in place to `request.target_latency_reduction` of its measured predictor latency.

    The selection is `choose(request, ...)` on the latency probe; `bench` (a
    latency.ExportBench: how exports are timed) defaults to the predictor with the default
    Precision. Returns (LatencyResult, {group: indices kept}, the pruned model's graph).
    """
    from .latency import prune_to_latency

    found = {"keep": {}, "graph": graph}

    def select_on(probe, goal):
        return choose(request, probe, targets.groups, goal, losses)

    def apply(selection):
        found["keep"], found["graph"], _ = prune_to_counts(model, graph, selection.keep, request.criterion, engine,
                                                           batches, loss_fn, request.compensate)

    reached = prune_to_latency(model, graph, input_shape, targets.groups, request.target_latency_reduction,
                               select_on, apply, bench)
    return reached, found["keep"], found["graph"]
