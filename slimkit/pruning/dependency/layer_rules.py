"""How channels pass the ops of layers with weights: convolutions of every kind, linear layers and norms.

Each rule is an op handler (slimkit.pruning.ops) that uses only the walk's public methods;
importing this module registers them.

- a conv's output channels are its layer's node; its input channels are sliced on the weight;
- a depthwise conv passes channels through (its weight and `groups` shrink with them);
- a grouped conv's outputs leave evenly (as many from every conv group) and its inputs leave
  at the same positions in every conv group, so the group count stays;
- a matmul with a 2-D parameter is a linear layer on the last axis ([batch, features] or
  channels-last tokens [..., C]); a matmul of two tensors is attention (attention_rules);
- LayerNorm over the channel axis alone is per channel; GroupNorm keeps its group count.
"""

from ..ops import OpHandler, register_op
from . import attention_rules
from .graph import ChannelSlice
from .segments import Seg, one_node_per_group
from .shape_rules import unknown_view


class Conv(OpHandler):
    """conv2d / depthwise_conv2d / conv3d with a layer's weight, channels first."""

    def visit(self, walk, op):
        x, w = op.operand_source(0), op.operand_source(1)
        segs = walk.channels(x)
        _, owner = walk.param(w)
        attrs = op.attrs()
        if owner is None or attrs.get("data_format", "NCHW") not in ("NCHW", "NCDHW", "AnyLayout"):
            return walk.unknown(op, f"its channels reach a `{op.name()}` whose weight is not a layer parameter "
                                    "or whose layout is not channels-first")
        layer, tensor, wshape = owner
        groups = int(attrs.get("groups", 1))
        out_c, in_per_group = wshape[0], wshape[1]
        in_c = in_per_group * groups
        if groups == 1:
            if segs:
                walk.consume(layer, tensor, 1, segs)
            walk.root(op, layer, tensor, 0, out_c)
        elif groups == in_c and in_per_group == 1 and out_c % in_c == 0 and segs and (
                out_c == in_c or all(s.repeat == 1 for s in segs)):
            # Depthwise: output channels [k*c, (k+1)*c) are input channel c filtered alone (k = the
            # channel multiplier, 1 for a plain depthwise conv), so they leave k at a time.
            multiplier = out_c // in_c
            out = [Seg(s.node, s.start, s.count, s.repeat * multiplier) for s in segs]
            walk.follow(layer, [seg.node for seg in segs])
            if walk.first_call(layer, segs):
                walk.add_slices(layer, tensor, 0, out)
            walk.set_channels(op.result(0), out)
        else:
            # Grouped: conv group k reads input channels [k*ipg, (k+1)*ipg) through weight
            # positions 0..ipg-1 (shared by all groups) and writes outputs [k*opg, (k+1)*opg).
            # Its inputs may only lose the same positions in every group, its outputs as many
            # channels in every group; the group count stays.
            if segs:
                _grouped_conv_inputs(walk, layer, tensor, segs, groups, in_per_group)
            walk.constrain(walk.root(op, layer, tensor, 0, out_c), groups)


def _grouped_conv_inputs(walk, layer, tensor, segs, groups, in_per_group):
    """The inputs of a grouped conv: one whole output (evenly, aligned), or one whole output per conv group."""
    in_c = in_per_group * groups
    s0 = segs[0]
    whole = (len(segs) == 1 and s0.start == 0 and s0.repeat == 1 and s0.count == in_c
             and walk.node_channels(s0.node) == in_c)
    runs = one_node_per_group(segs, groups, in_per_group, walk.node_channels)
    if not whole and runs:
        # A concatenation of `groups` whole outputs (ESPNetV2's branches): conv group k reads
        # run k through the same weight positions, so the runs are pruned with the same indices.
        for run in runs[1:]:
            walk.couple([runs[0]], [run], f"`{layer}` reads them through the same weights")
        if walk.first_call(layer, segs):
            for run in runs:
                walk.add_slice(run.node, ChannelSlice(layer, tensor, 1, 0, 0, in_per_group, 1, "in"))
    elif not whole:
        walk.block(segs, f"feeds grouped convolution `{layer}` (groups={groups}) together with "
                         "other channels (a concatenation or a slice): its groups cannot be followed")
    elif walk.first_call(layer, segs):
        for k in range(groups):
            walk.add_slice(s0.node, ChannelSlice(layer, tensor, 1, 0, k * in_per_group, in_per_group, 1, "in"))
        walk.constrain(s0.node, groups, aligned=True)


class ConvTranspose(OpHandler):
    """conv2d_transpose with a layer's weight ([in, out, kh, kw]) and one group."""

    def visit(self, walk, op):
        x, w = op.operand_source(0), op.operand_source(1)
        segs = walk.channels(x)
        _, owner = walk.param(w)
        groups = int(op.attrs().get("groups", 1))
        if owner is None or groups != 1:
            return walk.unknown(op, f"its channels reach `{op.name()}` with groups > 1 or no layer weight")
        layer, tensor, wshape = owner
        if segs:
            walk.consume(layer, tensor, 0, segs)
        walk.root(op, layer, tensor, 1, wshape[1])


class Matmul(OpHandler):
    """x @ W with a 2-D layer parameter W: a linear layer on x's last axis; x @ y of two tensors: attention."""

    any_axis = True
    accepts_views = True

    def visit(self, walk, op):
        x, y = op.operand_source(0), op.operand_source(1)
        name, owner = walk.param(y)
        if name is None:
            return attention_rules.matmul_of_tensors(walk, op)
        segs = walk.channels(x)
        attrs = op.attrs()
        rank = len(list(x.shape))
        if walk.view(x) is not None:
            return unknown_view(walk, op, walk.view(x).segs, walk.view(x).refused(op.name()))
        if (owner is None or len(owner[2]) != 2 or attrs.get("transpose_x") or rank < 2
                or (segs and walk.channel_axis(x) != rank - 1)):
            return walk.unknown(op, "its channels reach a `matmul` that is not a linear layer on their axis "
                                    "([batch, features] or channels-last [..., C])")
        layer, tensor, _ = owner
        in_axis, out_axis = (1, 0) if attrs.get("transpose_y") else (0, 1)
        if segs:
            walk.consume(layer, tensor, in_axis, segs)
        node = walk.root(op, layer, tensor, out_axis, owner[2][out_axis], value_axis=rank - 1)
        if rank >= 3:  # a linear layer on tokens ([B, N, C], [B, H, W, C]): an MLP's width
            walk.mark([Seg(node, 0, owner[2][out_axis])], "mlp")
        return None


class LayerNorm(OpHandler):
    """LayerNorm over the channel axis alone (channels-last) is per channel; over more axes it is not."""

    any_axis = True

    def visit(self, walk, op):
        x = op.operand_source(0)
        segs = walk.channels(x)
        if not segs:
            return
        rank = len(list(x.shape))
        if int(op.attrs().get("begin_norm_axis", 1)) != rank - 1 or walk.channel_axis(x) != rank - 1:
            return walk.unknown(op, "`layer_norm` normalizes over more than the channel axis")
        if walk.per_channel_params(op, segs, range(1, op.num_operands())):
            walk.mark(segs, "normed")
            walk.set_channels(op.result(0), segs, rank - 1)


class GroupNorm(OpHandler):
    """GroupNorm keeps its group count: channels leave evenly from its groups (like a grouped conv)."""

    def visit(self, walk, op):
        x = op.operand_source(0)
        segs = walk.channels(x)
        if not segs:
            return
        attrs = op.attrs()
        groups = int(attrs.get("groups", 1))
        whole = len(segs) == 1 and segs[0].start == 0 and segs[0].repeat == 1 and (
            segs[0].count == walk.node_channels(segs[0].node))
        if attrs.get("data_format", "NCHW") != "NCHW" or (groups > 1 and not whole):
            return walk.unknown(op, f"`group_norm` (groups={groups}) on channels it cannot split evenly")
        if walk.per_channel_params(op, segs, range(1, op.num_operands())):
            if groups > 1:
                walk.constrain(segs[0].node, groups)
            walk.set_channels(op.result(0), segs)


register_op(("conv2d", "depthwise_conv2d", "conv3d"), Conv())
register_op(("conv2d_transpose", "depthwise_conv2d_transpose"), ConvTranspose())
register_op("matmul", Matmul())
register_op("layer_norm", LayerNorm())
register_op("group_norm", GroupNorm())
