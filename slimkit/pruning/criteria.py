"""Filter importance criteria: which output channels of a group matter least.

One small class per criterion behind one interface, in the style of Torch-Pruning's
`importance.py`: a criterion sees the whole group and returns one score per channel.

    Criterion().group_scores(group: GroupData) -> np.ndarray   # higher = keep

`GroupData` holds every tensor the group's channels live in (the roots' output weights,
the consumers' input weights, BatchNorm scales and shifts, biases; `slices`) and, for a
criterion with `needs_data`, the roots' activations and loss gradients over a few
training batches. The built-in weight criteria score each root on its own
(`root_scores`) and sum the per-root scores after normalising each to unit L2 norm, so
a wide layer cannot outvote a narrow one; `scores(weights, grads, activations)` is that
root-level view and what a subclass written against it keeps overriding.

Criteria register themselves by name (`class Mine(Criterion, name="mine")`): the
registry is what `get_criterion`, `filter_pruning`'s `criterion` option and its docs
accept. `get_criterion` also takes PaddleSlim's names (`l1_norm`, `geometry_median`,
`L1NormFilterPruner`, `FPGMFilterPruner`, ...), a Criterion class or instance, and any
object with a `scores` method.
"""

import dataclasses

import numpy as np
import paddle
import paddle.nn.functional as F

from ..core.errors import ConfigError, ModelError
from ..core.registry import Registry
from ..core.surgery import eval_mode
from .compensate import measured_inputs

__all__ = ["Criterion", "GroupData", "L1Norm", "L2Norm", "FPGM", "Taylor", "Random", "BNScale", "InputVariance",
           "get_criterion",
           "CRITERIA", "score_groups", "collect_taylor_data", "group_data"]

# name -> Criterion class, filled as the classes are defined; aliases: other names (PaddleSlim's)
CRITERIA = Registry("criterion", "slimkit.pruning.Criterion", case_insensitive=True)


@dataclasses.dataclass
class SliceData:
    """The values of one tensor range a group's channels live in, channels on axis 0 ([count, -1])."""

    layer: str
    layer_type: str   # the layer's class name (Conv2D, BatchNorm2D, Linear, ...)
    tensor: str       # weight, bias, _mean, ...
    role: str         # out (a root's output channels), in (a consumer's inputs), channel (BN, bias, depthwise)
    start: int        # first group channel of the range
    values: np.ndarray
    offset: int = 0   # the range's first position on the tensor's axis
    repeat: int = 1   # positions per channel (a flattened channel's features)


@dataclasses.dataclass
class GroupData:
    """Everything a criterion may use to score one group's channels."""

    name: str
    channels: int
    weights: list                 # root weight arrays, output channels on axis 0 (one per root)
    slices: list                  # [SliceData] of every member tensor: roots, consumers, BN, biases
    activations: list = None      # per root [N, C, ...] outputs over the data batches (needs_data only)
    grads: list = None            # per root [N, C, ...] loss gradients w.r.t. those outputs
    inputs: dict = None           # {reader layer: (mean, variance) per input feature} (needs_inputs only)

    def select(self, role=None, layer_type=None, tensor=None):
        """The slices matching a role, a layer type prefix (e.g. "BatchNorm") and/or a tensor name."""
        return [s for s in self.slices if (role is None or s.role == role) and (tensor is None or s.tensor == tensor)
                and (layer_type is None or s.layer_type.startswith(layer_type))]

    def per_channel(self, slices, reduce):
        """Sum over `slices` of `reduce(values) -> [count]`, placed at each slice's channels: one value per channel."""
        total = np.zeros(self.channels)
        for s in slices:
            total[s.start:s.start + len(s.values)] += np.asarray(reduce(np.asarray(s.values, np.float64)))
        return total


def group_data(model, group, activations=None, grads=None, inputs=None):
    """The GroupData of `group` in `model` (tensor values read now)."""
    from .dependency import group_weights

    layers = dict(model.named_sublayers(include_self=True))
    slices = []
    for s in group.slices:
        layer = layers[s.layer]
        tensor = layer._parameters.get(s.tensor)
        tensor = layer._buffers.get(s.tensor) if tensor is None else tensor
        if tensor is None:
            continue
        values = np.moveaxis(tensor.numpy(), s.axis, 0)[s.offset:s.offset + s.count * s.repeat]
        slices.append(SliceData(s.layer, type(layer).__name__, s.tensor, s.role, s.start,
                                values.reshape(s.count, -1), s.offset, s.repeat))
    return GroupData(group.name, group.channels, group_weights(model, group), slices, activations, grads, inputs)


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
    """Base class: per-output-channel importance of a group (higher = keep).

    Override `group_scores(group)` to use the whole group (consumers, BN parameters,
    activations), `scores(weights, grads, activations)` for the roots' weights only, or
    `root_scores(weight)` for one root at a time (roots are combined by `combine`).
    `class X(Criterion, name="x", aliases=("other",))` registers the name for configs.
    """

    name = ""
    needs_data = False  # True when scores need activations and gradients (collected from training batches)
    needs_inputs = False  # True when scores need the means and variances of what the readers read (`inputs`)
    batches = 4         # training batches a data criterion looks at
    batch_size = None   # their size; None = the engine's default

    def __init_subclass__(cls, name=None, aliases=(), **kwargs):
        super().__init_subclass__(**kwargs)
        if name:
            cls.name = name
            CRITERIA.add(name, cls, aliases)

    def group_scores(self, group):
        return self.scores(group.weights, grads=group.grads, activations=group.activations)

    def scores(self, weights, grads=None, activations=None):
        return combine([self.root_scores(np.asarray(w)) for w in weights])

    def root_scores(self, weight):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class L1Norm(Criterion, name="l1", aliases=("l1_norm", "L1NormFilterPruner")):
    """Sum of absolute weights of each filter (Li et al. 2017; PaddleSlim's L1NormFilterPruner)."""


    def root_scores(self, weight):
        return np.abs(_flat(weight)).sum(axis=1)


class L2Norm(Criterion, name="l2", aliases=("l2_norm", "L2NormFilterPruner")):
    """Euclidean norm of each filter (PaddleSlim's L2NormFilterPruner)."""


    def root_scores(self, weight):
        return np.sqrt((_flat(weight) ** 2).sum(axis=1))


class FPGM(Criterion, name="fpgm", aliases=("geometry_median", "FPGMFilterPruner")):
    """Filter pruning via geometric median (He et al. 2019, arXiv 1811.00250).

    A filter close to all others is replaceable: its importance is the sum of its
    Euclidean distances to every other filter of the layer, from one Gram matrix.
    """


    def root_scores(self, weight):
        w = _flat(weight)
        sq = (w * w).sum(axis=1)
        # |a-b|^2 = |a|^2 + |b|^2 - 2ab; rounding can make the diagonal slightly negative.
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (w @ w.T), 0.0)
        np.fill_diagonal(d2, 0.0)
        return np.sqrt(d2).sum(axis=1)


class Taylor(Criterion, name="taylor"):
    """First-order Taylor expansion of the loss (Molchanov et al. 2017, arXiv 1611.06440).

    Importance of a channel = |mean over its feature map of activation x gradient|,
    averaged over the examples of a few training batches, then L2-normalised per layer.
    `activations` and `grads` are, per root, arrays [N, C, ...] of the root layer's output
    and the loss gradient with respect to it (`collect_taylor_data` gathers them).
    """

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


class Random(Criterion, name="random"):
    """Random scores from a seeded generator: the baseline every criterion should beat."""


    def __init__(self, seed=0):
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def scores(self, weights, grads=None, activations=None):
        return self._rng.random(np.asarray(weights[0]).shape[0])

    def __repr__(self):
        return f"Random(seed={self.seed})"


class InputVariance(Criterion, name="variance"):
    """What removing a channel costs once its mean is folded into the readers' biases (pruning.compensate).

    Score of channel c: sqrt(sum over the conv / linear layers reading it of ||W[:, c]||^2 var(x_c)),
    the spread the readers' outputs lose, with var(x_c) the variance of the channel where each
    reads it, measured on a few training batches (no labels, no gradients). A near-constant
    channel scores low however large its weights: with filter_pruning's `compensate`, removing
    it costs almost nothing, where a weight norm can rank it among the first to keep or to go.
    A group none of whose readers was measured (attention products only) is scored by L1.
    """

    needs_inputs = True

    def group_scores(self, group):
        total, measured = np.zeros(group.channels), False
        for s in group.select(role="in", tensor="weight"):
            if group.inputs is None or s.layer not in group.inputs:
                continue
            variance = group.inputs[s.layer][1]
            rows = np.asarray(s.values, np.float64)  # [count, repeat x the rest of the weight]
            count = rows.shape[0]
            # A channel owns `repeat` consecutive input features of the reader from the slice's offset on.
            spread = variance[s.offset:s.offset + count * s.repeat].reshape(count, s.repeat)
            energy = (rows.reshape(count, s.repeat, -1) ** 2).sum(axis=2)
            total[s.start:s.start + count] += (energy * spread).sum(axis=1)
            measured = True
        return np.sqrt(total) if measured else L1Norm().group_scores(group)


class BNScale(Criterion, name="bn_scale", aliases=("network_slimming",)):
    """|gamma| of the BatchNorm layers the channels pass (Liu et al. 2017, network slimming, arXiv 1708.06519).

    The scales of every BatchNorm on the group's channels are summed; a group with no
    BatchNorm falls back to the L1 norm of its root weights.
    """

    def group_scores(self, group):
        norms = group.select(role="channel", layer_type="BatchNorm", tensor="weight")
        if not norms:
            return L1Norm().group_scores(group)
        return group.per_channel(norms, lambda gamma: np.abs(gamma).sum(axis=1))


def get_criterion(criterion="l1"):
    """A Criterion from a name (l1, l2, fpgm, taylor, random, or PaddleSlim's), a class, or an object with `scores`."""
    if isinstance(criterion, str):
        return CRITERIA.find(criterion, "criterion", Criterion)()
    if isinstance(criterion, type) and callable(getattr(criterion, "scores", None)):
        return criterion()
    if callable(getattr(criterion, "scores", None)):
        return criterion
    raise ConfigError("criterion", f"expected a criterion name or an object with a scores() method, got "
                                   f"{type(criterion).__name__}", f"valid names: {', '.join(CRITERIA)}")


# --- scoring the groups of a model ----------------------------------------------------------

def score_groups(model, groups, criterion, engine=None, batches=None, loss_fn=None, inputs=None):
    """{group name: per-channel scores} of `groups` under `criterion`.

    A criterion that `needs_data` gets the roots' activations and gradients over
    `batches` (an iterable of (images, labels)) or, without them, over the criterion's
    number of shuffled training batches from `engine` (any EngineProtocol); the gradients
    are those of `loss_fn(model, images, labels) -> (loss, outputs)` (default: the task loss
    of a slimkit.Engine, else cross-entropy). A criterion that `needs_inputs` gets `inputs`
    (`compensate.measured_inputs`), measured here over the same batches when not given.
    """
    criterion = get_criterion(criterion)
    data = _activations_and_grads(model, groups, criterion, engine, batches, loss_fn)
    if getattr(criterion, "needs_inputs", False) and inputs is None:
        inputs = measured_inputs(model, groups, engine, batches)
    out = {}
    for g in groups:
        acts, grads = (None, None)
        if data:  # per root [N, channels, ...]: tokens' channels are last, a head's features are its channel's
            acts = [root_channels(model, g, r, data[r][0]) for r in g.roots]
            grads = [root_channels(model, g, r, data[r][1]) for r in g.roots]
        scores = _scores_of(criterion, group_data(model, g, acts, grads, inputs))
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != g.channels:
            raise ModelError(f"criterion {criterion!r} returned {len(scores)} scores for {g.name} "
                             f"({g.channels} channels)", "scores() must return one value per output channel")
        out[g.name] = scores
    return out


def root_channels(model, group, root, values):
    """A root layer's outputs `values` as [N, group channels, ...]: channels from the layer's output axis
    (1 for convs, last for linear layers), a channel's features (a head's head_dim) side by side."""
    from .dependency.graph import channel_rows

    layer = dict(model.named_sublayers(include_self=True))[root]
    moved = np.moveaxis(np.asarray(values), -1 if isinstance(layer, paddle.nn.Linear) else 1, 1)
    parts = [(s, np.moveaxis(moved[:, s.offset:s.offset + s.count * s.repeat], 1, 0))
             for s in group.slices if s.role == "out" and s.layer == root]
    rows = [channel_rows(group.channels, [(s, v[:, n]) for s, v in parts]) for n in range(moved.shape[0])]
    return np.stack(rows).reshape((moved.shape[0], group.channels, -1))


def _scores_of(criterion, group):
    if isinstance(criterion, Criterion):
        return criterion.group_scores(group)
    # A plain object with the root-level `scores` (accepted by get_criterion).
    if group.grads is None:
        return criterion.scores(group.weights)
    return criterion.scores(group.weights, grads=group.grads, activations=group.activations)


def _activations_and_grads(model, groups, criterion, engine, batches, loss_fn=None):
    if not getattr(criterion, "needs_data", False):
        return {}
    if batches is None:
        if engine is None:
            raise ModelError(f"criterion {criterion!r} needs training batches",
                             "pass engine= (slimkit.Engine), or use a weight-based criterion (l1, l2, fpgm)")
        batches = engine.batches("train", criterion.batch_size, shuffle=True, seed=0, max_batches=criterion.batches)
    roots = sorted({r for g in groups for r in g.roots})
    if loss_fn is None:
        task = getattr(engine, "task", None)  # a slimkit.Engine's task loss (pixel cross-entropy for segmenters)
        loss_fn = task.eval_loss_fn if task is not None else None
    return collect_taylor_data(model, roots, batches, loss_fn)


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
    frozen = {id(p): p.stop_gradient for p in model.parameters()}
    try:
        with eval_mode(model):
            count = _backward_over(model, batches, loss_fn)
        if count == 0:
            raise ModelError("no batches to collect activations and gradients from", "check the training split")
    finally:
        for h in handles:
            h.remove()
        for p in model.parameters():
            p.clear_gradient(False)
            p.stop_gradient = frozen[id(p)]
    bad = [n for n in layer_names if not acts[n] or len(grads[n]) != len(acts[n])]
    if bad:
        raise ModelError(f"no gradient reached layer(s) {bad[:5]} (outputs unused by the loss?)",
                         "skip these layers or use a weight-based criterion (l1, l2, fpgm)")
    # Gradient hooks fire in reverse layer order but once per batch, so batch i pairs with batch i.
    return {n: (np.concatenate(acts[n]), np.concatenate(grads[n])) for n in layer_names}


def _backward_over(model, batches, loss_fn):
    """One backward pass per batch (the hooks collect what they need); returns the number of batches."""
    count = 0
    for images, labels in batches:
        images.stop_gradient = True
        # One forward per batch: the hooks keep one output per layer and batch.
        loss = loss_fn(model, images, labels)[0] if loss_fn else F.cross_entropy(model(images), labels)
        loss.backward()
        count += 1
    return count
