"""How channels pass ops that move, regroup or join them: transpose, reshape, channel shuffles, concat, pooling.

Each rule is an op handler (slimkit.pruning.ops) that uses only the walk's public methods;
importing this module registers them (cuts along one axis are in axis_rules).

- `concat` along channels gives each input its own offset slice of the consumer's input
  channels (each producer stays independently prunable); along another axis it couples its
  inputs, and a parameter among them (a class token) is sliced with them;
- flatten/reshape to [N, features] maps each channel to its H*W consecutive features;
- a transpose moves the channel axis (NCHW <-> NHWC, [N, C, L] <-> [N, L, C] tokens);
- any other reshape is followed through views (views.FactorView): the channels split into
  sub-factors over several axes (heads, windows, MobileViT's patches) and merged back; a
  channel shuffle (reshape to [N, g, C/g, ...], transpose(0, 2, 1, ...), reshape back) is the
  case of two swapped sub-factors, a known permutation: the channels after it are followed,
  and its g sub-blocks keep the same positions (sub-blocks from different layers are pruned
  with the same indices).
"""

from ..ops import OpHandler, PassThrough, register_op
from . import views
from .segments import compress, constant, merge_adjacent, positions, reshape_segs, take


def unknown_view(walk, op, segs, reason):
    """Block the channels of a view `op` reads (they are not in `channels`) and what else reaches it."""
    walk.block(segs, reason)
    walk.unknown(op, reason)


def note_fixed_shape(walk, op, segs, channel_axes=(1,)):
    # A size written into the forward ([-1, 2048]) looks the same in the trace as one
    # computed from x.shape: `probe_fixed_shapes` tells them apart by trying.
    fixed = constant(op.operand_source(1)) if op.num_operands() > 1 else None
    if isinstance(fixed, list) and any(0 <= a < len(fixed) and fixed[a] > 0 for a in channel_axes):
        walk.fixed_shape(f"`{op.name()}` to the fixed shape {[int(d) for d in fixed]}", segs)


def follow_view(walk, op, view, segs, reason, result=0):
    """Give `op`'s result the channels of `view`: plain again, a shuffle's permutation, or still a view.

    `view` None (the op cuts across the channels' factors) blocks `segs` with `reason`.
    """
    if view is None:
        return unknown_view(walk, op, segs, reason)
    back = views.plain(view)
    if back is not None:
        return walk.set_channels(op.result(result), *back)
    shuffle = views.swapped(view)
    if shuffle is not None:
        return _shuffle(walk, op, view.segs, *shuffle)
    walk.note(op.result(result), view)
    return None


class Transpose(OpHandler):
    """A permutation of axes moves the channel axis, or the channel factors of a view."""

    any_axis = True
    accepts_views = True

    def visit(self, walk, op):
        x = op.operand_source(0)
        perm = [int(p) % len(list(x.shape)) for p in op.attrs()["perm"]]
        view = walk.view(x)
        if view is not None:
            return follow_view(walk, op, views.transpose(view, perm), view.segs, "")
        segs = walk.channels(x)
        if segs:
            walk.set_channels(op.result(0), segs, perm.index(walk.channel_axis(x)))


class Reshape(OpHandler):
    """reshape / flatten / squeeze / unsqueeze: spatial regrouping, flatten to features, or channel factors."""

    any_axis = True
    accepts_views = True

    def visit(self, walk, op):
        x = op.operand_source(0)
        src, dst = list(x.shape), list(op.result(0).shape)
        view = walk.view(x)
        if view is None:
            segs = walk.channels(x)
            if not segs or self._simple(walk, op, segs, src, dst):
                return None
            view = views.from_channels(segs, walk.channel_axis(x), src)
            if view is None:
                return walk.unknown(op, f"reshaped from {src} to {dst} with channels on axis "
                                        f"{walk.channel_axis(x)}: the channel order after it is not followed")
        out = views.reshape(view, dst)
        if out is not None:
            out.label = out.label or views.label_of(out, dst)
            note_fixed_shape(walk, op, view.segs, out.holders())
        return follow_view(walk, op, out, view.segs,
                           f"reshaped from {src} to {dst}: the channel order after it is not followed")

    @staticmethod
    def _simple(walk, op, segs, src, dst):
        """The reshapes that keep the channels on one axis without factoring them: True when handled."""
        axis = walk.channel_axis(op.operand_source(0))
        if axis == 1:
            out = reshape_segs(segs, src, dst)
            if out is not None:
                note_fixed_shape(walk, op, segs)
                walk.set_channels(op.result(0), out)
            return out is not None
        # Channels last ([N, L, C] tokens <-> [N, H, W, C]), with sizes the trace may leave symbolic.
        if axis == len(src) - 1 and src[-1] == dst[-1] > 0 and src[0] == dst[0] and len(dst) > 2:
            walk.set_channels(op.result(0), segs, len(dst) - 1)
            return True
        return False


def _shuffle(walk, op, segs, a, b):
    """The reshape back of [N, a, b, ...] -> transpose(0, 2, 1, ...) -> [N, a*b, ...] (ShuffleNet).

    Output channel j*a + i is input channel i*b + j. Removing channels keeps that order only
    if each of the a sub-blocks (b consecutive channels) keeps the same positions and as many:
    the sub-blocks' producers are pruned with the same indices (one layer per sub-block), or
    one layer spanning all of them keeps the same positions in each (`Group.aligned`).
    """
    sub = [take(segs, i * b, b) for i in range(a)]
    if any(part is None for part in sub):
        return unknown_view(walk, op, segs, "a channel shuffle that cuts through flattened features of a channel")
    if not _align(walk, sub, a):
        return unknown_view(walk, op, segs, f"a channel shuffle of {a} sub-blocks that cannot keep the same "
                                            "positions (they mix parts of several layers' outputs): removing "
                                            "channels would reorder the rest")
    note_fixed_shape(walk, op, segs)
    columns = [positions(part) for part in sub]
    walk.set_channels(op.result(0), compress([columns[i][j] for j in range(b) for i in range(a)]))


def _align(walk, sub, a):
    """Make the `a` sub-blocks `sub` keep the same positions; False when that cannot be expressed."""
    first = sub[0]
    nodes = {s.node for part in sub for s in part}
    if len(nodes) == 1 and all(len(part) == 1 for part in sub):
        node, (s0, *_) = nodes.pop(), first
        runs = [(p[0].start, p[0].count, p[0].repeat) for p in sub]
        if s0.start == 0 and walk.node_channels(node) == a * s0.count and runs == [
                (i * s0.count, s0.count, s0.repeat) for i in range(a)]:
            walk.constrain(node, a, aligned=True)
            return True
        return False
    if not all(walk.covers_whole(first, part) for part in sub[1:]):
        return False
    for part in sub[1:]:
        walk.couple(first, part, "")
    sub[1:] = [first] * (a - 1)  # the same channels now: the output lists them once per sub-block
    return True


class Concat(OpHandler):
    """concat along the channels lists its inputs' channels in order; along another axis it couples them.

    Along another axis (class and distillation tokens concatenated along N) a parameter among the
    inputs (`cls_token.expand([B, -1, -1])`) is sliced with the channels it is concatenated to.
    """

    any_axis = True

    def visit(self, walk, op):
        combine = op.operand_source(0).get_defining_op()
        axis = constant(op.operand_source(1))
        inputs = [combine.operand_source(i) for i in range(combine.num_operands())] if combine else []
        if not inputs or axis is None:
            return walk.unknown(op, "`concat` whose inputs or axis are not known")
        axis = int(axis) % len(list(op.result(0).shape))
        segs_in = [walk.channels(v) for v in inputs]
        channel_axes = {walk.channel_axis(v) for v, segs in zip(inputs, segs_in) if segs}
        if not channel_axes:
            return None
        if len(channel_axes) > 1:
            return walk.unknown(op, "`concat` of tensors with channels on different axes")
        channel_axis = channel_axes.pop()
        if axis == channel_axis:
            segs_in = [segs or _constant_channels(walk, v, axis) for v, segs in zip(inputs, segs_in)]
        if axis == channel_axis and all(segs_in):
            return walk.set_channels(op.result(0), merge_adjacent([s for segs in segs_in for s in segs]), channel_axis)
        if axis == channel_axis:
            for segs in segs_in:
                walk.block(segs, "concatenated with a tensor slimkit cannot follow")
            return walk.untraced(op.result(0), "concatenation with a tensor slimkit cannot follow")
        first = next(segs for segs in segs_in if segs)
        for v, segs in zip(inputs, segs_in):
            if segs:
                walk.couple(first, segs, "`concat` along a non-channel axis of tensors with other channels")
            elif not _slice_parameter(walk, v, first, channel_axis):
                walk.block(first, "concatenated along another axis with a tensor slimkit cannot follow")
        return walk.set_channels(op.result(0), first, channel_axis)


def _constant_channels(walk, value, axis):
    """A constant concatenated along the channels (ENet's zero padding up to the other branch's width) brings
    channels of its own, which may go if its size follows the others (probed: it may be written in the code)."""
    op = value.get_defining_op()
    shape = list(value.shape)
    if op is None or op.name() not in ("pd_op.full", "pd_op.full_like", "pd_op.full_with_tensor") or \
            axis >= len(shape) or shape[axis] <= 0:
        return None
    segs = walk.new_channels(value, axis)
    walk.fixed_shape(f"a constant of shape {shape} concatenated along the channels", segs)
    return segs


def _slice_parameter(walk, value, segs, channel_axis):
    """Slice the parameter `value` is made of along the axis lined up with the channels; False if it is none."""
    derived = walk.param_axes(value)
    owner = walk.owner_of(derived) if derived is not None else None
    axis = derived.param_axis(channel_axis) if derived is not None else None
    width = sum(s.width for s in segs)
    if owner is None or axis is None or derived.shape[axis] != width:
        return False
    walk.add_slices(owner[0], owner[1], axis, segs)
    return True


class Pool(PassThrough):
    """pool2d channels first passes channels through; channels-last pooling is not followed."""

    any_axis = False

    def visit(self, walk, op):
        if op.attrs().get("data_format", "NCHW") != "NCHW" and walk.channels(op.operand_source(0)):
            return walk.unknown(op, "channels-last pooling is not followed")
        return super().visit(walk, op)


register_op("pool2d", Pool())
register_op(("transpose", "transpose_"), Transpose())
register_op(("reshape", "reshape_", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "flatten", "flatten_",
             "view_shape"), Reshape())
register_op("concat", Concat())
