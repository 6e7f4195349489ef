"""The op-handler registry: how channels pass each op of a traced program.

The dependency walk (`slimkit.pruning.dependency`) looks every op of the traced PIR
program up here by name and lets its handler say what happens to the channels that
reach it. slimkit's own handlers are registered exactly as a user's would be, so a user
can teach slimkit an op (or the op a custom layer's forward emits) without editing it:

    from slimkit.pruning import ops
    ops.register_op("sin", ops.PassThrough())            # pd_op.sin keeps channels in order
    ops.register_op("my_scale", ops.PerChannel())         # 1-D parameters indexed by channel
    ops.register_op("fancy_mix", ops.Block("mixes channels"))  # keep what reaches it whole

Names are the op's name without the `pd_op.` prefix (`"relu"`), or the full name for
other dialects (`"custom_op.my_relu"`, `"builtin.split"`). The handler kinds:

- `PassThrough()`: the first output carries the first input's channels, in order
  (activations, pooling, interpolation, casts, ...);
- `PerChannel()`: like PassThrough, and the op's 1-D parameters are indexed by channel, so
  they shrink with them (BN, instance norm, PReLU); a one-value parameter (a PReLU's
  shared slope) is left alone;
- `Couple()`: all tensor operands are combined channel by channel (add, multiply,
  maximum, where, ...), so their channels are pruned with the same indices;
- `Block(reason)`: the channels reaching the op cannot be removed; they stay whole and
  `reason` is reported;
- `Ignore()`: the op carries no channels (shape queries, constants).

A handler is any object with `visit(walk, op)`; the kinds above use only the walk's
public methods (`channels`, `set_channels`, `block`, `couple`, `per_channel_params`), which
a user's own handler may use too.
"""

from ..core.errors import ModelError

_HANDLERS = {}


def register_op(names, handler, replace=True):
    """Use `handler` for the ops named `names` (one name or several); returns the handler.

    A name already registered (slimkit's or an earlier user's) is replaced unless
    `replace=False`, which raises ModelError instead.
    """
    if not callable(getattr(handler, "visit", None)):
        raise ModelError(f"an op handler needs a visit(walk, op) method, got {type(handler).__name__}",
                         "use ops.PassThrough(), ops.PerChannel(), ops.Couple(), ops.Block(reason) or a subclass")
    for name in [names] if isinstance(names, str) else list(names):
        key = _key(name)
        if not replace and key in _HANDLERS:
            raise ModelError(f"op {name!r} already has a handler ({type(_HANDLERS[key]).__name__})",
                             "pass replace=True to override it")
        _HANDLERS[key] = handler
    return handler


def unregister_op(name):
    """Forget the handler of `name` (its channels then stay whole, as for any unknown op)."""
    _HANDLERS.pop(_key(name), None)


def handler_for(name):
    """The handler registered for op `name` (full or short name), or None."""
    return _HANDLERS.get(_key(name))


def registered_ops():
    """Sorted names of every op with a handler."""
    return sorted(_HANDLERS)


def _key(name):
    if not isinstance(name, str) or not name:
        raise ModelError(f"an op name must be a non-empty string, got {name!r}", "e.g. 'relu' or 'custom_op.my_op'")
    return name[len("pd_op."):] if name.startswith("pd_op.") else name


class OpHandler:
    """Base of the handler kinds; a subclass overrides `visit(walk, op)`.

    `any_axis = False` (the default) lets the walk keep whole, before `visit`, any channels
    that reach the op on an axis other than 1 (after a transpose to channels-last); a
    handler that reads `walk.channel_axis(value)` itself sets it True.
    """

    any_axis = False

    def visit(self, walk, op):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class Ignore(OpHandler):
    """The op neither reads nor makes channels that matter (shape queries, constants, fetches)."""

    def visit(self, walk, op):
        return None


class PassThrough(OpHandler):
    """The first output has the first input's channels, in the same order (on the same axis)."""

    any_axis = True

    def visit(self, walk, op):
        segs = walk.channels(op.operand_source(0))
        axis = walk.channel_axis(op.operand_source(0))
        if segs and _same_channel_count(op, axis):
            walk.set_channels(op.result(0), segs, axis)
            return
        if segs:
            return walk.unknown(op, f"`{op.name()}` changes the channel count (e.g. padding along channels)")
        others = [walk.channels(op.operand_source(i)) for i in range(1, op.num_operands())]
        for other in others:
            if other:
                walk.block(other, f"its channels reach `{op.name()}` as a secondary input")
        if any(others):
            walk.opaque(op)


def _same_channel_count(op, axis):
    src, dst = list(op.operand_source(0).shape), list(op.result(0).shape)
    return len(src) != len(dst) or len(src) <= axis or src[axis] == dst[axis] or min(src[axis], dst[axis]) < 0


class PerChannel(OpHandler):
    """PassThrough, and every 1-D parameter operand is indexed by channel (one-value parameters pass)."""

    def visit(self, walk, op):
        segs = walk.channels(op.operand_source(0))
        if not segs:
            return walk.unknown(op, f"`{op.name()}` on a tensor without traced channels")
        if not walk.per_channel_params(op, segs, range(1, op.num_operands())):
            return None
        walk.set_channels(op.result(0), segs)
        return None


class Couple(OpHandler):
    """Tensor operands are combined channel by channel: their channels are pruned with the same indices."""

    any_axis = True

    def visit(self, walk, op):
        return walk.combine(op)


class Block(OpHandler):
    """Channels reaching the op stay whole, with `reason`; its outputs are not followed."""

    def __init__(self, reason=""):
        self.reason = reason

    def visit(self, walk, op):
        return walk.unknown(op, self.reason or f"its channels reach `{op.name()}`, which is registered as blocking")

    def __repr__(self):
        return f"Block({self.reason!r})"


class WalkMethod(OpHandler):
    """One of the walk's structural rules (convs, matmuls, reshapes, concat, split, ...), by name."""

    def __init__(self, method, any_axis=False):
        self.method = method
        self.any_axis = any_axis

    def visit(self, walk, op):
        return getattr(walk, self.method)(op)

    def __repr__(self):
        return f"WalkMethod({self.method!r})"


# ---- slimkit's own handlers, registered like a user's ------------------------------------------

register_op(("shape", "shape64", "full", "full_int_array", "full_like", "builtin.combine", "fetch",
             "builtin.shadow_output", "builtin.set_parameter", "numel"), Ignore())
register_op((
    "relu", "relu_", "relu6", "relu6_", "leaky_relu", "leaky_relu_", "elu", "elu_", "gelu", "silu", "swish",
    "hardswish", "hardswish_", "hardsigmoid", "sigmoid", "sigmoid_", "tanh", "tanh_", "mish", "softplus", "selu",
    "celu", "dropout", "pool3d", "max_pool2d_with_index", "lp_pool2d", "cast", "cast_", "assign", "scale",
    "scale_", "clip", "clip_", "abs", "exp", "square", "sqrt", "pow", "thresholded_relu", "logsigmoid",
    "hardtanh", "brelu", "hardshrink", "softshrink", "tanh_shrink", "assign_out_", "contiguous", "erf", "sign",
    "softsign", "log", "neg", "reciprocal", "rsqrt", "floor", "ceil", "round", "stanh",
    # every interpolation Paddle 3.3 emits (F.interpolate / nn.Upsample, with or without a size tensor)
    "bilinear_interp", "nearest_interp", "bicubic_interp", "linear_interp", "trilinear_interp",
    "pad", "pad3d",
), PassThrough())
register_op(("batch_norm", "batch_norm_", "sync_batch_norm_", "instance_norm", "prelu", "affine_channel"),
            PerChannel())
register_op(("add", "add_", "subtract", "subtract_", "multiply", "multiply_", "divide", "divide_", "maximum",
             "minimum", "elementwise_pow", "where", "fmax", "fmin", "greater_than", "greater_equal", "less_than",
             "less_equal", "equal", "not_equal"), Couple())
register_op("pool2d", WalkMethod("pool"))
register_op(("conv2d", "depthwise_conv2d", "conv3d"), WalkMethod("conv"))
register_op(("conv2d_transpose", "depthwise_conv2d_transpose"), WalkMethod("conv_transpose"))
register_op("matmul", WalkMethod("matmul", any_axis=True))
register_op(("transpose", "transpose_"), WalkMethod("transpose", any_axis=True))
register_op("layer_norm", WalkMethod("layer_norm", any_axis=True))
register_op("group_norm", WalkMethod("group_norm"))
register_op(("reshape", "reshape_", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "flatten", "flatten_",
             "view_shape"), WalkMethod("reshape", any_axis=True))
register_op("concat", WalkMethod("concat"))
register_op(("split", "split_with_num"), WalkMethod("split"))
register_op("builtin.split", WalkMethod("unpack_split"))
register_op("slice", WalkMethod("slice"))
register_op(("mean", "sum", "max", "min", "amax", "amin", "logsumexp"), WalkMethod("reduce"))
