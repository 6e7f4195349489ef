"""Filter importance criteria: which output channels of a group matter least.

One small class per criterion behind one interface, in the style of Torch-Pruning's
`importance.py`:

    Criterion().scores(weights, grads=None, activations=None) -> np.ndarray  # one score per channel

`weights` is the list of the group's root weight arrays with output channels on axis 0
(a group coupled by residual adds has several roots). Each root is scored on its own and
the per-root scores are summed after normalising each to unit L2 norm, so a wide layer
cannot outvote a narrow one. A higher score means a more important channel; pruning
keeps the channels with the highest scores.

`get_criterion("l1" | "l2" | "fpgm" | "taylor" | "random" | obj)` accepts these names,
PaddleSlim's (`l1_norm`, `geometry_median`, `L1NormFilterPruner`, `FPGMFilterPruner`, ...)
and any object with a `scores` method.
"""

import numpy as np
import paddle.nn.functional as F

from ..errors import ConfigError, ModelError
from ..schema import _suggest

__all__ = ["Criterion", "L1Norm", "L2Norm", "FPGM", "Taylor", "Random", "get_criterion", "CRITERIA",
           "score_groups", "collect_taylor_data"]


def _flat(weight):
    weight = np.asarray(weight, dtype=np.float64)
    return weight.reshape(weight.shape[0], -1)


def combine(per_root):
    """Sum per-root scores, each normalised to unit L2 norm (a single root is returned as is)."""
    per_root = [np.asarray(s, dtype=np.float64) for s in per_root]
    if len(per_root) == 1:
        return per_root[0]
    lengths = {len(s) for s in per_root}
    if len(lengths) != 1:
        raise ModelError(f"the roots of one group have different channel counts {sorted(lengths)}",
                         "a group's roots must share their output channels")
    total = np.zeros(len(per_root[0]))
    for s in per_root:
        norm = np.linalg.norm(s)
        total += s / norm if norm > 0 else s
    return total


class Criterion:
    """Base class: per-output-channel importance of a group from its root weights (higher = keep)."""

    name = ""
    needs_data = False  # True when scores need activations and gradients (collected from training batches)

    def scores(self, weights, grads=None, activations=None):
        return combine([self.root_scores(np.asarray(w)) for w in weights])

    def root_scores(self, weight):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class L1Norm(Criterion):
    """Sum of absolute weights of each filter (Li et al. 2017; PaddleSlim's L1NormFilterPruner)."""

    name = "l1"

    def root_scores(self, weight):
        return np.abs(_flat(weight)).sum(axis=1)


class L2Norm(Criterion):
    """Euclidean norm of each filter (PaddleSlim's L2NormFilterPruner)."""

    name = "l2"

    def root_scores(self, weight):
        return np.sqrt((_flat(weight) ** 2).sum(axis=1))


class FPGM(Criterion):
    """Filter pruning via geometric median (He et al. 2019, arXiv 1811.00250).

    A filter close to all others is replaceable: its importance is the sum of its
    Euclidean distances to every other filter of the layer, from one Gram matrix.
    """

    name = "fpgm"

    def root_scores(self, weight):
        w = _flat(weight)
        sq = (w * w).sum(axis=1)
        # |a-b|^2 = |a|^2 + |b|^2 - 2ab; rounding can make the diagonal slightly negative.
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (w @ w.T), 0.0)
        np.fill_diagonal(d2, 0.0)
        return np.sqrt(d2).sum(axis=1)


class Taylor(Criterion):
    """First-order Taylor expansion of the loss (Molchanov et al. 2017, arXiv 1611.06440).

    Importance of a channel = |mean over its feature map of activation x gradient|,
    averaged over the examples of a few training batches, then L2-normalised per layer.
    `activations` and `grads` are, per root, arrays [N, C, ...] of the root layer's output
    and the loss gradient with respect to it (`collect_taylor_data` gathers them).
    """

    name = "taylor"
    needs_data = True

    def __init__(self, batches=4, batch_size=None):
        self.batches = batches
        self.batch_size = batch_size

    def scores(self, weights, grads=None, activations=None):
        if grads is None or activations is None:
            raise ModelError("the taylor criterion needs activations and gradients of the root layers",
                             "run it through FilterPruning/sensitive with data, or pass "
                             "collect_taylor_data(...) results; or use criterion l1")
        per_root = []
        for act, grad in zip(activations, grads):
            act, grad = np.asarray(act, dtype=np.float64), np.asarray(grad, dtype=np.float64)
            prod = (act * grad).reshape(act.shape[0], act.shape[1], -1).mean(axis=2)
            score = np.abs(prod).mean(axis=0)
            norm = np.linalg.norm(score)
            per_root.append(score / norm if norm > 0 else score)
        return combine(per_root)

    def __repr__(self):
        return f"Taylor(batches={self.batches})"


class Random(Criterion):
    """Random scores from a seeded generator: the baseline every criterion should beat."""

    name = "random"

    def __init__(self, seed=0):
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def scores(self, weights, grads=None, activations=None):
        return self._rng.random(np.asarray(weights[0]).shape[0])

    def __repr__(self):
        return f"Random(seed={self.seed})"


CRITERIA = {"l1": L1Norm, "l2": L2Norm, "fpgm": FPGM, "taylor": Taylor, "random": Random}
# PaddleSlim's names for the same criteria, so users coming from it find them.
ALIASES = {"l1_norm": "l1", "l2_norm": "l2", "geometry_median": "fpgm",
           "l1normfilterpruner": "l1", "l2normfilterpruner": "l2", "fpgmfilterpruner": "fpgm"}


def get_criterion(criterion="l1"):
    """A Criterion from a name (l1, l2, fpgm, taylor, random, or PaddleSlim's), a class, or an object with `scores`."""
    if isinstance(criterion, str):
        key = criterion.lower()
        key = ALIASES.get(key, key)
        if key not in CRITERIA:
            raise ConfigError("criterion", f"unknown criterion {criterion!r}", _suggest(criterion, list(CRITERIA)))
        return CRITERIA[key]()
    if isinstance(criterion, type) and callable(getattr(criterion, "scores", None)):
        return criterion()
    if callable(getattr(criterion, "scores", None)):
        return criterion
    raise ConfigError("criterion", f"expected a criterion name or an object with a scores() method, got "
                                   f"{type(criterion).__name__}", f"valid names: {', '.join(CRITERIA)}")


# --- scoring the groups of a model ----------------------------------------------------------

def score_groups(model, groups, criterion, engine=None):
    """{group name: per-channel scores} of `groups` under `criterion` (data from `engine` if it needs any)."""
    from .dependency import group_weights

    criterion = get_criterion(criterion)
    data = {}
    if getattr(criterion, "needs_data", False):
        if engine is None:
            raise ModelError(f"criterion {criterion!r} needs training batches",
                             "pass engine= (slimkit.Engine), or use a weight-based criterion (l1, l2, fpgm)")
        roots = sorted({r for g in groups for r in g.roots})
        batches = engine.batches("train", getattr(criterion, "batch_size", None), shuffle=True, seed=0,
                                 max_batches=getattr(criterion, "batches", 4))
        task = getattr(engine, "task", None)  # the task's own loss (pixel cross-entropy for segmenters)
        data = collect_taylor_data(model, roots, batches, task.eval_loss_fn if task is not None else None)
    out = {}
    for g in groups:
        if data:
            acts = [data[r][0] for r in g.roots]
            grads = [data[r][1] for r in g.roots]
            s = criterion.scores(group_weights(model, g), grads=grads, activations=acts)
        else:
            s = criterion.scores(group_weights(model, g))
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if len(s) != g.channels:
            raise ModelError(f"criterion {criterion!r} returned {len(s)} scores for {g.name} "
                             f"({g.channels} channels)", "scores() must return one value per output channel")
        out[g.name] = s
    return out


def collect_taylor_data(model, layer_names, batches, loss_fn=None):
    """Outputs of `layer_names` and the loss gradients w.r.t. them, over `batches` of (images, labels).

    Forward hooks on the layers keep each output and register a gradient hook on it;
    one backward pass per batch fills both. The model's parameters and gradients are
    left as they were (gradients are cleared), and it runs in eval mode so BatchNorm
    statistics do not move.
    """
    layers = dict(model.named_sublayers(include_self=True))
    missing = [n for n in layer_names if n not in layers]
    if missing:
        raise ModelError(f"the model has no layer(s) {missing[:5]}", "pass sublayer names of this model")
    acts = {n: [] for n in layer_names}
    grads = {n: [] for n in layer_names}

    def make_hook(name):
        def hook(layer, inputs, output):
            acts[name].append(output.numpy())
            output.register_hook(lambda g: grads[name].append(g.numpy()))
        return hook

    handles = [layers[n].register_forward_post_hook(make_hook(n)) for n in layer_names]
    was_training = model.training
    model.eval()
    frozen = {id(p): p.stop_gradient for p in model.parameters()}
    try:
        count = 0
        for images, labels in batches:
            images.stop_gradient = True
            # One forward per batch: the hooks keep one output per layer and batch.
            loss = loss_fn(model, images, labels)[0] if loss_fn else F.cross_entropy(model(images), labels)
            loss.backward()
            count += 1
        if count == 0:
            raise ModelError("no batches to collect activations and gradients from", "check the training split")
    finally:
        for h in handles:
            h.remove()
        for p in model.parameters():
            p.clear_gradient(False)
            p.stop_gradient = frozen[id(p)]
        model.train() if was_training else model.eval()
    bad = [n for n in layer_names if not acts[n] or len(grads[n]) != len(acts[n])]
    if bad:
        raise ModelError(f"no gradient reached layer(s) {bad[:5]} (outputs unused by the loss?)",
                         "skip these layers or use a weight-based criterion (l1, l2, fpgm)")
    # Gradient hooks fire in reverse layer order but once per batch, so batch i pairs with batch i.
    return {n: (np.concatenate(acts[n]), np.concatenate(grads[n])) for n in layer_names}
