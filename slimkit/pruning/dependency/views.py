"""Channels spread over several axes (a view), followed exactly until they sit on one axis again.

A value's channels normally lie along one axis (`Seg`s along it). A reshape can spread them
over several axes (qkv `[B, N, 3*h*d] -> [B, N, 3, h, d]`, a channel shuffle's
`[N, g, C/g, H, W]`) or merge them with other axes (MobileViT's unfold `[B*C*nh, ph, nw, pw]`).
A `FactorView` records where every part went: the channels are the row-major grid of their
*sub-factors* (`order`, outer to inner: 3, h, d), and each axis of the value is a list of
`Factor`s, outer to inner, each one a channel sub-factor or a part of something else (batch,
tokens, space). Reshapes and transposes only rearrange factors; `plain` gives the channels back
as `Seg`s along one axis once their sub-factors sit together in their own order again.
"""

import dataclasses
import math

import numpy as np

from .segments import Seg, compress, positions

OTHER = -1  # a factor that is not part of the channels: batch, tokens, space


@dataclasses.dataclass(frozen=True)
class Factor:
    """`size` entries of an axis: channel sub-factor `sub` (an id in FactorView.order), or OTHER."""

    size: int
    sub: int = OTHER


@dataclasses.dataclass
class FactorView:
    """Channels `segs` (flat, row-major over the sub-factors `order`) spread over the axes `axes`."""

    segs: list
    sizes: dict    # sub-factor id -> size
    order: list    # sub-factor ids, outer to inner; their sizes multiply to the channel features
    axes: list     # per axis of the value: [Factor], outer to inner
    label: str = ""

    def refused(self, op_name):
        return f"regrouped to {self.label} along channels and used by `{op_name}`: not followed"

    def holders(self):
        """Indices of the axes that hold channel sub-factors."""
        return [i for i, axis in enumerate(self.axes) if any(f.sub != OTHER for f in axis)]

    def subs(self, axis):
        """The channel sub-factor ids on `axis`, outer to inner."""
        return [f.sub for f in self.axes[axis] if f.sub != OTHER]


def from_channels(segs, axis, shape):
    """The view of a value whose channels `segs` lie along `axis` of `shape` (None: sizes not concrete).

    Flattened channels (every `Seg.repeat` r > 1 alike) give a channel factor and an inner factor r;
    mixed repeats make every feature a channel entry (a cut through a channel's features then fails).
    """
    repeats = {s.repeat for s in segs}
    repeat = repeats.pop() if len(repeats) == 1 else 1
    flat = [Seg(s.node, s.start, s.count) for s in segs] if repeat > 1 else list(segs)
    width = sum(s.width for s in flat)
    if any(d <= 0 for d in shape) or width < 2 or width * repeat != shape[axis]:
        return None
    axes = [[Factor(d)] if d > 1 else [] for d in shape]
    axes[axis] = [Factor(width, 0)] + ([Factor(repeat)] if repeat > 1 else [])
    return FactorView(flat, {0: width}, [0], axes)


def label_of(view, shape):
    """How the value looks, channel axes by their size: `[N, 2, 8, ...]`, `[N, ..., 3, 4, 8]`."""
    holders = set(view.holders())
    parts = []
    for i, d in enumerate(shape):
        part = str(d) if i in holders else ("N" if i == 0 else "...")
        if part != "..." or not parts or parts[-1] != "...":
            parts.append(part)
    return "[" + ", ".join(parts) + "]"


def reshape(view, dst):
    """The view after a reshape to `dst`, or None when a new axis would cut across a factor."""
    if any(d <= 0 for d in dst):
        return None
    queue = [f for axis in view.axes for f in axis]
    sizes, order = dict(view.sizes), list(view.order)
    axes = []
    for d in dst:
        axis = []
        while d > 1:
            if not queue:
                return None
            f = queue.pop(0)
            if d % f.size == 0:
                axis.append(f)
                d //= f.size
            elif f.size % d == 0:
                outer, inner = _split(f, d, sizes, order)
                axis.append(outer)
                queue.insert(0, inner)
                d = 1
            else:
                return None
        axes.append(axis)
    if queue:
        return None
    return dataclasses.replace(view, sizes=sizes, order=order, axes=axes)


def _split(factor, outer, sizes, order):
    """`factor` as (outer, inner) factors; a channel sub-factor becomes two (the channel order is kept)."""
    inner = factor.size // outer
    if factor.sub == OTHER:
        return Factor(outer), Factor(inner)
    a, b = max(sizes) + 1, max(sizes) + 2
    at = order.index(factor.sub)
    order[at:at + 1] = [a, b]
    del sizes[factor.sub]
    sizes[a], sizes[b] = outer, inner
    return Factor(outer, a), Factor(inner, b)


def transpose(view, perm):
    return dataclasses.replace(view, axes=[view.axes[p] for p in perm])


def plain(view):
    """(segs, axis) when every channel sub-factor sits on one axis in the channel order, else None.

    Other factors inside the channels' run (`[C, ph]`) are features per channel (`Seg.repeat`);
    other factors before it (`[k, C]`) repeat the whole channel list k times.
    """
    holders = view.holders()
    if len(holders) != 1:
        return None
    axis = view.axes[holders[0]]
    first = next(i for i, f in enumerate(axis) if f.sub != OTHER)
    run = [f.sub for f in axis[first:first + len(view.order)]]
    rest = axis[first + len(view.order):]
    if run != view.order or any(f.sub != OTHER for f in rest):
        return None
    repeat = math.prod(f.size for f in rest)
    tiles = math.prod(f.size for f in axis[:first])
    return [Seg(s.node, s.start, s.count, s.repeat * repeat) for s in view.segs] * tiles, holders[0]


def swapped(view):
    """(a, b) when the channels' two sub-factors (a outer, b inner) sit alone on one axis as [b, a]: a shuffle."""
    holders = view.holders()
    if len(holders) != 1 or len(view.order) != 2:
        return None
    axis = view.axes[holders[0]]
    a, b = view.order
    if [f.sub for f in axis] != [b, a]:
        return None
    return view.sizes[a], view.sizes[b]


def grid(view):
    """(node, channel) of every channel feature, as an array shaped [sizes in order] + [2]."""
    return np.array(positions(view.segs), dtype=np.int64).reshape([view.sizes[k] for k in view.order] + [2])


def take(view, axis, start, stop, drop=False):
    """Entries [start, stop) of `axis`, which must be one channel sub-factor alone (None otherwise).

    `drop` removes the axis (an index taken with `decrease_axis`, an `unbind` part).
    """
    factors = view.axes[axis]
    if len(factors) != 1 or factors[0].sub == OTHER:
        return None
    sub = factors[0].sub
    picked = np.take(grid(view), np.arange(start, stop), axis=view.order.index(sub))
    segs = compress([tuple(p) for p in picked.reshape(-1, 2).tolist()])
    sizes, order, axes = dict(view.sizes), list(view.order), [list(a) for a in view.axes]
    if stop - start == 1:
        order.remove(sub)
        del sizes[sub]
        axes[axis] = []
    else:
        sizes[sub] = stop - start
        axes[axis] = [Factor(stop - start, sub)]
    if drop:
        del axes[axis]
    if not order:
        return None
    return FactorView(segs, sizes, order, axes, view.label)


def drop_axes(view, dropped):
    """The view without the axes `dropped` (they must hold no channel sub-factor)."""
    if any(i in view.holders() for i in dropped):
        return None
    return dataclasses.replace(view, axes=[a for i, a in enumerate(view.axes) if i not in dropped])


def insert_axis(view, at):
    """The view with a new axis of size 1 at `at` (unsqueeze)."""
    axes = list(view.axes)
    axes.insert(at, [])
    return dataclasses.replace(view, axes=axes)


def unit_segs(walk, view, keep, kind=None):
    """The channels of the entries of sub-factors `keep` (row-major, in channel order), each entry being the
    features that differ only in the other sub-factors; None unless one fold of one node gives them.

    The fold (`walk.fold`: channel c of the node is channel (c // unit) % entries of the fold node) must
    send every feature of entry e to channel e: a head of q in qkv [3, heads, head_dim] (unit head_dim;
    k's and v's heads fold onto the same channels), a group of k neighbours reduced together (unit k),
    the same position in each of k equal parts summed together (unit 1). An entry of one feature is
    that channel itself (attention scores, whose channels are heads already).
    """
    at = [view.order.index(k) for k in keep]
    rest = [i for i in range(len(view.order)) if i not in at]
    entries = math.prod(view.sizes[k] for k in keep)
    g = np.transpose(grid(view), at + rest + [len(view.order)]).reshape(entries, -1, 2)
    if g.shape[1] == 1:
        return compress([tuple(p) for p in g[:, 0].tolist()])
    nodes = set(g[:, :, 0].ravel().tolist())
    first = g[:, :, 1].min(axis=1)
    unit = int(first[1] - first[0]) if entries > 1 else 0
    if len(nodes) != 1 or unit <= 0 or ((g[:, :, 1] // unit) % entries != np.arange(entries)[:, None]).any():
        return None
    folded = walk.fold(nodes.pop(), unit, entries, kind)
    return None if folded is None else [Seg(folded, 0, entries)]
