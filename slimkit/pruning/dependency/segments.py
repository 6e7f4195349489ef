"""Segments: which node's channels occupy which part of a value's channel axis, and the arithmetic on them.

A value's channels are a list of `Seg`s in order along its channel axis. The walk
(`walk.ChannelWalk`) keeps one list per traced value; the op rules cut, join and regroup them.
"""

import dataclasses
import math


class Node:
    """Channels produced by one op: a layer's output, the model input, or something not followed."""

    def __init__(self, index, channels, layer=None, reason=""):
        self.index = index
        self.channels = channels
        self.layer = layer
        self.reasons = [reason] if reason else []


@dataclasses.dataclass(frozen=True)
class Seg:
    """Channels [start, start+count) of node `node` occupy this part of a value's channel axis.

    `repeat` > 1 when each channel spans several consecutive features (flattened: H*W per
    channel; a depthwise conv with a channel multiplier: k outputs per input channel).
    """

    node: int
    start: int
    count: int
    repeat: int = 1

    @property
    def width(self):
        return self.count * self.repeat



def merge_adjacent(segs):
    """`segs` with neighbours that continue each other (same node and repeat, consecutive channels) joined:
    the parts of a split concatenated back in order are the whole node again."""
    out = []
    for s in segs:
        last = out[-1] if out else None
        if last and (last.node, last.repeat, last.start + last.count) == (s.node, s.repeat, s.start):
            out[-1] = Seg(s.node, last.start, last.count + s.count, s.repeat)
        else:
            out.append(s)
    return out


def one_node_per_group(segs, groups, in_per_group, channels_of):
    """The segments when each of a grouped conv's `groups` input runs is one whole node, else None.

    `channels_of(node)` is a node's channel count (`ChannelWalk.node_channels`).
    """
    if len(segs) != groups or any(s.repeat != 1 or s.start != 0 or s.count != in_per_group
                                  or channels_of(s.node) != in_per_group for s in segs):
        return None
    return list(segs)


def present(value):
    # Optional operands left out (an interpolate without a size tensor) are empty values without an id.
    return value is not None and value.initialized()


def channel_dim(value, out_rank, channel_axis=1):
    """Size of `value` along the output's channel axis after broadcasting (None: no such axis)."""
    shape = list(value.shape)
    axis = channel_axis - (out_rank - len(shape))
    return shape[axis] if 0 <= axis < len(shape) else None


def covers_whole_nodes(a, b, channels_of):
    """True when `a` and `b` list the same channels of whole nodes, in order (only then is coupling exact)."""
    if len(a) != len(b):
        return False
    for sa, sb in zip(a, b):
        if (sa.start, sa.count, sa.repeat) != (sb.start, sb.count, sb.repeat):
            return False
        if sa.start != 0 or sa.count != channels_of(sa.node) or sb.count != channels_of(sb.node):
            return False
    return True


def take(segs, offset, size):
    """The segments covering features [offset, offset+size) of the channel axis; None if a cut splits a channel."""
    out, pos = [], 0
    for s in segs:
        lo, hi = max(offset, pos), min(offset + size, pos + s.width)
        if lo < hi:
            if (lo - pos) % s.repeat or (hi - pos) % s.repeat:
                return None
            first = (lo - pos) // s.repeat
            out.append(Seg(s.node, s.start + first, (hi - lo) // s.repeat, s.repeat))
        pos += s.width
    return out


def reshape_segs(segs, src, dst):
    if len(src) >= 2 and len(dst) >= 2 and src[:2] == dst[:2] and src[1] > 0:
        # Batch and channels kept: the rest (sizes the trace may leave symbolic) only regroups space.
        return list(segs)
    if any(d <= 0 for d in src + dst) or len(src) < 2 or len(dst) < 2 or src[0] != dst[0]:
        return None
    spatial_in, spatial_out = math.prod(src[2:]), math.prod(dst[2:])
    if dst[1] == src[1] and spatial_in == spatial_out:
        return list(segs)  # only spatial axes changed (e.g. [N,C,1,1] -> [N,C])
    if len(dst) == 2 and dst[1] == src[1] * spatial_in:
        return [Seg(s.node, s.start, s.count, s.repeat * spatial_in) for s in segs]  # flatten
    if len(src) == 2 and dst[1] * spatial_out == src[1] and all(s.repeat % spatial_out == 0 for s in segs):
        return [Seg(s.node, s.start, s.count, s.repeat // spatial_out) for s in segs]  # unflatten
    return None


def positions(segs):
    """(node, channel) of every feature along the channel axis."""
    return [(s.node, s.start + k // s.repeat) for s in segs for k in range(s.width)]


def compress(positions):
    """The segments of `positions` ((node, channel) per feature): runs of one channel, then of consecutive ones."""
    out, i = [], 0
    while i < len(positions):
        node, channel = positions[i]
        repeat = 1
        while i + repeat < len(positions) and positions[i + repeat] == (node, channel):
            repeat += 1
        last = out[-1] if out else None
        if last and (last.node, last.repeat, last.start + last.count) == (node, repeat, channel):
            out[-1] = Seg(node, last.start, last.count + 1, repeat)
        else:
            out.append(Seg(node, channel, 1, repeat))
        i += repeat
    return out


def constant(value):
    """The value of a `full`/`full_int_array` op output, else None."""
    op = value.get_defining_op()
    if op is None or op.name() not in ("pd_op.full", "pd_op.full_int_array"):
        return None
    return op.attrs().get("value")
