"""How masks are computed: which layers are pruned, how weights are ranked, exact smallest-k.

Weights (or, for `neuron`, whole output neurons) get a score; the k lowest-scoring
ones are pruned, k = round(sparsity * n) per layer (`scope="layer"`) or over all layers
together (`scope="global"`: one threshold for every layer). Ties at the threshold are
broken by position (earlier layers, then lower flat index, are pruned first), so counts
are exact and repeatable. Units pruned by an earlier mask rank below everything else:
masks only grow, and a schedule never revives a weight.
"""

import dataclasses

import numpy as np
import paddle.nn as nn

from ..core.errors import ConfigError, ModelError, suggest
from ..core.registry import Registry

SCOPES = ("layer", "global")


# --- which layers are pruned ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PrunableLayer:
    """A layer type whose `weight` sparsity prunes; `out_axis` is the weight axis of its output units."""

    layer_type: type
    out_axis: int = 0          # Conv [out, in, kh, kw]: 0; Linear [in, out]: 1
    neurons: bool = False      # whether `neuron` pruning zeroes its whole output units


PRUNABLE_LAYERS = {}  # layer type -> PrunableLayer; biases and normalisation layers are left dense


def register_prunable_layer(layer_type, out_axis=0, neurons=False):
    """Opt a layer type into sparsity (its `weight` gets a mask), as TF-MOT's prunable-layer registry does.

    A user's layer that holds its kernel in `weight` prunes once registered; `out_axis` is
    the weight axis of its outputs and `neurons=True` lets `neuron` pruning zero whole outputs.
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Layer)):
        raise ModelError(f"register_prunable_layer needs a paddle.nn.Layer subclass, got {layer_type!r}",
                         "pass the class, e.g. register_prunable_layer(MyConv, out_axis=0)")
    PRUNABLE_LAYERS[layer_type] = PrunableLayer(layer_type, int(out_axis), bool(neurons))
    return PRUNABLE_LAYERS[layer_type]


register_prunable_layer(nn.Conv2D, out_axis=0)
register_prunable_layer(nn.Linear, out_axis=1, neurons=True)


def prunable_entry(layer):
    """The PrunableLayer of `layer`'s type (the closest registered base class), or None."""
    for cls in type(layer).__mro__:
        if cls in PRUNABLE_LAYERS:
            return PRUNABLE_LAYERS[cls]
    return None


# --- how units are scored -----------------------------------------------------------------------
class SparsityCriterion:
    """Scores the prunable units of one weight: the lowest-scoring ones are zeroed first.

    A subclass registers its name for `method` (`class Mine(SparsityCriterion, name="mine")`);
    configs may also name any subclass as `package.module:Class`. `neurons = True` scores
    whole output units (one score per output, along the layer's `out_axis`) instead of weights.
    """

    name = ""
    neurons = False

    def __init_subclass__(cls, name=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if name:
            cls.name = name
            SPARSITY_CRITERIA.add(name, cls)

    def scores(self, weight, rng):
        """One score per weight (flat, float64), or per output unit when `neurons`; weight outputs on axis 0."""
        raise NotImplementedError

    def layer_kinds(self):
        """The registered layer types this criterion prunes."""
        return tuple(t for t, entry in PRUNABLE_LAYERS.items() if entry.neurons or not self.neurons)


SPARSITY_CRITERIA = Registry("sparsity method", "slimkit.sparsity.SparsityCriterion")


class Magnitude(SparsityCriterion, name="magnitude"):
    """|w| of every weight."""

    def scores(self, weight, rng):
        return np.abs(weight.astype(np.float64)).ravel()


class RandomCriterion(SparsityCriterion, name="random"):
    """A fixed uniform draw per weight (the same on every update, so masks stay nested)."""

    def scores(self, weight, rng):
        return rng.random(weight.size)


class Neuron(SparsityCriterion, name="neuron"):
    """The L2 norm of each output unit's weights (a Linear weight's column)."""

    neurons = True

    def scores(self, weight, rng):
        flat = weight.reshape(weight.shape[0], -1).astype(np.float64)
        return np.sqrt(np.square(flat).sum(axis=1))


def get_sparsity_criterion(method, path="method"):
    """A SparsityCriterion from a registered name, `package.module:Class`, a class or an instance."""
    if isinstance(method, SparsityCriterion):
        return method
    if isinstance(method, type) and issubclass(method, SparsityCriterion):
        return method()
    return SPARSITY_CRITERIA.find(method, path, SparsityCriterion)()


def sparse_prunable_layers(model, skip=(), method="magnitude"):
    """`{name: layer}` of the layers `method` prunes, minus `skip` (layer names or their parents).

    Raises ModelError naming the valid layers when a `skip` entry matches none.
    """
    kinds = get_sparsity_criterion(method).layer_kinds()
    kind_names = "/".join(t.__name__ for t in kinds)
    candidates = {name: layer for name, layer in model.named_sublayers()
                  if isinstance(layer, kinds) and getattr(layer, "weight", None) is not None}
    for entry in skip:
        if not any(_covers(entry, name) for name in candidates):
            raise ModelError(f"skip: the model has no {kind_names} layer named {entry!r}",
                             suggest(entry, list(candidates)))
    layers = {name: layer for name, layer in candidates.items() if not any(_covers(s, name) for s in skip)}
    if not layers:
        raise ModelError(f"the model has no {kind_names} layer left to prune (skip={list(skip)})",
                         "skip fewer layers" if skip else
                         "register the model's layer types with slimkit.sparsity.register_prunable_layer, "
                         "or use method: magnitude")
    return layers


def _covers(entry, name):
    return name == entry or name.startswith(entry + ".")


def check_args(sparsity, method, scope):
    """ConfigError for a sparsity outside [0, 1) or an unknown method/scope; returns the criterion."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ConfigError("sparsity", f"{sparsity!r} is not a fraction in [0, 1)",
                          "give the share of weights to zero, e.g. 0.9 for 90 %")
    criterion = get_sparsity_criterion(method)
    if scope not in SCOPES:
        raise ConfigError("scope", f"{scope!r} is not a scope", suggest(scope, list(SCOPES)))
    return criterion


def units_first(weight, out_axis):
    """`weight` with its output units on axis 0 (what criteria score)."""
    return np.moveaxis(weight, out_axis, 0)


def unit_scores(weight, criterion, rng, pruned_before=None, out_axis=0):
    """One score per prunable unit of `weight` (a numpy array): low scores are pruned first.

    Weight criteria score every weight (in the weight's own order); neuron criteria score each
    output unit along `out_axis`. `pruned_before` (bool per unit) ranks those units first.
    """
    criterion = get_sparsity_criterion(criterion)
    scores = criterion.scores(units_first(weight, out_axis) if criterion.neurons else weight, rng)
    if pruned_before is not None:
        scores = np.where(pruned_before, -1.0, scores)
    return scores


def smallest_k(scores, k):
    """Boolean array marking exactly `k` lowest scores, ties broken by index; and the threshold score."""
    pruned = np.zeros(scores.size, dtype=bool)
    if k <= 0:
        return pruned, None
    if k >= scores.size:
        pruned[:] = True
        return pruned, float(scores.max())
    threshold = np.partition(scores, k - 1)[k - 1]
    pruned = scores < threshold
    ties = np.flatnonzero(scores == threshold)[:k - int(pruned.sum())]
    pruned[ties] = True
    return pruned, float(threshold)


def prune_count(sparsity, n):
    """How many of `n` units a sparsity prunes: round(sparsity * n)."""
    return int(round(sparsity * n))


def compute_masks(weights, sparsity, method="magnitude", scope="layer", seed=0, previous=None, out_axes=None):
    """Masks (1 keep, 0 prune) for `{name: weight array}`; returns `(masks, threshold)`.

    `masks[name]` is the weight mask; for a neuron criterion it is the per-output keep
    vector (one per unit along `out_axes[name]`, default 1: a Linear weight's columns).
    `previous[name]` is the unit mask of an earlier update, if any; `threshold` is the
    global threshold score (`scope="global"`), else None.
    """
    criterion = check_args(sparsity, method, scope)
    previous, out_axes = previous or {}, out_axes or {}
    scores = {}
    for index, (name, weight) in enumerate(weights.items()):
        rng = np.random.default_rng([seed, index])
        before = previous.get(name)
        scores[name] = unit_scores(weight, criterion, rng, None if before is None else before.ravel() == 0,
                                   out_axes.get(name, 1))
    masks, threshold = {}, None
    if scope == "global":
        flat = np.concatenate([s for s in scores.values()])
        pruned, threshold = smallest_k(flat, prune_count(sparsity, flat.size))
        offset = 0
        for name, s in scores.items():
            masks[name] = _keep(pruned[offset:offset + s.size], weights[name], criterion)
            offset += s.size
    else:
        for name, s in scores.items():
            pruned, _ = smallest_k(s, prune_count(sparsity, s.size))
            masks[name] = _keep(pruned, weights[name], criterion)
    return masks, threshold


def _keep(pruned, weight, criterion):
    keep = (~pruned).astype(np.float32)
    return keep if criterion.neurons else keep.reshape(weight.shape)
