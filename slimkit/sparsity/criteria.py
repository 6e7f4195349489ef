"""How masks are computed: which layers are pruned, how weights are ranked, exact smallest-k.

Weights (or, for `neuron`, whole output neurons) get a score; the k lowest-scoring
ones are pruned, k = round(sparsity * n) per layer (`scope="layer"`) or over all layers
together (`scope="global"`: one threshold for every layer). Ties at the threshold are
broken by position (earlier layers, then lower flat index, are pruned first), so counts
are exact and repeatable. Units pruned by an earlier mask rank below everything else:
masks only grow, and a schedule never revives a weight.
"""

import numpy as np
import paddle.nn as nn

from ..core.errors import ConfigError, ModelError
from ..core.schema import _suggest

METHODS = ("magnitude", "random", "neuron")
SCOPES = ("layer", "global")
# Layer types whose `weight` is pruned; biases and normalisation layers are left dense.
WEIGHT_LAYERS = (nn.Conv2D, nn.Linear)
NEURON_LAYERS = (nn.Linear,)


def sparse_prunable_layers(model, skip=(), method="magnitude"):
    """`{name: layer}` of the layers `method` prunes, minus `skip` (layer names or their parents).

    Raises ModelError naming the valid layers when a `skip` entry matches none.
    """
    types = NEURON_LAYERS if method == "neuron" else WEIGHT_LAYERS
    candidates = {name: layer for name, layer in model.named_sublayers()
                  if isinstance(layer, types) and getattr(layer, "weight", None) is not None}
    for entry in skip:
        if not any(_covers(entry, name) for name in candidates):
            kinds = "Linear" if method == "neuron" else "Conv2D/Linear"
            raise ModelError(f"skip: the model has no {kinds} layer named {entry!r}",
                             _suggest(entry, list(candidates)))
    layers = {name: layer for name, layer in candidates.items() if not any(_covers(s, name) for s in skip)}
    if not layers:
        raise ModelError(f"the model has no {'Linear' if method == 'neuron' else 'Conv2D or Linear'} layer left "
                         f"to prune (skip={list(skip)})",
                         "skip fewer layers" if skip else "neuron pruning needs Linear layers; use method: magnitude")
    return layers


def _covers(entry, name):
    return name == entry or name.startswith(entry + ".")


def check_args(sparsity, method, scope):
    """ConfigError for a sparsity outside [0, 1) or an unknown method/scope."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ConfigError("sparsity", f"{sparsity!r} is not a fraction in [0, 1)",
                          "give the share of weights to zero, e.g. 0.9 for 90 %")
    if method not in METHODS:
        raise ConfigError("method", f"{method!r} is not a pruning method", _suggest(method, list(METHODS)))
    if scope not in SCOPES:
        raise ConfigError("scope", f"{scope!r} is not a scope", _suggest(scope, list(SCOPES)))


def unit_scores(weight, method, rng, pruned_before=None):
    """One score per prunable unit of `weight` (a numpy array): low scores are pruned first.

    magnitude: |w| of every weight; random: a fixed uniform draw per weight (the same on
    every update, so masks stay nested); neuron: the L2 norm of each output column of a
    Linear weight `[in, out]`. `pruned_before` (bool per unit) ranks those units first.
    """
    if method == "neuron":
        scores = np.sqrt(np.square(weight.astype(np.float64)).sum(axis=0))
    elif method == "random":
        scores = rng.random(weight.size)
    else:
        scores = np.abs(weight.astype(np.float64)).ravel()
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


def compute_masks(weights, sparsity, method="magnitude", scope="layer", seed=0, previous=None):
    """Masks (1 keep, 0 prune) for `{name: weight array}`; returns `(masks, threshold)`.

    `masks[name]` is the weight mask; for `neuron` it is the per-output-column keep
    vector (shape [out]). `previous[name]` is the unit mask of an earlier update, if any;
    `threshold` is the global threshold score (`scope="global"`), else None.
    """
    check_args(sparsity, method, scope)
    previous = previous or {}
    scores = {}
    for index, (name, weight) in enumerate(weights.items()):
        rng = np.random.default_rng([seed, index])
        before = previous.get(name)
        scores[name] = unit_scores(weight, method, rng, None if before is None else before.ravel() == 0)
    masks, threshold = {}, None
    if scope == "global":
        flat = np.concatenate([s for s in scores.values()])
        pruned, threshold = smallest_k(flat, prune_count(sparsity, flat.size))
        offset = 0
        for name, s in scores.items():
            masks[name] = _keep(pruned[offset:offset + s.size], weights[name], method)
            offset += s.size
    else:
        for name, s in scores.items():
            pruned, _ = smallest_k(s, prune_count(sparsity, s.size))
            masks[name] = _keep(pruned, weights[name], method)
    return masks, threshold


def _keep(pruned, weight, method):
    keep = (~pruned).astype(np.float32)
    return keep if method == "neuron" else keep.reshape(weight.shape)
