"""Measure a model as it is: FLOPs (paddle.flops), parameters, size on disk, latency, accuracy."""

import contextlib
import io
import os
import re
import warnings

import numpy as np
import paddle

from ..core.errors import ModelError
from ..core.surgery import eval_mode


def weight_sparsity(model):
    """Share of exactly-zero entries in the model's conv/linear weights (every parameter of 2+ dims).

    Shown in every report row, so zeros a stage made can be seen surviving (or not) the
    stages after it; BN scales and biases are left out, as pruning does not target them.
    """
    zeros = total = 0
    for param in model.parameters():
        if len(param.shape) >= 2:
            values = param.numpy()
            zeros += int(values.size - np.count_nonzero(values))
            total += values.size
    return round(zeros / total, 6) if total else None


def count_flops(model, input_shape, custom_ops=None):
    """FLOPs as `paddle.flops` counts them (multiply-accumulates of leaf layers).

    Returns (flops, zero_types): `zero_types` lists the layer types paddle.flops had no
    counter for and counted as zero, so a report can say so instead of hiding it.
    """
    buffer = io.StringIO()
    before = {id(layer): (set(layer._forward_post_hooks), set(layer._buffers))
              for layer in model.sublayers(include_self=True)}
    try:
        with eval_mode(model), contextlib.redirect_stdout(buffer), warnings.catch_warnings():
            # paddle.flops calls int() on 1-element arrays, deprecated since numpy 1.25.
            warnings.filterwarnings("ignore", message="Conversion of an array with ndim > 0",
                                    category=DeprecationWarning)
            flops = paddle.flops(model, list(input_shape), custom_ops=custom_ops, print_detail=False)
    except Exception as err:
        raise ModelError(f"the model cannot run on input shape {list(input_shape)}: {type(err).__name__}: {err}",
                         "check input_shape ([1, C, H, W] of your data) and that the model's forward works") from None
    finally:
        _remove_flops_leftovers(model, before)
    zero = sorted(set(re.findall(r"Cannot find suitable count function for <class '([^']+)'>", buffer.getvalue())))
    return int(flops), [z.rsplit(".", 1)[-1] for z in zero]


def _remove_flops_leftovers(model, before):
    # paddle.flops registers `total_ops`/`total_params` buffers on every layer and leaves
    # them behind (they would end up in the user's state dict); when the forward fails it
    # also leaves its counting hooks, which would then run on every later forward.
    for layer in model.sublayers(include_self=True):
        hooks, buffers = before.get(id(layer), (set(), set()))
        for name in {"total_ops", "total_params", "input_shape", "output_shape"} - buffers:
            layer._buffers.pop(name, None)
            layer._non_persistable_buffer_names_set.discard(name)
        for key in set(layer._forward_post_hooks) - hooks:
            del layer._forward_post_hooks[key]


def count_params(model):
    """Number of elements of every parameter (paddle keeps BN running stats as parameters too)."""
    return int(sum(int(np.prod(p.shape)) for p in model.parameters()))


def saved_size(path):
    """Bytes on disk of a file or of every file in a folder."""
    path = str(path)
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def measure_latency(model, input_shape, warmup=10, runs=50):
    """Median wall time (ms) of one eager forward pass, eval mode, no grad (slimkit.report.timing)."""
    from .timing import eager_latency

    return eager_latency(model, input_shape, warmup, runs)


def latency_method(input_shape, warmup, runs):
    from .timing import eager_latency_method

    return eager_latency_method(input_shape, warmup, runs)
