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
from ..pruning import plan
from ..pruning.criteria import CRITERIA, Criterion, get_criterion
from ..pruning.latency import check_latency_target
from ..report.measure import count_flops
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

    traces = True
    restructures = True

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
    compensate: bool = option(True, "fold the mean of every removed channel (measured on 8 training batches) into "
                                    "the bias of each conv / linear layer reading it, so a near-constant channel "
                                    "goes almost for free (criterion `variance` ranks channels by what is left); "
                                    "readers without a bias are left as removal leaves them")
    latency_ci_width: Optional[float] = option(
        None, "with target_latency_reduction: time every latency ratio until its 95 % interval is narrower than "
              "this fraction of it; null = report.latency_ci_width", gt=0, lt=1)
    latency_budget_s: Optional[float] = option(
        None, "with target_latency_reduction: seconds each latency measurement may take to narrow its interval; "
              "null = report.latency_budget_s", gt=0)
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
        for key in ("latency_ci_width", "latency_budget_s"):
            if getattr(self, key) is not None and self.target_latency_reduction is None:
                raise ConfigError(key, "only the latency target times the model while pruning",
                                  "remove it, or set report.latency_ci_width / report.latency_budget_s for the "
                                  "report's latencies")
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
            targets = self.targets(graph)
            for name, reason in targets.skipped.items():
                ctx.note(f"{self.display_name}: {name} not pruned: {reason}", "skipped")
            flops_before = count_flops(model, ctx.input_shape)[0]
            original = {g.name: g.channels for g in graph.prunable()}
            channels = dict(original)
            rounds = []
            for step in range(1, self.steps + 1):
                if step > 1:
                    graph = analyze(model, ctx.input_shape)  # shapes changed: trace the pruned model
                    targets = self.targets(graph)
                selection = self._prune_round(model, graph, targets, ctx, step, flops_before, original)
                channels.update(selection.keep)
                rounds.append(selection.to_dict())
                if step < self.steps and self.finetune_epochs:
                    ctx.engine.train(model, epochs=self.finetune_epochs, lr=ctx.hyper("lr", self.finetune_lr),
                                     desc=f"{ctx.stage_name} round {step}")
        except BaseException:
            restore(model, snapshot)
            raise
        self._record(model, ctx, flops_before, original, channels, rounds)
        return model

    def _record(self, model, ctx, flops_before, original, channels, rounds):
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

    @property
    def trains(self):
        return bool(self.finetune_epochs)

    def preflight(self, model, input_shape, as_built=True):
        """Unknown or unprunable layer names, and a FLOPs target the built model's groups cannot reach."""
        from ..pruning.analysis import analyze

        graph = analyze(model, input_shape)
        self.targets(graph)
        if as_built:
            self._check_target(model, graph, input_shape)
        return []

    def _check_target(self, model, graph, input_shape):
        """ConfigError when the largest allowed ratios cannot reach `target_flops_reduction`."""
        target = self.target_flops_reduction
        if target is None:
            return
        from ..pruning.selection import FlopsProbe, keep_counts

        groups = self.targets(graph).groups
        most = self.max_ratio if self.method == "uniform" else max(self.sensitivity.ratios)
        probe = FlopsProbe(model, graph, input_shape)
        reached = probe.reduction(keep_counts(groups, {g.name: most for g in groups}, self.round_to,
                                              self.min_channels))
        if reached + 1e-9 < target:
            raise ConfigError("target_flops_reduction", f"{target:.1%} cannot be reached: at most {reached:.1%} "
                                                        f"with every prunable group at ratio {most}",
                              "lower target_flops_reduction, skip fewer layers, lower min_channels/round_to, or "
                              "allow larger ratios (max_ratio, or larger sensitivity ratios)")

    def targets(self, graph):
        """The plan's Targets on `graph`: groups pruned, explicit ratios, groups skipped and why.

        Unknown or unprunable layer names fail here, all at once, before anything changed; so
        does a model with nothing left to prune.
        """
        targets = plan.resolve(graph, self.ratios, self.skip, plan.units(self))
        if not any(g.name not in targets.skipped for g in graph.prunable()):
            reasons = [f"{name}: {why}" for name, why in targets.skipped.items()]
            more = f"; ... ({len(reasons) - 4} more)" if len(reasons) > 4 else ""
            raise ModelError(f"{self.display_name}: no prunable layer in the model, nothing could be traced as "
                             "prunable (" + "; ".join(reasons[:4]) + more + ")",
                             "a forward that branches on tensor values (if x.mean() > 0) traces one branch: write "
                             "it with tensor ops (paddle.where), or use sparse_pruning, which needs no trace; "
                             "layers named in `skip` are left out")
        return targets

    def _prune_round(self, model, graph, targets, ctx, step, flops_before, original):
        """One round: choose how many channels each group keeps (the plan), then the one removal path."""
        if self.target_latency_reduction is not None:  # steps is 1 (checked): measured, removed and confirmed
            return self._latency_round(model, graph, targets, ctx)
        selection = plan.select(self, model, graph, ctx.input_shape, targets, step / self.steps, flops_before,
                                original, scan=lambda: self._scan(model, graph, ctx, step))
        plan.prune_to_counts(model, graph, selection.keep, self.criterion, ctx.engine,
                             loss_fn=ctx.task.eval_loss_fn, compensate=self._compensates(ctx))
        return selection

    def _compensates(self, ctx):
        """`compensate`, when there is an engine to measure the channels on (a bare Context may have none)."""
        if self.compensate and ctx.engine is None:
            if not any("compensate" in n for n in ctx.notes):
                ctx.note(f"{self.display_name}: compensate skipped: no engine to measure the channels' means on",
                         "skipped")
            return False
        return self.compensate

    def _scan(self, model, graph, ctx, step):
        """The sensitivity scan of the model as it is at this round (its own file per round)."""
        from ..pruning.sensitivity import sensitive
        from ..pruning.units import unit_skips

        cfg = self.sensitivity
        file = Path(cfg.file) if cfg.file else ctx.out_dir / "sensitivity.json"
        if step > 1:  # each round scans a different (already pruned) model
            file = file.with_name(f"{file.stem}-{step}{file.suffix}")
        engine = ctx.engine

        def eval_fn(m):
            return ctx.task.primary_value(engine.evaluate(m, "val", max_batches=cfg.eval_batches))

        left_whole = [*self.skip, *unit_skips(graph, self.ratios, *plan.units(self))]  # units switched off
        return sensitive(model, ctx.input_shape, eval_fn, cfg.ratios, self.criterion, file=file, skip=left_whole,
                         graph=graph, engine=engine, loss_fn=ctx.task.eval_loss_fn, round_to=self.round_to,
                         min_channels=self.min_channels, compensate=self._compensates(ctx),
                         progress=bool(ctx.train.progress))

    def _latency_round(self, model, graph, targets, ctx):
        """The plan's latency path: select on the measured table, remove, confirm on the export (refining)."""
        from ..deploy.stage_latency import report_precision
        from ..pruning.latency import ExportBench

        losses = self._scan(model, graph, ctx, 1) if self.sensitivity is not None else None
        precision = report_precision(ctx.report, width=self.latency_ci_width, budget=self.latency_budget_s)
        bench = ExportBench(ctx.input_shape, precision)
        try:
            reached, _, _ = plan.prune_latency(self, model, graph, ctx.input_shape, targets, bench, losses,
                                               ctx.engine, loss_fn=ctx.task.eval_loss_fn)
        finally:
            bench.close()
        ctx.metrics["latency_target"] = reached.to_dict()
        if not reached.reached or reached.noise:
            ctx.note(f"{self.display_name}: {reached.summary()}", "target")
        return reached.selection
