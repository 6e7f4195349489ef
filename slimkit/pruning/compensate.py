"""Removed channels replaced by their mean: the statistics of what layers read, and the bias that makes it up.

Many channels of a trained network barely vary once their batch norm and activation have run:
they carry mostly a constant. Removing such a channel shifts every layer that reads it by
that constant times its weights, which can break a model that did not need the channel's
information at all. Measured over a few batches (`input_statistics`), the mean of each
channel where a conv or linear layer reads it goes into that layer's bias when the channel
is removed (`fold_means`); what is lost is then only the channel's variation, which the
`variance` criterion scores (`criteria.InputVariance`).

Exact for a channel that is constant, except where a padded kxk conv reads the padding: its
border outputs get the full kernel's share. Readers measured: Conv2D (NCHW, groups 1) and
Linear; a reader without a bias, or of another kind, is left as removal leaves it.
"""

import numpy as np
import paddle

from ..core.errors import ModelError
from ..core.surgery import eval_mode

__all__ = ["input_statistics", "reader_layers", "measured_inputs", "fold_means", "kept_mask", "STATISTICS_BATCHES"]

STATISTICS_BATCHES = 8  # training batches the means and variances are measured on (a pipeline's train split)


def _readable(layer):
    """True when the channel axis of `layer`'s input is known: a Conv2D (NCHW, groups 1) or a Linear."""
    if isinstance(layer, paddle.nn.Linear):
        return True
    return isinstance(layer, paddle.nn.Conv2D) and layer._groups == 1 and layer._data_format == "NCHW"


def reader_layers(model, groups):
    """Names of the layers reading `groups`' channels ("in" slices of their weights) whose inputs can be measured."""
    layers = dict(model.named_sublayers(include_self=True))
    return sorted({s.layer for g in groups for s in g.slices
                   if s.role == "in" and s.tensor == "weight" and _readable(layers[s.layer])})


def measured_inputs(model, groups, engine=None, batches=None):
    """`input_statistics` of the readers of `groups`, over `batches` or the engine's first training batches."""
    if batches is None:
        if engine is None:
            raise ModelError("the channels' means and variances need training batches",
                             "pass engine= (slimkit.Engine) or batches=, or use a weight-based criterion (l1, l2, "
                             "fpgm) without compensate")
        # In order: a shuffled loader drops the last partial batch, which may be a small split's only one.
        batches = engine.batches("train", None, max_batches=STATISTICS_BATCHES)
    return input_statistics(model, reader_layers(model, groups), batches)


@paddle.no_grad()
def input_statistics(model, layer_names, batches):
    """{layer: (mean, variance)} of each layer's input per input feature, over `batches`.

    The feature axis is the one the layer's weight reads: axis 1 of a conv's NCHW input, the
    last axis of a linear layer's. A batch is an input tensor or an (inputs, labels) pair.
    Runs in eval mode (batch norms keep their statistics); a layer called twice counts twice.
    """
    layers = dict(model.named_sublayers(include_self=True))
    sums = {name: [0.0, 0.0, 0] for name in layer_names}  # sum, sum of squares, count, per feature

    def hook_for(name):
        def hook(layer, inputs):
            x = inputs[0].astype("float64").numpy()
            x = np.moveaxis(x, 1, -1) if isinstance(layer, paddle.nn.Conv2D) else x
            flat = x.reshape(-1, x.shape[-1])
            total = sums[name]
            total[0] = total[0] + flat.sum(axis=0)
            total[1] = total[1] + (flat * flat).sum(axis=0)
            total[2] += flat.shape[0]
        return hook

    handles = [layers[n].register_forward_pre_hook(hook_for(n)) for n in layer_names]
    try:
        with eval_mode(model):
            seen = 0
            for batch in batches:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
                seen += 1
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ModelError("no batches to measure the channels' means on", "check the training split")
    out = {}
    for name, (total, squares, count) in sums.items():
        if count:  # a layer the forward did not reach on these batches is not compensated
            mean = total / count
            out[name] = (mean, np.maximum(squares / count - mean * mean, 0.0))
    return out


def fold_means(model, groups, masks, statistics):
    """Add to the bias of every measured reader the removed channels' means times its weights; returns
    the names of the layers changed. `masks`: {group name: bool array, True = kept}; call before removal."""
    layers = dict(model.named_sublayers(include_self=True))
    shifts = {}
    for group in groups:
        mask = masks.get(group.name)
        if mask is None or mask.all():
            continue
        for s in group.slices:
            layer = layers[s.layer]
            if s.role != "in" or s.tensor != "weight" or s.layer not in statistics or layer.bias is None:
                continue
            positions = s.dropped_positions(mask)
            weight = layer.weight.numpy().astype(np.float64)
            mean = statistics[s.layer][0][positions]
            if isinstance(layer, paddle.nn.Linear):  # weight [in, out]
                shift = mean @ weight[positions]
            else:  # conv weight [out, in, kh, kw]: every tap of the kernel reads the mean
                shift = weight[:, positions].sum(axis=(2, 3)) @ mean
            shifts[s.layer] = shifts.get(s.layer, 0.0) + shift
    for name, shift in shifts.items():
        bias = layers[name].bias
        bias.set_value((bias.numpy().astype(np.float64) + shift).astype(bias.numpy().dtype))
    return sorted(shifts)


def kept_mask(group, indices):
    """The bool mask over `group`'s channels of the kept `indices`."""
    mask = np.zeros(group.channels, dtype=bool)
    mask[np.asarray(indices, dtype=np.int64)] = True
    return mask
