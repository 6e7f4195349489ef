"""Sensitivity scan: how much accuracy each prunable group loses at each pruning ratio.

PaddleSlim's `sensitive()` semantics: for every prunable group and every ratio, remove
that share of the group's channels (lowest criterion scores first), evaluate, and record
the relative accuracy loss `(base - acc) / base`; the model is put back after each trial.

    losses = sensitive(model, [1, 1, 28, 28], eval_fn=lambda m: engine.evaluate(m, "val", 4)["top1"],
                       ratios=[0.1, 0.3, 0.5, 0.7], file="sens.json")
    # {"layer1.0.conv1": {0.1: 0.0, 0.3: 0.004, ...}, ...}

What makes it cheaper than a naive loop: the model is traced once for the whole scan;
the outputs of layers that run before a trial's pruned layers are recorded once and
replayed (`PrefixCache`), so a trial computes only the rest of the network; trials remove
channels for real (a pruned model evaluates faster) and put back only the layers they
touched; ratios that round to the same channel count are evaluated once and ratios that
remove nothing not at all. Results are written to `file` after every layer,
and a rerun with the same file skips what is already there (so an interrupted scan
resumes). A KeyboardInterrupt leaves a valid file and the model as it was.

In a data-parallel run (slimkit.core.parallel) the groups are shared out: in each round every
rank scans one group on its own, the entries are gathered, and rank 0 writes the merged
file, the same file a single process writes.
"""

import contextlib
import json
import os
import warnings
from pathlib import Path

from tqdm.auto import tqdm

from ..core import device as devices
from ..core import parallel
from ..core.errors import ConfigError, ModelError
from ..core.surgery import capture, model_digest, restore
from .compensate import measured_inputs
from .criteria import get_criterion, score_groups
from .prefix_cache import PrefixCache
from .selection import _member_layers, check_ratio, keep_count, keep_indices, temporarily_pruned

__all__ = ["sensitive", "load_sensitivity", "plot_sensitivity", "format_sensitivity", "DEFAULT_RATIOS"]

DEFAULT_RATIOS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]  # PaddleSlim's np.arange(0.1, 1, 0.1)
FORMAT = 1


def _key(ratio):
    return f"{float(ratio):g}"


def sensitive(model, input_shape, eval_fn, ratios=None, criterion="l1", file=None, layers=None, skip=(),
              graph=None, engine=None, round_to=None, min_channels=1, plot=None, progress=True, verbose=False,
              cache_mb=1024, device=None, loss_fn=None, compensate=False):
    """Relative accuracy loss of every prunable group at every ratio: {group: {ratio: loss}}.

    eval_fn(model) -> accuracy (higher is better) on a fixed evaluation subset.
    ratios: fractions of each group's output channels removed (default 0.1 ... 0.9).
    criterion: which channels go first (l1, l2, fpgm, taylor, random or an object with
    `scores`; taylor needs `engine` for its training batches).
    file: JSON written after every layer; a rerun with it resumes. A PNG of the curves is
    written next to it (or to `plot`). layers / skip: group or layer names to scan / leave out.
    graph: a DependencyGraph from `analyze(model, input_shape)` to reuse.
    cache_mb: memory for replaying the outputs of layers that run before a trial's pruned
    layers (`PrefixCache`); 0 computes every evaluation in full.
    device: where the scan (and `eval_fn`) runs, "cpu", "gpu" or "gpu:N"; default: where the
    model's parameters are. The model is moved there; the session's device comes back after.
    loss_fn: the loss taylor differentiates (see `score_groups`).
    compensate: each trial folds the removed channels' means into the readers' biases, as
    filter_pruning's `compensate` does (measured once on `engine`'s training batches).
    """
    with devices.model_on(model, device):
        return _sensitive(model, input_shape, eval_fn, ratios, criterion, file, layers, skip, graph, engine,
                          round_to, min_channels, plot, progress, verbose, cache_mb, loss_fn, compensate)


def _sensitive(model, input_shape, eval_fn, ratios, criterion, file, layers, skip, graph, engine, round_to,
               min_channels, plot, progress, verbose, cache_mb, loss_fn=None, compensate=False):
    from .analysis import analyze

    ratios = sorted({check_ratio("", r, "ratios") for r in (DEFAULT_RATIOS if ratios is None else ratios)})
    if not ratios:
        raise ConfigError("ratios", "no ratio to scan", "give ratios such as [0.1, 0.3, 0.5, 0.7]")
    criterion = get_criterion(criterion)
    graph = graph if graph is not None else analyze(model, input_shape)
    groups = _groups_to_scan(graph, layers, skip)
    meta = {"format": FORMAT, "criterion": getattr(criterion, "name", "") or type(criterion).__name__,
            "input_shape": list(input_shape), "round_to": round_to, "min_channels": min_channels,
            "model_digest": model_digest(model), **({"compensate": True} if compensate else {})}
    state = parallel.on_main(lambda: _load(file, meta), share=dict, receive=dict)  # rank 0's file, everywhere
    scan = _Scan(model, input_shape, graph, groups, eval_fn, cache_mb)
    bar = tqdm(total=len(groups) * len(ratios), desc="sensitivity", disable=not progress or not parallel.is_main(),
               leave=False, dynamic_ncols=True)
    try:
        if state.get("base") is None:
            state["base"] = scan.evaluate(set())
            parallel.check_equal("the scan's accuracy before pruning", state["base"])
            _save(file, state)
        if state["base"] <= 0:
            raise ModelError(f"the model's accuracy before pruning is {state['base']}: relative losses are undefined",
                             "train the model first, or check eval_fn")
        todo = [g for g in groups if any(_key(r) not in state["layers"].get(g.name, {}).get("losses", {})
                                         for r in ratios)]
        # Every rank scores every group in the same order: a seeded criterion (random) gives what one process would.
        inputs = measured_inputs(model, todo, engine) if todo and (
            compensate or getattr(criterion, "needs_inputs", False)) else None
        scores = score_groups(model, todo, criterion, engine, loss_fn=loss_fn, inputs=inputs) if todo else {}
        scan.means = inputs if compensate else None
        bar.update(len(ratios) * (len(groups) - len(todo)))
        _scan_groups(scan, todo, scores, state, ratios, (round_to, min_channels), bar, file)
    finally:
        bar.close()
        scan.close()  # leaves the user's model exactly as it came, whatever stopped the scan
        _save(file, state)
    result = {g.name: {float(r): l for r, l in state["layers"][g.name]["losses"].items() if float(r) in ratios}
              for g in groups}
    if (file is not None or plot is not None) and parallel.is_main():
        plot_sensitivity(result, plot or Path(file).with_suffix(".png"))
    if verbose and parallel.is_main():
        print(format_sensitivity(result))
    return result


def _scan_groups(scan, todo, scores, state, ratios, rounding, bar, file):
    """Scan the groups of `todo` into `state`, the file saved after each; shared out over the ranks in rounds."""
    n, r = parallel.world_size(), parallel.rank()
    for start in range(0, len(todo), n):
        batch = todo[start:start + n]
        entries = {}
        if r < len(batch):  # this rank's group of the round, scanned alone
            g = batch[r]
            # In the state from the start: an interrupted scan keeps this group's finished ratios.
            entry = state["layers"].setdefault(g.name, {"channels": g.channels, "losses": {}, "kept": {}})
            with parallel.alone():
                scan.group(g, scores[g.name], entry, ratios, state["base"], rounding, bar if n == 1 else None)
            entries[g.name] = entry
        for share in parallel.all_gather(entries, wait=True):  # groups of a round take different times
            state["layers"].update(share)
        if n > 1:
            bar.update(len(ratios) * len(batch))
        _save(file, state)


class _Scan:
    """The trials of one scan: prune a group for real, evaluate (replaying cached prefixes), put it back."""

    def __init__(self, model, input_shape, graph, groups, eval_fn, cache_mb):
        self.model, self.graph, self.eval_fn = model, graph, eval_fn
        self.means = None  # with compensate: the readers' input means (compensate.measured_inputs)
        self.snapshot = capture(model)
        self.touched = {g.name: _member_layers(graph, [g.name]) for g in groups}
        self.cache = (PrefixCache(model, input_shape, list(self.touched.values()), cache_mb * 2**20)
                      if cache_mb > 0 else None)
        self._replaying = contextlib.ExitStack()
        if self.cache is not None:
            self._replaying.enter_context(self.cache.installed())

    def evaluate(self, changed):
        # alone(): a trial is this process's own, also in a data-parallel run.
        with parallel.alone(), self.cache.trial(changed) if self.cache is not None else contextlib.nullcontext():
            return float(self.eval_fn(self.model))

    def group(self, g, scores, entry, ratios, base, rounding, bar):
        """Fill `entry` (losses and kept channels per ratio) of group `g`; ratios already there are kept."""
        round_to, min_channels = rounding
        by_kept = {int(k): entry["losses"][r] for r, k in entry["kept"].items() if r in entry["losses"]}
        for r in ratios:
            if bar is not None:
                bar.set_postfix_str(f"{g.name} {r:g}")
            if _key(r) not in entry["losses"]:
                kept = keep_count(g, r, round_to, min_channels)
                if kept >= g.channels:
                    loss = 0.0  # nothing removed at this ratio
                elif kept in by_kept:
                    loss = by_kept[kept]  # ratios that round to the same channel count are evaluated once
                else:
                    keep = {g.name: keep_indices(scores, kept, g)}
                    with temporarily_pruned(self.model, self.graph, keep, self.snapshot, self.means):
                        loss = (base - self.evaluate(self.touched[g.name])) / base
                    by_kept[kept] = loss
                entry["losses"][_key(r)] = loss
                entry["kept"][_key(r)] = kept
            if bar is not None:
                bar.update(1)

    def close(self):
        self._replaying.close()
        restore(self.model, self.snapshot)


def _groups_to_scan(graph, layers, skip):
    skip_groups = {graph.group(name).name for name in skip}
    if layers is None:
        chosen = list(graph.prunable())
    else:
        chosen, seen = [], set()
        for name in layers:
            g = graph.group(name)
            if not g.prunable:
                raise ModelError(f"layer {name!r} cannot be pruned: {g.reason}", "leave it out of `layers`")
            if g.name not in seen:
                seen.add(g.name)
                chosen.append(g)
    return [g for g in chosen if g.name not in skip_groups]


def load_sensitivity(file):
    """{group: {ratio: loss}} from a scan file written by `sensitive`."""
    path = Path(file)
    if not path.is_file():
        raise ConfigError("sensitivity.file", f"{path} does not exist", "run a scan first: slimkit.sensitive(...)")
    try:
        data = json.loads(path.read_text())
        return {g: {float(r): float(l) for r, l in e["losses"].items()} for g, e in data["layers"].items()}
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError("sensitivity.file", f"{path} is not a sensitivity file ({err})",
                          "delete it and scan again") from None


def _load(file, meta):
    state = {**meta, "base": None, "layers": {}}
    if file is None or not Path(file).is_file():
        return state
    try:
        saved = json.loads(Path(file).read_text())
    except ValueError:
        warnings.warn(f"{file} is not valid JSON; the sensitivity scan starts over", stacklevel=4)
        return state
    changed = [k for k in meta if saved.get(k) != json.loads(json.dumps(meta[k]))]
    if changed:
        warnings.warn(f"{file} holds a scan with a different {', '.join(changed)}; the scan starts over",
                      stacklevel=4)
        return state
    state["base"] = saved.get("base")
    state["layers"] = saved.get("layers", {})
    return state


def _save(file, state):
    if file is None or not parallel.is_main():  # rank 0 writes the merged scan
        return
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)  # atomic: an interrupt never leaves half a file


def format_sensitivity(result):
    """A text table: one row per group, relative accuracy loss in % per ratio."""
    ratios = sorted({r for losses in result.values() for r in losses})
    width = max([len("layer")] + [len(g) for g in result])
    lines = [f"{'layer':<{width}} " + " ".join(f"{r:>7g}" for r in ratios)]
    for g, losses in result.items():
        cells = [f"{100 * losses[r]:>6.2f}%" if r in losses else f"{'-':>7}" for r in ratios]
        lines.append(f"{g:<{width}} " + " ".join(cells))
    return "\n".join(lines)


def plot_sensitivity(result, path):
    """Write a PNG of loss-vs-ratio curves, one per group (matplotlib's Agg canvas, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for g, losses in result.items():
        rs = sorted(losses)
        ax.plot(rs, [100 * losses[r] for r in rs], marker="o", markersize=3, label=g)
    ax.set_xlabel("pruned ratio of output channels")
    ax.set_ylabel("relative accuracy loss (%)")
    ax.set_title("filter pruning sensitivity")
    ax.grid(alpha=0.3)
    if len(result) <= 24:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), dpi=110)
    return path
