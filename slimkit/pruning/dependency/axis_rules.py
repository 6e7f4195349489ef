"""How channels pass ops that cut, pick or reduce along one axis, wherever the channels are.

Each rule is an op handler (slimkit.pruning.ops) that uses only the walk's public methods;
importing this module registers them. The channels may be on axis 1, channels-last (tokens
[B, N, C], [B, H, W, C]) or spread over several axes (a view: qkv [3, B, heads, N, head_dim]).

- `split` / `chunk` / `unbind` along another axis give every part the same channels; along the
  channels, equal parts lose as many channels from each part, unequal sections are sizes of
  the forward (kept whole, parts still followed); along one channel factor of a view (q, k, v
  out of qkv) each part is the channels at those positions;
- `slice` (`x[:, 0]`, `pos_embed[:, 1:]`) and `strided_slice` (`x[:, 0::2, 0::2, :]`) along
  other axes pass the channels; along the channels at fixed positions they stay whole;
- reductions over other axes (the mean over tokens) pass them; a reduction over one channel
  factor of a view ([B, C/k, k, H, W] max over k) makes each group of k channels leave together;
- `roll` (cyclic shifts) and `softmax` over other axes pass them.
"""

import dataclasses

from ..ops import OpHandler, register_op
from . import views
from .segments import constant, take
from .shape_rules import follow_view, unknown_view


def _axes(value, attr):
    rank = len(list(value.shape))
    return [int(a) % rank for a in (attr or [])]


@dataclasses.dataclass
class SplitNote:
    """What `split`/`unbind` leave on their vector for `builtin.split`, which unpacks the parts."""

    segs: list
    axis: int          # the split axis
    channel_axis: int  # where the channels are (plain values)
    op: object         # the split op
    view: object = None
    drop: bool = False  # unbind: the parts lose the split axis


class Split(OpHandler):
    """split / split_with_num / unbind: the parts come out of `builtin.split` (UnpackSplit), which reads this note."""

    any_axis = True
    accepts_views = True

    def visit(self, walk, op):
        x = op.operand_source(0)
        view, segs = walk.view(x), walk.channels(x)
        if view is None and not segs:
            return None
        rank = len(list(x.shape))
        unbind = op.name() == "pd_op.unbind"
        axis = op.attrs().get("axis") if unbind else constant(op.operand_source(op.num_operands() - 1))
        if not isinstance(axis, (int, float)):
            return walk.unknown(op, f"`{op.name()}` along an unknown axis")
        walk.note(op.result(0), SplitNote(view.segs if view else segs, int(axis) % rank, walk.channel_axis(x), op,
                                          view, unbind))
        return None


class UnpackSplit(OpHandler):
    """builtin.split: each part of a split gets its channels; equal parts of channels lose channels evenly."""

    any_axis = True

    def visit(self, walk, op):
        note = walk.noted(op.operand_source(0))
        if not isinstance(note, SplitNote):
            return None
        sizes = [list(op.result(i).shape)[note.axis] if not note.drop else 1 for i in range(op.num_results())]
        if note.view is not None:
            return _view_parts(walk, op, note, sizes)
        if note.axis == note.channel_axis and note.drop:
            return walk.unknown(note.op, "`unbind` along the channels")
        if note.axis != note.channel_axis:
            moved = note.channel_axis - (1 if note.drop and note.axis < note.channel_axis else 0)
            for i in range(op.num_results()):
                walk.set_channels(op.result(i), note.segs, moved)
            return None
        if len(sizes) > 1 and len(set(sizes)) == 1 and sizes[0] > 0:
            _equal_parts(walk, note.segs, len(sizes), note.op)
        else:
            # Unequal sections are sizes written into the forward: removing channels would break them.
            walk.block(note.segs, "split along channels into parts of fixed size")
        offset = 0
        for i, size in enumerate(sizes):
            part = take(note.segs, offset, size)
            if part is None:
                return walk.unknown(note.op, "`split` through flattened features of one channel")
            walk.set_channels(op.result(i), part, note.channel_axis)
            offset += size
        return None


def _view_parts(walk, op, note, sizes):
    """Parts of a view: along one channel factor (q, k, v of qkv), or along an axis of other factors."""
    view, offset = note.view, 0
    holds = note.axis in view.holders()
    for i, size in enumerate(sizes):
        if holds:
            part = views.take(view, note.axis, offset, offset + size, note.drop)
        else:
            part = _resized(view, note.axis, size, note.drop)
        follow_view(walk, op, part, view.segs, f"split along {view.label} across its channel factors", result=i)
        offset += size


def _resized(view, axis, size, drop):
    """The view with `axis` (other factors only) cut to `size` entries, or dropped."""
    if drop:
        return views.drop_axes(view, [axis])
    axes = list(view.axes)
    axes[axis] = [views.Factor(size)] if size > 1 else []
    return dataclasses.replace(view, axes=axes)


def _equal_parts(walk, segs, parts, split_op):
    """`paddle.split(x, n, axis=1)` / `paddle.chunk`: the parts must stay equal, so they lose as many channels.

    One layer's whole output loses as many channels from each part (`Group.blocks`); parts
    that are whole outputs of different layers are pruned with the same indices.
    """
    width = sum(s.width for s in segs) // parts
    pieces = [take(segs, i * width, width) for i in range(parts)]
    if any(p is None for p in pieces):
        return walk.block(segs, "split along channels through the flattened features of a channel")
    s0 = segs[0]
    if len(segs) == 1 and s0.start == 0 and s0.count == walk.node_channels(s0.node) and s0.count % parts == 0:
        walk.constrain(s0.node, parts)
    elif all(walk.covers_whole(pieces[0], p) for p in pieces[1:]):
        for p in pieces[1:]:
            walk.couple(pieces[0], p, "")
    else:
        return walk.block(segs, f"split along channels into {parts} equal parts that mix several layers' "
                                "channels: they cannot lose channels evenly")
    sections = constant(split_op.operand_source(1)) if split_op.name() == "pd_op.split" else None
    if isinstance(sections, list):
        # Sections from x.shape[1] // 2, [8, 8] written in the forward and MixNet's `self.splitted_in_channels`
        # trace alike: the layer holding the split may update an attribute (its removal hook), then probed.
        walk.attribute_owner(segs, walk.owner_layer(split_op), [int(v) for v in sections])
        walk.fixed_shape(f"`pd_op.split` into the sections {[int(v) for v in sections]}", segs)
    return None


class Slice(OpHandler):
    """slice: along other axes the channels pass; along channels, at fixed positions, they stay whole."""

    any_axis = True
    accepts_views = True

    def visit(self, walk, op):
        x = op.operand_source(0)
        attrs = op.attrs()
        axes, dropped = _axes(x, attrs.get("axes")), _axes(x, attrs.get("decrease_axis"))
        src, dst = list(x.shape), list(op.result(0).shape)
        starts, ends = constant(op.operand_source(1)), constant(op.operand_source(2))
        bounds = _bounds(axes, starts, ends, src)
        if walk.view(x) is not None:
            return _slice_view(walk, op, walk.view(x), bounds, dropped)
        segs = walk.channels(x)
        if not segs:
            return None
        axis = walk.channel_axis(x)
        if axis not in bounds or bounds[axis] == (0, src[axis]):
            if len(dst) != len(src) - len(dropped) or axis in dropped:
                return walk.unknown(op, "`slice` that drops axes it does not cut")
            return walk.set_channels(op.result(0), segs, axis - sum(1 for d in dropped if d < axis))
        if bounds[axis] is None or len(axes) != 1 or dropped:
            return walk.unknown(op, "`slice` of channels with unknown bounds")
        start, stop = bounds[axis]
        walk.block(segs, "sliced along channels at fixed positions")
        part = take(segs, start, stop - start)
        if part is None:
            return walk.unknown(op, "`slice` through flattened features of one channel")
        return walk.set_channels(op.result(0), part, axis)


def _bounds(axes, starts, ends, shape):
    """{axis: (start, stop)} clipped to the shape, or None for an axis whose bounds are not constants."""
    out = {}
    for i, axis in enumerate(axes):
        if not (isinstance(starts, list) and isinstance(ends, list) and i < len(starts) and i < len(ends)):
            out[axis] = None
            continue
        size = shape[axis]
        lo, hi = (int(v) + size if int(v) < 0 else int(v) for v in (starts[i], ends[i]))
        out[axis] = (max(0, min(lo, size)), max(0, min(hi, size)))
    return out


def _slice_view(walk, op, view, bounds, dropped):
    """Slices of a view: an index or range of one channel factor, or parts of other factors."""
    out = view
    for axis in sorted(bounds, reverse=True):  # from the last axis, so dropping keeps the others' indices
        span = bounds[axis]
        if span is None:
            out = None
        elif axis in out.holders():
            out = views.take(out, axis, *span, drop=axis in dropped)
        elif span != (0, _size(out, axis)) or axis in dropped:
            out = _resized(out, axis, span[1] - span[0], axis in dropped)
        if out is None:
            break
    return follow_view(walk, op, out, view.segs, f"a `slice` across the channel factors of {view.label}")


def _size(view, axis):
    size = 1
    for f in view.axes[axis]:
        size *= f.size
    return size


class StridedSlice(OpHandler):
    """strided_slice (`x[:, 0::2, 0::2, :]`, Swin's patch merging): along other axes the channels pass."""

    any_axis = True
    accepts_views = True

    def visit(self, walk, op):
        x = op.operand_source(0)
        axes = _axes(x, op.attrs().get("axes"))
        view = walk.view(x)
        if view is not None:
            if any(a in view.holders() for a in axes):
                return unknown_view(walk, op, view.segs, "a strided slice across channel factors")
            out = view
            for a in axes:
                out = _resized(out, a, list(op.result(0).shape)[a], False)
            return walk.note(op.result(0), out)
        segs = walk.channels(x)
        if segs and walk.channel_axis(x) in axes:
            return walk.unknown(op, "a strided slice along the channels")
        if segs:
            walk.set_channels(op.result(0), segs, walk.channel_axis(x))
        return None


class Reduce(OpHandler):
    """mean / sum / max ... over other axes keep the channels; over one channel factor of a view they group them."""

    any_axis = True
    accepts_views = True

    def visit(self, walk, op):
        x = op.operand_source(0)
        src, dst = list(x.shape), list(op.result(0).shape)
        axes = constant(op.operand_source(1)) if op.num_operands() > 1 else op.attrs().get("axis")
        axes = _axes(x, [axes] if isinstance(axes, (int, float)) else list(axes or []))
        keep = len(dst) == len(src)
        view = walk.view(x)
        if view is not None:
            return _reduce_view(walk, op, view, axes, keep)
        segs = walk.channels(x)
        if not segs:
            return None
        axis = walk.channel_axis(x)
        if axes and 0 not in axes and axis not in axes and len(dst) >= 2:
            return walk.set_channels(op.result(0), segs, axis if keep else axis - sum(1 for a in axes if a < axis))
        return walk.unknown(op, f"`{op.name()}` reduces over the channel axis")


def _reduce_view(walk, op, view, axes, keep):
    """A reduction over other factors drops them; over one channel factor (alone on its axis) each group of
    channels that differ only in it becomes one channel: they leave together (MicroNet's max over groups)."""
    reduced = [a for a in axes if a in view.holders()]
    if len(reduced) > 1 or (reduced and len(view.axes[reduced[0]]) != 1):
        return unknown_view(walk, op, view.segs, f"`{op.name()}` over several channel factors of {view.label}")
    out = view
    if reduced:
        sub = view.axes[reduced[0]][0].sub
        rest = [k for k in view.order if k != sub]
        segs = views.unit_segs(walk, view, rest) if rest else None
        if segs is None:
            return unknown_view(walk, op, view.segs, f"`{op.name()}` over a channel factor of {view.label} whose "
                                                     "groups are not whole runs of one layer's channels")
        axes_out = [list(a) for a in view.axes]
        axes_out[reduced[0]] = []
        out = views.FactorView(segs, {k: view.sizes[k] for k in rest}, rest, axes_out, view.label)
    if keep:
        out = dataclasses.replace(out, axes=[[] if i in axes else a for i, a in enumerate(out.axes)])
    else:
        out = views.drop_axes(out, axes)
    return follow_view(walk, op, out, view.segs, f"`{op.name()}` over the channel factors of {view.label}")


class Roll(OpHandler):
    """roll (Swin's cyclic shift) along other axes passes the channels; along them it reorders them."""

    any_axis = True
    accepts_views = True

    def visit(self, walk, op):
        x = op.operand_source(0)
        axes = _axes(x, op.attrs().get("axis"))
        view = walk.view(x)
        if view is not None:
            if not axes or any(a in view.holders() for a in axes):
                return unknown_view(walk, op, view.segs, "`roll` along channel factors")
            return walk.note(op.result(0), view)
        segs = walk.channels(x)
        if segs and (not axes or walk.channel_axis(x) in axes):
            return walk.unknown(op, "`roll` along the channels (or over the flattened tensor)")
        if segs:
            walk.set_channels(op.result(0), segs, walk.channel_axis(x))
        return None


class Softmax(OpHandler):
    """softmax over other axes (attention over tokens) passes the channels; over them it mixes them."""

    any_axis = True
    accepts_views = True

    def visit(self, walk, op):
        x = op.operand_source(0)
        axis = int(op.attrs().get("axis", -1)) % len(list(x.shape))
        view = walk.view(x)
        if view is not None:
            if axis in view.holders():
                return unknown_view(walk, op, view.segs, f"`{op.name()}` over channel factors")
            return walk.note(op.result(0), view)
        segs = walk.channels(x)
        if segs and walk.channel_axis(x) == axis:
            return walk.unknown(op, f"`{op.name()}` over the channel axis")
        if segs:
            walk.set_channels(op.result(0), segs, walk.channel_axis(x))
        return None


register_op(("split", "split_with_num", "unbind"), Split())
register_op("builtin.split", UnpackSplit())
register_op("slice", Slice())
register_op("strided_slice", StridedSlice())
register_op(("mean", "sum", "max", "min", "amax", "amin", "logsumexp"), Reduce())
register_op("roll", Roll())
register_op(("softmax", "softmax_", "log_softmax"), Softmax())
