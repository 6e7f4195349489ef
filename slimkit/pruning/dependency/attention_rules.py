"""How channels pass attention: `q @ k^T` and `attn @ v`, the matmuls of two traced tensors, in whole heads.

Importing this module lets the linear-layer rule (layer_rules.Matmul) hand it every matmul
whose second operand is not a layer's weight. The operands arrive as views (views.FactorView):
q, k and v from a qkv layer reshaped to [B, N, 3, heads, head_dim] and permuted, or from
separate projections reshaped to [B, N, heads, head_dim].

- The batch axis that holds one channel factor on both sides is the heads axis: head j of
  q is coupled with head j of k (and the scores' head j with v's head j). Each head must be
  one whole unit of one layer's output channels (`views.unit_segs`); that layer's channels are
  folded into heads (`walk.fold`): removing a head removes it from q, k and v at once, and
  `head_dim` is kept. The scores [B, heads, N, N] carry the heads as their channels (axis 1),
  so a relative position bias [1, heads, N, N] added to them is sliced with the heads.
- The contracted axis holds head_dim: within whole heads it is kept; without a heads axis
  (one head) the channels contracted there stay whole.
- `attn @ v` passes v's channels to its output: they are merged back to [B, N, heads*head_dim]
  and read by the projection like any channels.
"""

import dataclasses

from . import views
from .shape_rules import follow_view

HEADS = "heads"


def _as_view(walk, value):
    view = walk.view(value)
    if view is not None or not walk.channels(value):
        return view
    return views.from_channels(walk.channels(value), walk.channel_axis(value), list(value.shape))


def _swap_last(view):
    perm = list(range(len(view.axes)))
    perm[-2:] = perm[-1], perm[-2]
    return views.transpose(view, perm)


def _traced_segs(walk, value):
    view = walk.view(value)
    return view.segs if view is not None else (walk.channels(value) or [])


def matmul_of_tensors(walk, op):
    """`x @ y` with neither a layer weight: attention scores and their weighted sum of values."""
    x, y = op.operand_source(0), op.operand_source(1)
    traced = _traced_segs(walk, x) + _traced_segs(walk, y)
    if not traced:
        return None
    a, b = _as_view(walk, x), _as_view(walk, y)
    shapes = [list(x.shape), list(y.shape)]
    if min(len(s) for s in shapes) < 2 or (a is None and walk.channels(x)) or (b is None and walk.channels(y)):
        return walk.unknown(op, f"`{op.name()}` of tensors whose channels are not followed (sizes not concrete)")
    attrs = op.attrs()
    a = _swap_last(a) if a is not None and attrs.get("transpose_x") else a
    b = _swap_last(b) if b is not None and attrs.get("transpose_y") else b
    out_shape = list(op.result(0).shape)
    problem = _problem(a, b)
    if problem:
        walk.block(traced, problem)
        return walk.opaque(op)
    heads = _heads(walk, op, a, b, len(out_shape))
    if isinstance(heads, str):
        walk.block(traced, heads)
        return walk.opaque(op)
    _contracted(walk, a, b, heads is not None)
    out = _result(a, b, heads, out_shape)
    if out is not None:
        follow_view(walk, op, out, out.segs, "")
    return None


def _subs(view, axis):
    return view.subs(axis) if view is not None and -len(view.axes) <= axis < len(view.axes) else []


def _problem(a, b):
    if _subs(a, -2):
        return "the rows of a `matmul` of two tensors are channels (attention over channels): not followed"
    if _subs(b, -2) and _subs(b, -1):
        return "both axes of a `matmul` operand hold channels: not followed"
    return ""


def _heads(walk, op, a, b, out_rank):
    """(heads axis of the output, heads segments) when a batch axis holds the heads on both sides, None
    without heads, or a reason when the channels on the batch axes cannot be followed."""
    found = []
    for back in range(3, out_rank + 1):
        sa, sb = _subs(a, -back), _subs(b, -back)
        if sa or sb:
            found.append((back, sa, sb))
    if not found:
        return None
    back, sa, sb = found[0]
    if len(found) > 1 or len(sa) != 1 or len(sb) != 1 or len(a.axes[-back]) != 1 or len(b.axes[-back]) != 1 \
            or a.sizes[sa[0]] != b.sizes[sb[0]]:
        return "channels on the batch axes of a `matmul` of two tensors that are not one heads axis on both sides"
    heads_a = views.unit_segs(walk, a, sa, HEADS)
    heads_b = views.unit_segs(walk, b, sb, HEADS)
    if heads_a is None or heads_b is None:
        return ("attention heads that are not whole runs of one layer's output channels (or a layer whose "
                "outputs are split into heads in two ways)")
    walk.couple(heads_a, heads_b, "attention heads of q and k (or of the scores and v) that do not line up")
    walk.attribute_owner(heads_a, walk.owner_layer(op))  # its head count changes with them
    return out_rank - back, heads_a


def _contracted(walk, a, b, in_heads):
    """head_dim: kept within whole heads; without heads the channels contracted stay whole."""
    sa, sb = _subs(a, -1), _subs(b, -2)
    if in_heads and bool(sa) == bool(sb):
        return
    reason = ("contracted by a `matmul` of two tensors (q @ k^T of one head): head_dim is kept" if sa and sb
              else "contracted with a tensor slimkit does not follow")
    for view, subs in ((a, sa), (b, sb)):
        if subs:
            walk.block(view.segs, reason)


def _result(a, b, heads, out_shape):
    """The output's channels: v's (attn @ v), the heads alone (q @ k^T), or none."""
    axes = [[views.Factor(d)] if d > 1 else [] for d in out_shape]
    if heads is None:
        if not _subs(b, -1):
            return None
        axes[-1] = list(b.axes[-1])
        return dataclasses.replace(b, axes=axes)
    axis, segs = heads
    if _subs(b, -1):
        axes[axis] = list(b.axes[axis - len(out_shape)])
        axes[-1] = list(b.axes[-1])
        return dataclasses.replace(b, axes=axes)
    width = sum(s.width for s in segs)
    axes[axis] = [views.Factor(width, 0)]
    return views.FactorView(segs, {0: width}, [0], axes, "[N, heads, ...]")
