"""Masks kept beside the weights they prune, re-applied after every step, and stripped at the end.

Like `torch.nn.utils.prune`, a pruned layer holds a non-trainable buffer `weight_mask`
(and `bias_mask` when neuron pruning also zeroes bias entries) of the weight's shape and
dtype: 1 keeps a weight, 0 prunes it. The buffers are part of the state dict, so a
checkpoint of a masked model restores its masks. `apply_masks(model)` multiplies every
masked tensor by its mask; calling it after each optimizer step keeps pruned weights at
exactly zero whatever momentum or weight decay did in that step. `strip_masks(model)`
makes the zeros permanent and removes the buffers: a plain, dense-format model again.
"""

import numpy as np
import paddle

from .criteria import check_args, compute_masks, prunable_entry, sparse_prunable_layers

MASKED = ("weight", "bias")  # parameters that may carry a `<name>_mask` buffer


def mask_name(param):
    return f"{param}_mask"


def get_mask(layer, param="weight"):
    """The mask of `layer.<param>` as a numpy array, or None."""
    mask = layer._buffers.get(mask_name(param))
    return None if mask is None else mask.numpy()


def set_mask(layer, param, mask):
    """Store `mask` (numpy, the parameter's shape) as the layer's `<param>_mask` buffer and apply it."""
    weight = getattr(layer, param)
    mask = paddle.to_tensor(np.asarray(mask, dtype=np.float32).reshape(weight.shape), dtype=weight.dtype)
    name = mask_name(param)
    old = layer._buffers.get(name)
    if old is not None and list(old.shape) == list(mask.shape):
        old.set_value(mask)
    else:
        mask.stop_gradient = True
        layer.register_buffer(name, mask, persistable=True)
    _apply(weight, layer._buffers[name])


def masked_layers(model):
    """`{name: layer}` of every sublayer that holds a mask buffer."""
    return {name: layer for name, layer in model.named_sublayers(include_self=True)
            if any(layer._buffers.get(mask_name(p)) is not None for p in MASKED)}


@paddle.no_grad()
def apply_masks(model):
    """Zero every masked weight of `model` again (after an optimizer step)."""
    for layer in masked_layers(model).values():
        for param in MASKED:
            mask = layer._buffers.get(mask_name(param))
            if mask is not None:
                _apply(getattr(layer, param), mask)
    return model


@paddle.no_grad()
def _apply(param, mask):
    param.set_value(param * mask)


def remove_masks(model, names=None):
    """Delete mask buffers (of the layers in `names`, default all) without touching weights."""
    for name, layer in masked_layers(model).items():
        if names is not None and name not in names:
            continue
        for param in MASKED:
            layer._buffers.pop(mask_name(param), None)
            layer._non_persistable_buffer_names_set.discard(mask_name(param))
    return model


def strip_masks(model):
    """Make the pruning permanent: apply every mask, then remove the mask buffers (in place)."""
    apply_masks(model)
    return remove_masks(model)


def sparsify(model, sparsity, method="magnitude", scope="layer", skip=(), seed=0, layers=None):
    """Prune `model` in place to `sparsity` with masks; returns `sparsity_stats` plus `threshold`.

    method: a sparsity criterion (`slimkit.sparsity.SPARSITY_CRITERIA`): `magnitude` (smallest
    |w|), `random` (seeded), `neuron` (whole outputs of Linear weights by L2 norm, with their
    bias entries), a registered name of your own or a SparsityCriterion. scope: `layer` (every
    layer reaches `sparsity`) or `global` (one threshold over all layers). `skip` names
    layers (or parent layers) to leave dense; `layers` (from `sparse_prunable_layers`) overrides it.
    Existing masks are kept: their zeros are counted first and never revived.
    """
    criterion = check_args(sparsity, method, scope)
    layers = layers if layers is not None else sparse_prunable_layers(model, skip, criterion)
    weights = {name: layer.weight.numpy() for name, layer in layers.items()}
    out_axes = {name: prunable_entry(layer).out_axis if prunable_entry(layer) else 0 for name, layer in layers.items()}
    previous = {}
    for name, layer in layers.items():
        mask = get_mask(layer, "weight")
        if mask is not None:
            previous[name] = _unit_mask(mask, out_axes[name]) if criterion.neurons else mask
    masks, threshold = compute_masks(weights, sparsity, criterion, scope, seed, previous, out_axes)
    # Everything is computed before the first mask is set: an error above leaves the model as it was.
    for name, layer in layers.items():
        keep = masks[name]
        weight_keep = _spread(keep, weights[name].shape, out_axes[name]) if criterion.neurons else keep
        old = get_mask(layer, "weight")
        if old is not None and old.shape == weight_keep.shape:
            weight_keep = weight_keep * old  # masks only grow, even across methods
        set_mask(layer, "weight", weight_keep)
        if criterion.neurons and getattr(layer, "bias", None) is not None:
            old = get_mask(layer, "bias")
            set_mask(layer, "bias", keep if old is None else keep * old)
    stats = sparsity_stats(model, layers)
    stats["threshold"] = threshold
    return stats


def _unit_mask(mask, out_axis):
    """Per output unit: 1 where any of its weights is kept."""
    units = np.moveaxis(mask, out_axis, 0)
    return units.reshape(units.shape[0], -1).max(axis=1)


def _spread(keep, shape, out_axis):
    """A per-output keep vector as a mask of the weight's `shape`."""
    view = [1] * len(shape)
    view[out_axis] = -1
    return np.broadcast_to(np.asarray(keep).reshape(view), shape)


def sparsity_stats(model, layers=None):
    """Zero counts of pruned weights: `{"layers": {name: fraction}, "zeros", "weights", "sparsity"}`.

    `layers` defaults to the masked layers; `model_sparsity` is the zero share of every
    parameter of the model (BN statistics and biases included).
    """
    layers = masked_layers(model) if layers is None else layers
    per_layer, zeros, total = {}, 0, 0
    for name, layer in layers.items():
        w = layer.weight.numpy()
        z = int(w.size - np.count_nonzero(w))
        per_layer[name] = round(z / w.size, 6)
        zeros += z
        total += w.size
    all_zero = all_total = 0
    for p in model.parameters():
        v = p.numpy()
        all_zero += int(v.size - np.count_nonzero(v))
        all_total += v.size
    return {"layers": per_layer, "zeros": zeros, "weights": total,
            "sparsity": round(zeros / total, 6) if total else 0.0,
            "model_sparsity": round(all_zero / all_total, 6) if all_total else 0.0}


class MaskHoldingEngine:
    """An engine whose training re-applies every mask of the model after each optimizer step.

    Masks left by a `sparse_pruning` stage with `strip: false` are held through the later
    training stages (finetune, distill, ...), as TF-MOT keeps its pruning wrappers until
    `strip_pruning`; without this, momentum and weight decay fill the zeros in again.
    Everything but `train` is the wrapped engine's.
    """

    def __init__(self, engine):
        self.engine = engine

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def train(self, model, epochs=None, lr=None, loss_fn=None, on_step=None, desc="train"):
        def step(index, trained):
            if on_step is not None:
                on_step(index, trained)
            apply_masks(trained)

        return self.engine.train(model, epochs=epochs, lr=lr, loss_fn=loss_fn, on_step=step, desc=desc)


def holding_masks(engine, model):
    """`engine`, or a MaskHoldingEngine around it when `model` carries masks."""
    return MaskHoldingEngine(engine) if masked_layers(model) else engine
