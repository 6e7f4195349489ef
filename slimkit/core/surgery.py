"""Replace a layer's tensors with ones of another shape, and snapshot/restore whole models.

Pruning removes channels by giving layers smaller tensors and updating the attributes
their forward reads (`_in_channels`, `_groups`, ...). The same two operations restore a
model after a failed change and rebuild a pruned model from a checkpoint.
"""

import contextlib
import hashlib
import re

import numpy as np
import paddle

def replace_tensor(layer, name, value):
    """Set parameter or buffer `name` of `layer` to `value` (any shape), keeping its flags."""
    value = value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)
    if name in layer._parameters and layer._parameters[name] is not None:
        old = layer._parameters[name]
        if list(old.shape) == list(value.shape):
            old.set_value(value.astype(_np_dtype(old)))
            return
        # An Assign initializer runs as a program op and is slow for large tensors;
        # filling a zero-initialised parameter is a plain copy.
        new = paddle.create_parameter(list(value.shape), dtype=old.dtype,
                                      default_initializer=paddle.nn.initializer.Constant(0.0))
        new.set_value(value.astype(_np_dtype(old)))
        new.stop_gradient = old.stop_gradient
        new.trainable = old.trainable
        new.need_clip = getattr(old, "need_clip", True)
        new.optimize_attr = getattr(old, "optimize_attr", {"learning_rate": 1.0})
        new.regularizer = getattr(old, "regularizer", None)
        layer._parameters[name] = new
    elif name in layer._buffers and layer._buffers[name] is not None:
        old = layer._buffers[name]
        layer._buffers[name] = paddle.to_tensor(value.astype(_np_dtype(old)))
        layer._buffers[name].persistable = old.persistable
    else:
        raise KeyError(f"{type(layer).__name__} has no parameter or buffer {name!r}")


def model_digest(model):
    """A hash of every tensor of the model (names and values): equal digests, identical models."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    return h.hexdigest()


def parameter_layers(model):
    """`{parameter name: name of the sublayer holding it}`, by every name a user may know a parameter by.

    The state-dict key (`features.0.weight`) and Paddle's own name (`conv2d_22.w_0`, which
    PaddleSlim's tutorials use), also without the `_deepcopy_N` a copy of the model adds
    (slimkit works on copies; the user knows the original's names).
    """
    out = {}
    for prefix, layer in model.named_sublayers(include_self=True):
        for key, param in layer._parameters.items():
            if param is None:
                continue
            for name in (f"{prefix}.{key}" if prefix else key, param.name, _COPY_SUFFIX.sub("", param.name)):
                out.setdefault(name, prefix)
    return out


_COPY_SUFFIX = re.compile(r"(_deepcopy_\d+)+$")


def _np_dtype(tensor):
    return {paddle.float32: np.float32, paddle.float64: np.float64, paddle.float16: np.float16,
            paddle.int64: np.int64, paddle.int32: np.int32, paddle.bool: np.bool_}.get(tensor.dtype, np.float32)


def shape_attrs(layer):
    """The plain attributes a layer's forward may read as sizes: every int and list of ints it holds.

    Channel and group counts (`_in_channels`, `_groups`), feature counts, head counts: pruning
    changes them with the tensors, so a snapshot, a restore and a checkpoint carry them all.
    """
    out = {}
    for key, value in layer.__dict__.items():
        if _is_int(value):
            out[key] = value
        elif isinstance(value, (list, tuple)) and value and all(_is_int(v) for v in value):
            out[key] = list(value)
    return out


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def capture(model):
    """Snapshot of every tensor and shape attribute of `model` (numpy copies)."""
    tensors, attrs = {}, {}
    for prefix, layer in model.named_sublayers(include_self=True):
        for name, t in list(layer._parameters.items()) + list(layer._buffers.items()):
            if t is not None:
                tensors[(prefix, name)] = t.numpy().copy()
        attrs[prefix] = shape_attrs(layer)
    return {"tensors": tensors, "attrs": attrs}


def restore(model, snapshot):
    """Put `model` back exactly as `capture` saw it (shapes included)."""
    layers = dict(model.named_sublayers(include_self=True))
    for (prefix, name), value in snapshot["tensors"].items():
        replace_tensor(layers[prefix], name, value)
    for prefix, attrs in snapshot["attrs"].items():
        for key, value in attrs.items():
            # A list comes back as the type the layer holds (JSON turns tuples into lists).
            current = getattr(layers[prefix], key, None)
            setattr(layers[prefix], key, tuple(value) if isinstance(current, tuple) else value)
    return model


def state_shapes_differ(model, snapshot):
    """Names of tensors whose shape in `model` differs from `snapshot`."""
    layers = dict(model.named_sublayers(include_self=True))
    out = []
    for (prefix, name), value in snapshot["tensors"].items():
        layer = layers.get(prefix)
        t = None if layer is None else (layer._parameters.get(name) if name in layer._parameters
                                        else layer._buffers.get(name))
        if t is None or list(t.shape) != list(value.shape):
            out.append(f"{prefix}.{name}" if prefix else name)
    return out


@contextlib.contextmanager
def eval_mode(model):
    """Run the body with `model` in eval mode; every sublayer's own train/eval flag comes back after.

    Restoring per layer (not `model.train()`) keeps a deliberately frozen BatchNorm or
    a teacher in eval mode inside a training student as it was.
    """
    with _flags_kept(model):
        model.eval()
        yield model


@contextlib.contextmanager
def train_mode(model):
    """Run the body with `model` in training mode, then put back everything a training forward changes.

    A training forward moves BatchNorm's running statistics (tensors no optimizer updates)
    and draws dropout masks from paddle's random state: both come back, with every
    sublayer's train/eval flag, so a training-mode probe (the channel trace, an output
    check) leaves the model and the run's random numbers as they were.
    """
    fixed = [(t, t.numpy().copy()) for layer in model.sublayers(include_self=True)
             for t in list(layer._parameters.values()) + list(layer._buffers.values())
             if t is not None and t.stop_gradient]
    rng = paddle.get_rng_state()
    try:
        with _flags_kept(model):
            model.train()
            yield model
    finally:
        for tensor, value in fixed:
            tensor.set_value(value)
        paddle.set_rng_state(rng)


@contextlib.contextmanager
def _flags_kept(model):
    training = {name: layer.training for name, layer in model.named_sublayers(include_self=True)}
    try:
        yield
    finally:
        for name, layer in model.named_sublayers(include_self=True):
            layer.training = training.get(name, layer.training)
