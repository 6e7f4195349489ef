"""Structured filter pruning as a stage: remove whole output channels to reach a ratio or a FLOPs target.

    FilterPruning(criterion="l1", target_flops_reduction=0.5, sensitivity={"ratios": [0.2, 0.4, 0.6, 0.8]})
    FilterPruning(ratios=0.3, skip=["conv1"])               # 30 % of every group's channels
    FilterPruning(ratios={"layer1.0.conv1": 0.5})           # only the groups named

Channels are removed for real (smaller tensors, fewer FLOPs, faster inference), groups
coupled by residual adds together. The stage records the channels of every group before
and after, and the FLOPs reduction measured with paddle.flops on the pruned model.
"""

import dataclasses
from pathlib import Path
from typing import Literal, Optional, Union

from ..core.errors import ConfigError, ModelError
from ..core.schema import Options, option
from ..core.surgery import capture, restore
from ..pruning.criteria import CRITERIA, Criterion, get_criterion
from ..pruning.latency import check_latency_target
from ..report.measure import count_flops
from ..train.tasks import primary_metric
from .base import Strategy

__all__ = ["FilterPruning", "SensitivityConfig"]


@dataclasses.dataclass
class SensitivityConfig(Options):
    """How the sensitivity scan runs (option `sensitivity` of filter_pruning)."""

    ratios: list[float] = option(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                                 doc="pruning ratios tried on every group (the largest is the most a group "
                                     "may lose)", gt=0, lt=1)
    eval_batches: int = option(4, "validation batches (of train.eval_batch_size) evaluated per trial", ge=1)
    file: Optional[str] = option(None, "JSON of the scan, written after every layer and resumed from; "
                                       "default: sensitivity.json in the stage folder")

    def check(self):
        if not self.ratios:
            raise ConfigError("ratios", "no ratio to scan", "give ratios such as [0.2, 0.4, 0.6, 0.8]")


@dataclasses.dataclass
class FilterPruning(Strategy, type_name="filter_pruning"):
    """Remove the least important output channels of conv/linear layers (and their dependents)."""

    criterion: Union[str, Criterion] = option(
        "l1", f"which channels go first, a registered criterion: {', '.join(CRITERIA)} (see the strategy page); "
              "in Python also an instance of a slimkit.pruning.Criterion subclass")
    ratios: Optional[Union[float, dict[str, float]]] = option(
        None, "fraction of output channels removed: one number for every group, or {layer: ratio} for the "
              "layers named (others untouched); exclusive with target_flops_reduction", ge=0, lt=1)
    target_flops_reduction: Optional[float] = option(
        None, "fraction of FLOPs to remove, measured with paddle.flops on the pruned model", gt=0, lt=1)
    target_latency_reduction: Optional[float] = option(
        None, "fraction of the deployed latency to remove, measured on the Paddle Inference predictor (oneDNN, "
              "1 thread, batch 1); exclusive with ratios and target_flops_reduction", gt=0, lt=1)
    selection: Literal["auto", "greedy", "threshold", "uniform"] = option(
        "auto", "how ratios are chosen for the target: greedy (least scanned loss per FLOP saved), threshold "
                "(PaddleSlim's loss-threshold bisection), uniform (one ratio for all); auto = greedy with a "
                "sensitivity scan, uniform without")
    sensitivity: Optional[SensitivityConfig] = option(
        None, "run a sensitivity scan to choose per-layer ratios: a mapping of `ratios` (default 0.1 ... 0.9), "
              "`eval_batches` (default 4) and `file` (default: sensitivity.json in the stage folder)")
    max_ratio: float = option(0.9, "largest ratio any group may get when `selection` is uniform", gt=0, lt=1)
    skip: list[str] = option(default_factory=list, doc="layer names never pruned")
    round_to: Optional[int] = option(None, "keep a multiple of this many channels per group; null = the "
                                           "channel block oneDNN's kernels use on this CPU, 16 with AVX-512 "
                                           "else 8 (less for small layers); 1 turns alignment off", ge=1)
    min_channels: int = option(1, "never keep fewer channels than this in a group", ge=1)
    steps: int = option(1, "prune in this many rounds, a linear schedule towards the ratio/target", ge=1)
    finetune_epochs: int = option(0, "epochs of training between rounds (needs steps >= 2)", ge=0)
    finetune_lr: Optional[float] = option(None, "learning rate of the training between rounds; null = train.lr",
                                          gt=0)
    prune_heads: bool = option(True, "remove whole attention heads (from q, k, v and the projection's inputs; "
                                     "head_dim is kept, the layer's head count follows)")
    prune_mlp: bool = option(True, "prune the hidden width of MLPs on tokens (fc1 outputs with fc2 inputs)")
    prune_embed: bool = option(False, "prune embedding widths: token streams attention reads (every LayerNorm, "
                                      "qkv input, projection output, position embedding, class token and head on "
                                      "the stream) and any width LayerNorms normalize (ConvNeXt's stream); not "
                                      "exact through LayerNorms: finetune after")

    def to_dict(self):
        out = super().to_dict()
        if isinstance(self.criterion, Criterion):
            # Recorded by class so a resumed run can tell whether the criterion changed.
            out["criterion"] = f"{type(self.criterion).__module__}.{type(self.criterion).__qualname__}"
        return out

    def check(self):
        if isinstance(self.criterion, str):
            get_criterion(self.criterion)  # an unknown name fails here, naming the closest registered one
        if self.ratios is None and self.target_flops_reduction is None and self.target_latency_reduction is None:
            raise ConfigError("ratios", "give `ratios`, `target_flops_reduction` or `target_latency_reduction`",
                              "e.g. target_flops_reduction: 0.5 (measured FLOPs), or ratios: 0.3 (channels)")
        if self.ratios is not None and self.target_flops_reduction is not None:
            raise ConfigError("target_flops_reduction", "`ratios` and `target_flops_reduction` exclude each other",
                              "keep one of them")
        check_latency_target(self)
        if isinstance(self.ratios, dict) and not self.ratios:
            raise ConfigError("ratios", "an empty mapping prunes nothing", "name layers, or give one number")
        if self.ratios is not None and self.sensitivity is not None:
            raise ConfigError("sensitivity", "a sensitivity scan only serves target_flops_reduction",
                              "remove `sensitivity`, or replace `ratios` by target_flops_reduction")
        if self.ratios is not None and self.selection != "auto":
            raise ConfigError("selection", "`selection` only applies to target_flops_reduction", "remove it")
        if self.selection in ("greedy", "threshold") and self.sensitivity is None:
            raise ConfigError("selection", f"{self.selection} selection needs a sensitivity scan",
                              "add e.g. sensitivity: {ratios: [0.2, 0.4, 0.6, 0.8]}, or use selection: uniform")
        if self.selection == "uniform" and self.sensitivity is not None:
            raise ConfigError("sensitivity", "uniform selection does not use the scan",
                              "remove `sensitivity`, or use selection: greedy")
        if self.finetune_epochs and self.steps == 1:
            raise ConfigError("finetune_epochs", "training runs between rounds, and steps is 1",
                              "set steps >= 2, or add a finetune stage after this one")

    @property
    def target(self):
        """The FLOPs or latency reduction asked for (None with explicit ratios)."""
        return self.target_flops_reduction if self.target_latency_reduction is None else self.target_latency_reduction

    @property
    def method(self):
        if self.ratios is not None:
            return "explicit"
        if self.selection == "auto":
            return "greedy" if self.sensitivity is not None else "uniform"
        return self.selection

    # --- applying ----------------------------------------------------------------------------
    def apply(self, model, ctx):
        from ..pruning.analysis import analyze

        snapshot = capture(model)
        try:
            graph = analyze(model, ctx.input_shape)
            self._resolve_names(graph)
            for name, reason in graph.skipped().items():
                ctx.note(f"{self.display_name}: {name} not pruned: {reason}", "skipped")
            for name in self.skip:
                ctx.note(f"{self.display_name}: {graph.group(name).name} not pruned: in `skip`", "skipped")
            for name, reason in self._unit_skips(graph).items():
                ctx.note(f"{self.display_name}: {name} not pruned: {reason}", "skipped")
            flops_before = count_flops(model, ctx.input_shape)[0]
            original = {g.name: g.channels for g in graph.prunable()}
            channels = dict(original)
            rounds = []
            for step in range(1, self.steps + 1):
                if step > 1:
                    graph = analyze(model, ctx.input_shape)  # shapes changed: trace the pruned model
                selection = self._prune_round(model, graph, ctx, step, flops_before, original)
                channels.update(selection.keep)
                rounds.append(selection.to_dict())
                if step < self.steps and self.finetune_epochs:
                    ctx.engine.train(model, epochs=self.finetune_epochs, lr=ctx.hyper("lr", self.finetune_lr),
                                     desc=f"{ctx.stage_name} round {step}")
        except BaseException:
            restore(model, snapshot)
            raise
        flops_after = count_flops(model, ctx.input_shape)[0]
        ctx.metrics.update({
            "criterion": self.to_dict()["criterion"], "selection": self.method,
            "flops_before": flops_before, "flops_after": flops_after,
            "flops_reduction": round(1 - flops_after / flops_before, 5),
            "channels": {g: [original[g], channels[g]] for g in original},
            "ratios": rounds[-1]["ratios"] if self.steps == 1 else [r["ratios"] for r in rounds],
        })
        if any(r["predicted_loss"] for r in rounds):
            ctx.metrics["predicted_loss"] = {g: l for r in rounds for g, l in r["predicted_loss"].items()}
        if self.target_flops_reduction is not None and 1 - flops_after / flops_before < self.target_flops_reduction:
            ctx.note(f"{self.display_name}: measured FLOPs reduction {1 - flops_after / flops_before:.1%} is below "
                     f"the target {self.target_flops_reduction:.1%}", "target")
        return model

    def _unit_skips(self, graph):
        from ..pruning.units import unit_skips

        return unit_skips(graph, self.ratios, self.prune_heads, self.prune_mlp, self.prune_embed)

    def _resolve_names(self, graph):
        # Unknown names fail here, before anything changed (graph.group suggests close names).
        for name in self.skip:
            graph.group(name)
        self._unit_skips(graph)  # ratios naming a unit switched off fail here too
        if isinstance(self.ratios, dict):
            for name in self.ratios:
                g = graph.group(name)
                if not g.prunable:
                    raise ModelError(f"layer {name!r} cannot be pruned: {g.reason}", "remove it from `ratios`")

    def _groups(self, graph):
        skipped = {graph.group(n).name for n in self.skip} | set(self._unit_skips(graph))
        return [g for g in graph.prunable() if g.name not in skipped]

    def _prune_round(self, model, graph, ctx, step, flops_before, original):
        """One round: choose how many channels each group keeps, then the one prune path removes the rest."""
        from ..pruning.api import prune_to_counts

        if self.target_latency_reduction is not None:  # steps is 1 (checked): measured, removed and confirmed
            return self._latency_round(model, graph, ctx)
        selection = self._select(model, graph, ctx, step, flops_before, original)
        prune_to_counts(model, graph, selection.keep, self.criterion, ctx.engine)
        return selection

    def _select(self, model, graph, ctx, step, flops_before, original):
        """This round's Selection (kept channels per group) for the stage's goal.

        Each goal kind is one branch returning a Selection: explicit ratios, a FLOPs
        target; another target kind (e.g. latency) is one more branch of the same shape.
        """
        from ..pruning import selection as sel

        groups = self._groups(graph)
        probe = sel.FlopsProbe(model, graph, ctx.input_shape)
        share = step / self.steps  # the linear schedule: this round's cumulative share of the goal
        if self.ratios is not None:
            chosen = self._explicit(graph, groups, share, original)
            return sel.explicit_ratios(probe, [g for g in groups if g.name in chosen], chosen,
                                       self.round_to, self.min_channels)
        goal = self.target_flops_reduction * share
        target = 1 - (1 - goal) * flops_before / probe.base  # relative to the model as it is now
        if target <= 0:
            return sel.Selection(self.method, {}, {}, {}, probe.base, probe.base)
        if self.method == "uniform":
            return sel.select_uniform(probe, groups, target, self.round_to, self.min_channels, self.max_ratio)
        losses = self._scan(model, graph, ctx, step)
        pick = sel.select_greedy if self.method == "greedy" else sel.select_by_threshold
        return pick(probe, groups, losses, target, self.round_to, self.min_channels)

    def _scan(self, model, graph, ctx, step):
        """The sensitivity scan of the model as it is at this round (its own file per round)."""
        from ..pruning.sensitivity import sensitive

        cfg = self.sensitivity
        file = Path(cfg.file) if cfg.file else ctx.out_dir / "sensitivity.json"
        if step > 1:  # each round scans a different (already pruned) model
            file = file.with_name(f"{file.stem}-{step}{file.suffix}")
        engine = ctx.engine

        def eval_fn(m):
            return primary_metric(engine, engine.evaluate(m, "val", max_batches=cfg.eval_batches))

        return sensitive(model, ctx.input_shape, eval_fn, cfg.ratios, self.criterion, file=file,
                         skip=self.skip + list(self._unit_skips(graph)),
                         graph=graph, engine=engine, round_to=self.round_to, min_channels=self.min_channels,
                         progress=bool(ctx.train.progress))

    def _latency_round(self, model, graph, ctx):
        """Select on the measured latency table, remove, and confirm on the exported model (refining)."""
        from ..pruning import selection as sel
        from ..pruning.api import prune_to_counts
        from ..pruning.latency import prune_to_latency

        groups = self._groups(graph)
        losses = self._scan(model, graph, ctx, 1) if self.sensitivity is not None else None

        def select(probe, goal):
            if self.method == "uniform":
                return sel.select_uniform(probe, groups, goal, self.round_to, self.min_channels, self.max_ratio)
            pick = sel.select_greedy if self.method == "greedy" else sel.select_by_threshold
            return pick(probe, groups, losses, goal, self.round_to, self.min_channels)

        reached = prune_to_latency(model, graph, ctx.input_shape, groups, self.target_latency_reduction, select,
                                   lambda chosen: prune_to_counts(model, graph, chosen.keep, self.criterion,
                                                                  ctx.engine))
        ctx.metrics["latency_target"] = reached.to_dict()
        if not reached.reached:
            ctx.note(f"{self.display_name}: measured predictor latency reduction {reached.reduction:.1%} is below "
                     f"the target {self.target_latency_reduction:.1%} after {reached.attempts} selection(s)",
                     "target")
        return reached.selection

    def _explicit(self, graph, groups, share, original):
        """This round's ratios relative to the current channels, reaching `share` of the final cut."""
        from ..pruning.selection import channels_to_keep

        if isinstance(self.ratios, dict):
            wanted = {graph.group(n).name: r for n, r in self.ratios.items()}
        else:
            wanted = {g.name: self.ratios for g in groups}
        out = {}
        for g in groups:
            if g.name not in wanted:
                continue
            base = original.get(g.name, g.channels)
            goal = channels_to_keep(base, wanted[g.name] * share, 1, 1)
            out[g.name] = max(0.0, 1 - goal / g.channels)
        return out
