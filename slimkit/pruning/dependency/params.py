"""Values computed from one parameter alone, and which axis of the parameter each of their axes is.

Position embeddings ([1, N, C] added to tokens), class tokens (`cls_token.expand([B, -1, -1])`
concatenated along N) and relative position biases (a [(2w-1)^2, heads] table gathered,
reshaped to [N, N, heads], transposed and unsqueezed before it is added to [B, heads, N, N]
attention scores) reach the channels through a few ops that keep some of the parameter's
axes intact. `derive` follows them: `ParamAxes.axes[i]` is the parameter axis that value axis
i still is, or None (gathered, sliced, broadcast, mixed by a reshape). A channel-wise op
then slices the parameter along that axis with the channels.
"""

import dataclasses

from .segments import constant
from .views import Factor, FactorView, reshape


@dataclasses.dataclass(frozen=True)
class ParamAxes:
    """Value axis i of a tensor made from parameter `name` is parameter axis axes[i] (None: not one)."""

    name: str
    shape: tuple   # the parameter's own shape
    axes: tuple

    def param_axis(self, axis):
        return self.axes[axis] if 0 <= axis < len(self.axes) else None


def of_parameter(name, shape):
    return ParamAxes(name, tuple(shape), tuple(range(len(shape))))


# Ops that keep every axis as it is (elementwise on the parameter alone).
_SAME = {"cast", "cast_", "assign", "scale", "scale_", "contiguous"}
_RESHAPES = {"reshape", "reshape_", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "flatten", "flatten_"}
_GATHERS = {"index_select", "gather"}
_BROADCASTS = {"expand", "expand_as", "tile", "broadcast_to"}
DERIVED_OPS = _SAME | _RESHAPES | _GATHERS | _BROADCASTS | {"transpose", "transpose_", "gather_nd", "slice"}


def derive(op, kind, source):
    """The ParamAxes of `op`'s first result when its first operand is `source` (a ParamAxes); None if lost."""
    x, out = op.operand_source(0), op.result(0)
    src, dst = list(x.shape), list(out.shape)
    axes = source.axes
    if kind in _SAME:
        new = axes
    elif kind in _BROADCASTS:
        new = tuple(a if s == d else None for a, s, d in zip(axes, src, dst)) if len(src) == len(dst) else None
    elif kind in ("transpose", "transpose_"):
        new = tuple(axes[int(p) % len(src)] for p in op.attrs()["perm"])
    elif kind in _RESHAPES:
        new = _reshaped(axes, src, dst)
    elif kind in _GATHERS:
        along = _axis_of(op, len(src))
        new = None if along is None else tuple(None if i == along else a for i, a in enumerate(axes))
    elif kind == "gather_nd":
        # index [..., k] picks along the first k axes: the result is index.shape[:-1] + shape[k:].
        index = list(op.operand_source(1).shape)
        k = index[-1] if index and index[-1] > 0 else None
        new = None if k is None else (None,) * (len(index) - 1) + tuple(axes[k:])
    else:  # slice
        new = _sliced(op, axes, src, dst)
    return None if new is None or len(new) != len(dst) else dataclasses.replace(source, axes=new)


def _axis_of(op, rank):
    axis = op.attrs().get("axis")
    if axis is None and op.num_operands() > 2:
        axis = constant(op.operand_source(2))
    return int(axis) % rank if isinstance(axis, (int, float)) else None


def _reshaped(axes, src, dst):
    # The parameter's axes as the sub-factors of a view: a value axis that is exactly one of them
    # (whole) still is that parameter axis; one that splits or merges it is none.
    ids = {i: a for i, a in enumerate(axes) if a is not None and src[i] > 1}
    if not ids:
        return (None,) * len(dst)
    view = FactorView([], {i: src[i] for i in ids}, list(ids),
                      [[Factor(d, i if i in ids else -1)] if d > 1 else [] for i, d in enumerate(src)])
    out = reshape(view, dst)
    if out is None:
        return None
    result = []
    for factors in out.axes:
        whole = len(factors) == 1 and factors[0].sub in ids
        result.append(ids[factors[0].sub] if whole else None)
    return tuple(result)


def _sliced(op, axes, src, dst):
    attrs = op.attrs()
    cut = {int(a) % len(src) for a in attrs.get("axes", [])}
    dropped = {int(a) % len(src) for a in attrs.get("decrease_axis", [])}
    kept = [None if i in cut else a for i, a in enumerate(axes) if i not in dropped]
    return tuple(kept)
