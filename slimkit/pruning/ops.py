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

A handler is any object with `visit(walk, op)`; the kinds above, and slimkit's structural
rules (slimkit.pruning.dependency.layer_rules, .shape_rules, .axis_rules, .attention_rules), use only the walk's public
methods (`slimkit.pruning.dependency.walk.ChannelWalk`: `channels`, `set_channels`, `block`,
`couple`, `per_channel_params`, `param`, `root`, `consume`, ...), which a user's own handler
may use too. `analyze(model, input_shape, handlers={name: handler})` uses handlers for one
analysis only, before the registry (nothing global changes).
"""

from ..core.errors import ModelError
from .dependency.segments import channel_dim, present

_HANDLERS = {}


def register_op(names, handler, replace=True):
    """Use `handler` for the ops named `names` (one name or several); returns the handler.

    A name already registered (slimkit's or an earlier user's) is replaced unless
    `replace=False`, which raises ModelError instead.
    """
    check_handler(handler)
    for name in [names] if isinstance(names, str) else list(names):
        key = op_key(name)
        if not replace and key in _HANDLERS:
            raise ModelError(f"op {name!r} already has a handler ({type(_HANDLERS[key]).__name__})",
                             "pass replace=True to override it")
        _HANDLERS[key] = handler
    return handler


def check_handler(handler):
    """`handler`, if it has a visit(walk, op) method (else ModelError)."""
    if not callable(getattr(handler, "visit", None)):
        raise ModelError(f"an op handler needs a visit(walk, op) method, got {type(handler).__name__}",
                         "use ops.PassThrough(), ops.PerChannel(), ops.Couple(), ops.Block(reason) or a subclass")
    return handler


def unregister_op(name):
    """Forget the handler of `name` (its channels then stay whole, as for any unknown op)."""
    _HANDLERS.pop(op_key(name), None)


def handler_for(name):
    """The handler registered for op `name` (full or short name), or None."""
    return _HANDLERS.get(op_key(name))


def registered_ops():
    """Sorted names of every op with a handler."""
    return sorted(_HANDLERS)


def op_key(name):
    """The registry key of an op name: without the `pd_op.` prefix."""
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

    any_axis = True

    def visit(self, walk, op):
        return None


class PassThrough(OpHandler):
    """The first output has the first input's channels, in the same order (on the same axis, or the same view)."""

    any_axis = True
    accepts_views = True

    def visit(self, walk, op):
        view = walk.view(op.operand_source(0))
        if view is not None:
            if list(op.operand_source(0).shape) == list(op.result(0).shape):
                return walk.note(op.result(0), view)
            walk.block(view.segs, view.refused(op.name()))
            return walk.opaque(op)
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
    """Tensor operands are combined channel by channel: their channels are pruned with the same indices.

    A parameter operand (a bias, a layer scale, a [1, N, C] position embedding, a relative position
    bias [1, heads, N, N]) is sliced along its axis lined up with the channels.
    """

    any_axis = True
    accepts_views = True

    def visit(self, walk, op):
        operands = [op.operand_source(i) for i in range(op.num_operands()) if present(op.operand_source(i))]
        if any(walk.view(v) is not None for v in operands):
            return _combine_views(walk, op, operands)
        out_rank = len(list(op.result(0).shape))
        with_channels, params, others = [], [], []
        for v in operands:
            if walk.channels(v):
                with_channels.append(walk.channels(v))
            elif walk.param_axes(v) is not None:
                params.append(v)
            else:
                others.append(v)
        if not with_channels:
            return None
        # The channel axis counted from the right, which broadcasting lines up.
        axes = {walk.channel_axis(v) - len(list(v.shape)) for v in operands if walk.channels(v)}
        if len(axes) > 1:
            return walk.unknown(op, f"`{op.name()}` combines tensors with channels on different axes")
        return self._combine(walk, op, with_channels, params, others, out_rank + axes.pop())

    @staticmethod
    def _combine(walk, op, with_channels, params, others, axis):
        segs = with_channels[0]
        width = sum(s.width for s in segs)
        out_rank = len(list(op.result(0).shape))
        for other in with_channels[1:]:
            walk.couple(segs, other, f"`{op.name()}` combines tensors whose channels do not line up")
        for v in others:
            if channel_dim(v, out_rank, axis) not in (None, 1):
                # Something slimkit did not trace is combined channel by channel with these channels.
                walk.block(segs, f"`{op.name()}` combines them with a tensor slimkit cannot follow")
        for v in params:
            size = channel_dim(v, out_rank, axis)
            if size in (None, 1):
                continue
            derived = walk.param_axes(v)
            owner = walk.owner_of(derived)
            at = derived.param_axis(axis - (out_rank - len(list(v.shape))))
            if owner is None or at is None or size != width or derived.shape[at] != width:
                return walk.unknown(op, f"`{op.name()}` with a parameter that is not one value per channel")
            walk.add_slices(owner[0], owner[1], at, segs)
        walk.set_channels(op.result(0), segs, axis)
        return None


def _combine_views(walk, op, operands):
    """An elementwise op on a view (channels spread over several axes): the other operands must broadcast
    over the axes that hold channels (a scale, a mask); a second view of the same layout is coupled."""
    out_rank = len(list(op.result(0).shape))
    first = next(walk.view(v) for v in operands if walk.view(v) is not None)
    holders = [axis - len(first.axes) for axis in first.holders()]
    for v in operands:
        view = walk.view(v)
        if view is not None and view is not first:
            if view.axes != first.axes or view.sizes != first.sizes:
                walk.block(first.segs + view.segs, f"`{op.name()}` combines channels regrouped in different ways")
                return walk.opaque(op)
            walk.couple(first.segs, view.segs, f"`{op.name()}` combines regrouped channels that do not line up")
        elif view is None and (walk.channels(v) or any(channel_dim(v, out_rank, out_rank + h) not in (None, 1)
                                                       for h in holders)):
            walk.block(first.segs + (walk.channels(v) or []), f"`{op.name()}` combines regrouped channels "
                                                             "with a tensor that does not broadcast over them")
            return walk.opaque(op)
    walk.note(op.result(0), first)
    return None


class Block(OpHandler):
    """Channels reaching the op stay whole, with `reason`; its outputs are not followed."""

    def __init__(self, reason=""):
        self.reason = reason

    def visit(self, walk, op):
        return walk.unknown(op, self.reason or f"its channels reach `{op.name()}`, which is registered as blocking")

    def __repr__(self):
        return f"Block({self.reason!r})"


# ---- slimkit's own handlers, registered like a user's (the structural rules register in their modules) ----

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
