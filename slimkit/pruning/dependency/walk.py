"""Which tensors must shrink together when output channels of a conv or linear layer are removed.

`analyze(model, input_shape)` traces the model once into a Paddle PIR program
(`paddle.jit.to_static`, no change to the model) and follows every channel through it:

- a conv/linear layer's output channels start a *node*; they flow through BN,
  activations, pooling, dropout and per-channel parameters to the layers that consume
  them (their input-channel axis is sliced);
- `add`/`multiply`/... of two tensors couples their nodes (residual partners, SE gates):
  they are pruned with the same indices, as one Group;
- `concat` along channels gives each input its own offset slice of the consumer's input
  channels (each producer stays independently prunable); a `split` into equal parts
  (`paddle.chunk`) makes its input lose as many channels from every part; unequal
  sections and `slice` along channels use fixed sizes, so the channels they cut are not
  prunable (their parts are still followed);
- a channel shuffle (reshape to [N, g, C/g, ...], transpose(0, 2, 1, ...), reshape back) is
  a known permutation: the channels after it are followed, and its g sub-blocks keep the
  same positions (sub-blocks from different layers are pruned with the same indices);
- a depthwise conv passes channels through (its weight and `groups` shrink with them);
- flatten/reshape to [N, features] maps each channel to its H*W consecutive features;
- a grouped conv's outputs leave evenly (as many from every conv group) and its inputs
  leave at the same positions in every conv group, so the group count stays;
- anything else (ops slimkit does not know, reshapes it cannot follow, the model's
  output) makes the channels that reach it unprunable, with the reason.

The result is a `DependencyGraph` of `Group`s; `slimkit.pruning.remove_channels` uses its
slices to cut the tensors.
"""

import contextlib
import dataclasses
import math

import numpy as np
import paddle

from ... import compat
from ...core.errors import ModelError
from ...core.schema import _suggest
from ...core.surgery import eval_mode, parameter_layers, train_mode
from .. import ops


@dataclasses.dataclass
class Group:
    """Output channels of one or more layers that must be pruned together."""

    name: str
    roots: list
    channels: int
    members: list
    prunable: bool = True
    reason: str = ""
    min_channels: int = 1
    channel_multiple: int = 1
    # Channels that pass a grouped conv leave evenly: `blocks` equal runs of channels (one per
    # conv group, GroupNorm group or equal split part) each keep as many; `aligned` also keeps
    # the same positions in every run (a grouped conv's inputs, which share its weight's input
    # axis across groups; the sub-blocks of a channel shuffle, whose order must survive).
    blocks: int = 1
    aligned: bool = False
    # Exact positions behind `members`: which tensor range holds which channel (see ChannelSlice).
    slices: list = dataclasses.field(default_factory=list, repr=False)


@dataclasses.dataclass(frozen=True)
class ChannelSlice:
    """Channels [start, start+count) of a group live at `tensor`[offset : offset + count*repeat] along `axis`.

    `repeat` > 1 when the channels were flattened: each channel then owns `repeat`
    consecutive features of the next linear layer. `role` says what the slice is: "out"
    (a root layer's output channels), "in" (a consumer's input channels) or "channel"
    (per-channel tensors on the way: BN, bias, depthwise filters).
    """

    layer: str
    tensor: str
    axis: int
    offset: int
    start: int
    count: int
    repeat: int = 1
    role: str = "channel"


class DependencyGraph:
    """The channel groups of a model for one input shape (from `analyze`)."""

    def __init__(self, groups, input_shape, output_shapes, tensor_shapes, unused=None, followers=None):
        self.groups = groups
        self.input_shape = list(input_shape)
        self.output_shapes = output_shapes  # model output shapes, to check a pruned model still runs
        self.tensor_shapes = tensor_shapes  # {(layer, tensor): shape} of every sliced tensor, to detect a stale graph
        self.unused = dict(unused or {})  # conv/linear layers the traced forward never called
        # Depthwise convs whose output carries another group's channels -> that Group (None: several groups).
        self.followers = dict(followers or {})
        self.output_structure = None  # containers and shapes of the eager output (see output_structure)
        # The same in training mode, for a model whose training forward calls layers eval mode does not
        # (auxiliary heads); None when both modes call the same layers.
        self.train_structure = None
        self._by_root = {root: g for g in groups for root in g.roots}
        self.parameter_layers = {}  # parameter name -> its layer (`analyze` fills it): `group` takes either

    def group(self, layer_name):
        """The Group holding `layer_name`'s output channels (any of its root layers' names works).

        A parameter's name works too: its state-dict key (`features.0.weight`) or Paddle's
        name of it (`conv2d_22.w_0`, as PaddleSlim's tutorials name layers).

        A depthwise conv's output channels are its input's: it resolves to the group that
        produces them.
        """
        if layer_name in self._by_root:
            return self._by_root[layer_name]
        if layer_name in self.followers:
            if self.followers[layer_name] is not None:
                return self.followers[layer_name]
            raise ModelError(f"depthwise conv {layer_name!r} carries the channels of several layers "
                             "(a concatenation); prune those layers instead")
        layer = self.parameter_layers.get(layer_name)
        if layer is not None and layer != layer_name:  # a parameter's name (`conv2d_22.w_0`): its layer's group
            try:
                return self.group(layer)
            except ModelError as err:
                raise ModelError(f"parameter {layer_name!r} belongs to layer {layer!r}: {err.message}",
                                 err.hint) from None
        names = [g.name for g in self.groups]
        if layer_name in self.unused:
            raise ModelError(f"layer {layer_name!r} is not prunable: {self.unused[layer_name]}",
                             "choose one of the layers `prunable_layers` lists")
        raise ModelError(f"no conv/linear layer named {layer_name!r} in the model", _suggest(layer_name, names))

    def prunable(self):
        """The Groups whose channels can be removed."""
        return [g for g in self.groups if g.prunable]

    def skipped(self):
        """{group or layer name: reason} for everything that cannot be pruned."""
        out = {g.name: g.reason for g in self.groups if not g.prunable}
        out.update(self.unused)
        return out

    def nothing_pruned(self, targets):
        """The warning for a prune that removed no channel: why, group by group (the first few)."""
        if targets:
            return (f"prune removed no channels: the ratios keep every channel of the {len(targets)} prunable "
                    "groups (too few channels for the ratio, round_to or min_channels)")
        reasons = [f"{name}: {why}" for name, why in self.skipped().items()]
        more = f"; ... ({len(reasons) - 5} more in PruneResult.skipped)" if len(reasons) > 5 else ""
        return "prune removed no channels, no group can be pruned: " + "; ".join(reasons[:5]) + more

    def __repr__(self):
        return (f"DependencyGraph({len(self.groups)} groups, {len(self.prunable())} prunable, "
                f"input_shape={self.input_shape})")


def group_weights(model, group):
    """The weight arrays of `group`'s root layers, output channels on axis 0 (criterion input)."""
    layers = dict(model.named_sublayers(include_self=True))
    out = []
    for s in group.slices:
        if s.role == "out":
            w = layers[s.layer].weight.numpy()
            out.append(np.moveaxis(w, s.axis, 0))
    return out


def analyze(model, input_shape):
    """Trace `model` on `input_shape` ([N, C, H, W]) and return its DependencyGraph.

    The eval-mode forward is traced; when it leaves conv/linear layers uncalled, the
    training-mode forward is traced too, so auxiliary heads that only training calls
    (PSPNet, BiSeNet, PP-LiteSeg style) shrink with the features they read and prune their
    own channels. The model (weights, forward, train/eval flags) and the Paddle session
    (dynamic mode, PIR flag) are left as they were, also when tracing fails.
    """
    input_shape = _check_shape(input_shape)
    eager_out = _check_forward_runs(model, input_shape)
    tracer = _ChannelTracer(model)
    tracer.run(*_trace(model, input_shape))
    train_out = _follow_training_forward(model, input_shape, tracer)
    graph = tracer.graph(input_shape, [list(t.shape) for t in flat_outputs(eager_out)])
    graph.output_structure = output_structure(eager_out)
    graph.parameter_layers = parameter_layers(model)
    if train_out is not None:
        graph.train_structure = output_structure(train_out)
    from .probe import probe_fixed_shapes  # it removes channels (remove.py), which needs this module

    probe_fixed_shapes(model, graph, tracer.fixed_shape_groups(graph))
    return graph


def _follow_training_forward(model, input_shape, tracer):
    """Walk the training-mode program too if it calls layers the eval one does not; its eager output, or None."""
    uncalled = tracer.uncalled()
    if not uncalled:
        return None
    try:
        train_out = _check_forward_runs(model, input_shape, training=True)
        program, outputs = _trace(model, input_shape, training=True)
    except ModelError as err:
        # The eval forward still prunes; the layers only training might call stay as they are.
        tracer.training_failed = err.message
        return None
    tracer.run(program, outputs)
    return train_out if tracer.uncalled() != uncalled else None


def flat_outputs(out):
    """The tensors (or traced values) of a model output of any nesting of tuples, lists and dicts, in order."""
    if isinstance(out, dict):
        return [t for key in out for t in flat_outputs(out[key])]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flat_outputs(o)]
    return [out] if out is not None and hasattr(out, "shape") else []


def output_structure(out):
    """What the eager output looks like (containers, keys and concrete shapes), to compare a pruned model's with."""
    if isinstance(out, dict):
        return {key: output_structure(value) for key, value in out.items()}
    if isinstance(out, (list, tuple)):
        return (type(out).__name__, [output_structure(o) for o in out])
    return list(out.shape) if hasattr(out, "shape") else type(out).__name__


def _check_shape(input_shape):
    try:
        shape = [int(d) for d in input_shape]
    except (TypeError, ValueError):
        shape = None
    if not shape or any(d <= 0 for d in shape):
        raise ModelError(f"input_shape must be a list of positive ints like [1, 3, 32, 32], got {input_shape!r}",
                         "pass the shape of one input batch: [batch, channels, height, width]")
    return shape


def _check_forward_runs(model, input_shape, training=False):
    # The static trace checks fewer shapes than an eager run (a conv given the wrong channel
    # count traces fine), so run the model once as the user would.
    mode = train_mode if training else eval_mode
    try:
        with compat.session_guard(), mode(model), paddle.no_grad():
            return model(paddle.zeros(input_shape, dtype="float32"))
    except Exception as err:
        where = " in training mode" if training else ""
        raise ModelError(f"the model cannot run{where} on input_shape {input_shape}: {type(err).__name__}: "
                         f"{_last_line(err)}", _SHAPE_HINT) from None


_SHAPE_HINT = ("check input_shape ([batch, channels, height, width] of your data) and that "
               "model(paddle.randn(input_shape)) works")


def _last_line(err):
    text = str(err).strip()
    return text.splitlines()[-1] if text else ""


def _trace(model, input_shape, training=False):
    """(the traced PIR program, its output values) of the eval-mode (or training-mode) forward."""
    # to_static on the bound forward (not on the layer) leaves `model.forward` untouched.
    pir_guard = contextlib.nullcontext() if compat.pir_enabled() else paddle.pir_utils.IrGuard()
    mode = train_mode if training else eval_mode
    try:
        with compat.session_guard(), pir_guard, mode(model):
            spec = [paddle.static.InputSpec(input_shape, "float32")]
            static_forward = paddle.jit.to_static(model.forward, input_spec=spec, full_graph=True)
            program = static_forward.concrete_program
            return program.main_program, flat_outputs(list(program.outputs))
    except OSError as err:
        if "source code" not in str(err):
            raise ModelError(f"cannot trace the model on input_shape {input_shape}: OSError: {_last_line(err)}",
                             _SHAPE_HINT) from None
        raise ModelError(f"cannot trace the model: the source code of {type(model).__name__}.forward (or of a "
                         "layer it calls) cannot be read, and Paddle's to_static trace converts forward from its "
                         "source (classes defined in `python -`, `exec` or an interactive session have none)",
                         "define the model classes in a .py file and import them (notebook cells work too)") from None
    except Exception as err:
        raise ModelError(f"cannot trace the model on input_shape {input_shape}: {type(err).__name__}: "
                         f"{_last_line(err)}", _SHAPE_HINT) from None


# ---- the channel tracer -------------------------------------------------------------------------

# Views of a parameter (a PReLU slope reshaped for broadcasting, ...) still name that parameter.
_PARAM_VIEWS = {"reshape", "reshape_", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "cast", "assign", "flatten"}


class _Node:
    """Channels produced by one op: a layer's output, the model input, or something not followed."""

    def __init__(self, index, channels, layer=None, reason=""):
        self.index = index
        self.channels = channels
        self.layer = layer
        self.reasons = [reason] if reason else []


@dataclasses.dataclass(frozen=True)
class _Seg:
    # Channels [start, start+count) of node `node` occupy this part of a value's channel axis (axis 1).
    node: int
    start: int
    count: int
    repeat: int = 1

    @property
    def width(self):
        return self.count * self.repeat


class _ChannelTracer:
    def __init__(self, model):
        self.param_owner = {}
        for prefix, layer in model.named_sublayers(include_self=True):
            for name, p in layer._parameters.items():
                if p is not None:
                    self.param_owner[p.name] = (prefix, name, list(p.shape))
        self.weighted_layers = {prefix: type(layer).__name__ for prefix, layer in model.named_sublayers()
                                if isinstance(layer, (paddle.nn.Linear, paddle.nn.layer.conv._ConvNd))}
        self.nodes = []
        self.parent = []
        self.slices = []  # (node, ChannelSlice-without-group) pairs
        self.info = {}  # value id -> list of _Seg along the value's channel axis
        self.axes = {}  # value id -> its channel axis when not 1 (channels-last blocks, tokens)
        self.param_of = {}  # value id -> parameter name, for parameters and views of them
        self.vectors = {}  # value id of a pd_op.split result -> (segments, split op)
        self.layer_node = {}  # layer name -> its output node (a layer called twice keeps one node)
        self.layer_inputs = {}  # layer name -> input segments of its first call
        self.followers = {}  # depthwise conv name -> nodes whose channels its output carries
        self.constraints = {}  # node -> [(blocks, aligned)] from the grouped convs it meets
        self.fixed_shapes = []  # (description, segments) of reshapes/splits to sizes constant in the trace
        self.pending = {}  # value id -> (segments, a, b, transposed) of a channel shuffle under way (5-D views)
        self.training_failed = ""  # why the training-mode forward could not be followed, if it was tried

    # -- union-find over nodes
    def _new_node(self, channels, layer=None, reason=""):
        node = _Node(len(self.nodes), channels, layer, reason)
        self.nodes.append(node)
        self.parent.append(node.index)
        return node.index

    def _find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def _union(self, a, b):
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def _block(self, segs, reason):
        for s in segs:
            node = self.nodes[s.node]
            if reason not in node.reasons:
                node.reasons.append(reason)

    # -- walking the program
    def run(self, program, outputs):
        """Follow one traced program; a second one (the training forward) adds to the same layers' nodes."""
        self.info, self.axes, self.param_of, self.vectors = {}, {}, {}, {}  # values belong to one program
        for op in program.global_block().ops:
            self._visit(op)
        for v in outputs:
            segs = self.info.get(v.id) or (self.pending[v.id][0] if v.id in self.pending else None)
            if segs:
                self._block(segs, "its channels are the model's output")

    def _visit(self, op):
        kind = op.name().split(".", 1)[1] if op.name().startswith("pd_op.") else op.name()
        if kind == "builtin.parameter":
            self.param_of[op.result(0).id] = op.attrs()["parameter_name"]
        elif kind == "data":
            shape = list(op.result(0).shape)
            if len(shape) >= 2 and shape[1] > 0:
                self.info[op.result(0).id] = [_Seg(self._new_node(shape[1], reason="model input"), 0, shape[1])]
        elif kind in _PARAM_VIEWS and _present(op.operand_source(0)) and op.operand_source(0).id in self.param_of:
            self.param_of[op.result(0).id] = self.param_of[op.operand_source(0).id]
        else:
            handler = ops.handler_for(kind)
            if handler is None:
                return self.unknown(op, f"its channels reach `{op.name()}`, which slimkit does not follow "
                                        "(teach it with slimkit.pruning.ops.register_op)")
            if self._leaves_shuffle(op, handler):
                return None
            moved = [i for i in range(op.num_operands()) if self.channels(op.operand_source(i))
                     and self.channel_axis(op.operand_source(i)) != 1]
            if moved and not getattr(handler, "any_axis", False):
                return self.unknown(op, f"its channels reach `{op.name()}` on axis "
                                        f"{self.channel_axis(op.operand_source(moved[0]))}, and that op is only "
                                        "followed with channels on axis 1")
            handler.visit(self, op)

    def _leaves_shuffle(self, op, handler):
        # Channels regrouped to [N, a, b, ...] are followed only into a channel shuffle (transpose, reshape back).
        views = [self.pending[op.operand_source(i).id] for i in range(op.num_operands())
                 if _present(op.operand_source(i)) and op.operand_source(i).id in self.pending]
        passes = isinstance(handler, ops.Ignore) and op.name() != "builtin.combine"  # shape queries
        if not views or passes or getattr(handler, "method", None) in ("reshape", "transpose"):
            return False
        for segs, a, b, _ in views:
            self._block(segs, f"regrouped to [N, {a}, {b}, ...] along channels and used by `{op.name()}`: "
                              "only a channel shuffle (transpose, reshape back) is followed")
        self.opaque(op)
        return True

    # -- what an op handler (slimkit.pruning.ops) may use
    def channels(self, value):
        """The channel segments `value` carries along axis 1, or None (not followed / no channels)."""
        return self.info.get(value.id) if _present(value) else None

    def set_channels(self, value, segs, axis=1):
        """`value` carries `segs` (as `channels` returned them for an input) along `axis`."""
        self.info[value.id] = list(segs)
        if axis % max(1, len(list(value.shape))) != 1:
            self.axes[value.id] = axis % len(list(value.shape))
        else:
            self.axes.pop(value.id, None)

    def channel_axis(self, value):
        """The axis along which `value` carries its channels (1 unless a transpose moved them)."""
        return self.axes.get(value.id, 1) if _present(value) else 1

    def block(self, segs, reason):
        """The channels in `segs` cannot be removed, because of `reason`."""
        self._block(segs or [], reason)

    def couple(self, a, b, reason):
        """Channel i of `a` is channel i of `b` (else both are blocked with `reason`)."""
        self._couple(a, b, reason)

    def opaque(self, op):
        """The op's outputs carry channels slimkit does not follow (whatever consumes them keeps them whole)."""
        for i in range(op.num_results()):
            self._opaque(op.result(i), f"produced by `{op.name()}`, which slimkit does not follow")

    def unknown(self, op, reason):
        """Block every channel reaching `op` with `reason`; its outputs are not followed."""
        self._block(self._operand_segs(op), reason)
        self.opaque(op)

    def _segs(self, value):
        return self.channels(value)

    def _operand_segs(self, op):
        return [s for i in range(op.num_operands()) for s in (self._segs(op.operand_source(i)) or [])]

    def _opaque(self, value, reason):
        try:
            shape = list(value.shape)
        except Exception:  # vectors and other non-tensor results have no shape
            return
        if len(shape) >= 2 and shape[1] > 0:
            self.info[value.id] = [_Seg(self._new_node(shape[1], reason=reason), 0, shape[1])]

    def _add_slices(self, layer, tensor, axis, segs, offset=0, role="channel"):
        for s in segs:
            self.slices.append((s.node, ChannelSlice(layer, tensor, axis, offset, s.start, s.count, s.repeat, role)))
            offset += s.width

    def _param(self, value):
        name = self.param_of.get(value.id) if _present(value) else None
        return (name, self.param_owner.get(name)) if name else (None, None)

    def _root(self, op, layer, tensor, axis, channels, value_axis=1):
        # The layer's output channels: one node per layer, even when the layer is called twice.
        if layer not in self.layer_node:
            self.layer_node[layer] = self._new_node(channels, layer=layer)
            self.slices.append((self.layer_node[layer], ChannelSlice(layer, tensor, axis, 0, 0, channels, 1, "out")))
        node = self.layer_node[layer]
        self.set_channels(op.result(0), [_Seg(node, 0, channels)], value_axis)
        return node

    def _consume(self, op, layer, tensor, axis, segs):
        # A layer called twice must see the same channels on its input axis both times.
        if layer in self.layer_inputs:
            self._couple(self.layer_inputs[layer], segs, f"`{layer}` is called on tensors with different channels")
            return
        self.layer_inputs[layer] = segs
        self._add_slices(layer, tensor, axis, segs, role="in")

    def conv(self, op):
        x, w = op.operand_source(0), op.operand_source(1)
        segs = self._segs(x)
        _, owner = self._param(w)
        attrs = op.attrs()
        if owner is None or attrs.get("data_format", "NCHW") not in ("NCHW", "NCDHW", "AnyLayout"):
            return self.unknown(op, f"its channels reach a `{op.name()}` whose weight is not a layer parameter "
                                     "or whose layout is not channels-first")
        layer, tensor, wshape = owner
        groups = int(attrs.get("groups", 1))
        out_c, in_per_group = wshape[0], wshape[1]
        in_c = in_per_group * groups
        if groups == 1:
            if segs:
                self._consume(op, layer, tensor, 1, segs)
            self._root(op, layer, tensor, 0, out_c)
        elif groups == in_c and in_per_group == 1 and out_c % in_c == 0 and segs and (
                out_c == in_c or all(s.repeat == 1 for s in segs)):
            # Depthwise: output channels [k*c, (k+1)*c) are input channel c filtered alone (k = the
            # channel multiplier, 1 for a plain depthwise conv), so they leave k at a time.
            multiplier = out_c // in_c
            out = [_Seg(s.node, s.start, s.count, s.repeat * multiplier) for s in segs]
            self.followers[layer] = [seg.node for seg in segs]
            if layer in self.layer_inputs:
                self._couple(self.layer_inputs[layer], segs, f"`{layer}` is called on tensors with different channels")
            else:
                self.layer_inputs[layer] = segs
                self._add_slices(layer, tensor, 0, out)
            self.info[op.result(0).id] = out
        else:
            # Grouped: conv group k reads input channels [k*ipg, (k+1)*ipg) through weight
            # positions 0..ipg-1 (shared by all groups) and writes outputs [k*opg, (k+1)*opg).
            # Its inputs may only lose the same positions in every group, its outputs as many
            # channels in every group; the group count stays.
            if segs:
                self._grouped_conv_inputs(layer, tensor, segs, groups, in_per_group)
            node = self._root(op, layer, tensor, 0, out_c)
            self.constraints.setdefault(node, []).append((groups, False))

    def _grouped_conv_inputs(self, layer, tensor, segs, groups, in_per_group):
        """The inputs of a grouped conv: one whole output (evenly, aligned), or one whole output per conv group."""
        in_c = in_per_group * groups
        s0 = segs[0]
        whole = (len(segs) == 1 and s0.start == 0 and s0.repeat == 1 and s0.count == in_c
                 and self.nodes[s0.node].channels == in_c)
        runs = _one_node_per_group(segs, groups, in_per_group, self.nodes)
        if not whole and runs:
            # A concatenation of `groups` whole outputs (ESPNetV2's branches): conv group k reads
            # run k through the same weight positions, so the runs are pruned with the same indices.
            for run in runs[1:]:
                self._couple([runs[0]], [run], f"`{layer}` reads them through the same weights")
            if layer not in self.layer_inputs:
                self.layer_inputs[layer] = segs
                for run in runs:
                    self.slices.append((run.node, ChannelSlice(layer, tensor, 1, 0, 0, in_per_group, 1, "in")))
        elif not whole:
            self._block(segs, f"feeds grouped convolution `{layer}` (groups={groups}) together with "
                              "other channels (a concatenation or a slice): its groups cannot be followed")
        elif layer in self.layer_inputs:
            self._couple(self.layer_inputs[layer], segs,
                         f"`{layer}` is called on tensors with different channels")
        else:
            self.layer_inputs[layer] = segs
            for k in range(groups):
                self.slices.append((s0.node, ChannelSlice(layer, tensor, 1, 0, k * in_per_group,
                                                          in_per_group, 1, "in")))
            self.constraints.setdefault(s0.node, []).append((groups, True))

    def conv_transpose(self, op):
        x, w = op.operand_source(0), op.operand_source(1)
        segs = self._segs(x)
        _, owner = self._param(w)
        groups = int(op.attrs().get("groups", 1))
        if owner is None or groups != 1:
            return self.unknown(op, f"its channels reach `{op.name()}` with groups > 1 or no layer weight")
        layer, tensor, wshape = owner
        if segs:
            self._consume(op, layer, tensor, 0, segs)
        self._root(op, layer, tensor, 1, wshape[1])

    def matmul(self, op):
        x, y = op.operand_source(0), op.operand_source(1)
        segs = self._segs(x)
        _, owner = self._param(y)
        attrs = op.attrs()
        rank = len(list(x.shape))
        if (owner is None or len(owner[2]) != 2 or attrs.get("transpose_x") or rank < 2
                or (segs and self.channel_axis(x) != rank - 1)):
            return self.unknown(op, "its channels reach a `matmul` that is not a linear layer on their axis "
                                    "([batch, features] or channels-last [..., C])")
        layer, tensor, _ = owner
        in_axis, out_axis = (1, 0) if attrs.get("transpose_y") else (0, 1)
        if segs:
            self._consume(op, layer, tensor, in_axis, segs)
        self._root(op, layer, tensor, out_axis, owner[2][out_axis], value_axis=rank - 1)

    def transpose(self, op):
        """A permutation of axes moves the channel axis (NCHW <-> NHWC, [N, C, L] <-> [N, L, C] tokens)."""
        x = op.operand_source(0)
        perm = [int(p) % len(list(x.shape)) for p in op.attrs()["perm"]]
        if x.id in self.pending:
            segs, a, b, done = self.pending[x.id]
            if done or perm != [0, 2, 1] + list(range(3, len(perm))):
                return self.unknown_view(op, segs, f"regrouped channels [N, {a}, {b}, ...] transposed by {perm}: "
                                                   "only a channel shuffle (perm [0, 2, 1, ...]) is followed")
            self.pending[op.result(0).id] = (segs, a, b, True)
            return None
        segs = self._segs(x)
        if segs:
            self.set_channels(op.result(0), segs, perm.index(self.channel_axis(x)))

    def layer_norm(self, op):
        """LayerNorm over the channel axis alone (channels-last) is per channel; over more axes it is not."""
        x = op.operand_source(0)
        segs = self._segs(x)
        if not segs:
            return
        rank = len(list(x.shape))
        if int(op.attrs().get("begin_norm_axis", 1)) != rank - 1 or self.channel_axis(x) != rank - 1:
            return self.unknown(op, "`layer_norm` normalizes over more than the channel axis")
        if self.per_channel_params(op, segs, range(1, op.num_operands())):
            self.set_channels(op.result(0), segs, rank - 1)

    def group_norm(self, op):
        """GroupNorm keeps its group count: channels leave evenly from its groups (like a grouped conv)."""
        x = op.operand_source(0)
        segs = self._segs(x)
        if not segs:
            return
        attrs = op.attrs()
        groups = int(attrs.get("groups", 1))
        whole = len(segs) == 1 and segs[0].start == 0 and segs[0].repeat == 1 and (
            segs[0].count == self.nodes[segs[0].node].channels)
        if attrs.get("data_format", "NCHW") != "NCHW" or (groups > 1 and not whole):
            return self.unknown(op, f"`group_norm` (groups={groups}) on channels it cannot split evenly")
        if self.per_channel_params(op, segs, range(1, op.num_operands())):
            if groups > 1:
                self.constraints.setdefault(segs[0].node, []).append((groups, False))
            self.set_channels(op.result(0), segs)

    def per_channel_params(self, op, segs, operand_indices):
        """Slice the 1-D parameters among `operand_indices` with `segs`; False (op blocked) if one is not per channel.

        A one-value parameter (PReLU's shared slope, a scalar scale) applies to every channel
        alike and stays as it is.
        """
        width = sum(s.width for s in segs)
        params = []
        for i in operand_indices:
            name, owner = self._param(op.operand_source(i))
            if name is None or (owner is not None and math.prod(owner[2]) == 1):
                continue
            if owner is None or len(owner[2]) != 1 or owner[2][0] != width:
                self.unknown(op, f"`{op.name()}` has a parameter that is not one value per channel")
                return False
            params.append(owner)
        for layer in dict.fromkeys(layer for layer, _, _ in params):
            if (layer, "per-channel") in self.layer_inputs:  # a shared norm layer: same channels every call
                self._couple(self.layer_inputs[(layer, "per-channel")], segs,
                             f"`{layer}` is applied to tensors with different channels")
                continue
            self.layer_inputs[(layer, "per-channel")] = segs
            for owner, tensor, _ in params:
                if owner == layer:
                    self._add_slices(layer, tensor, 0, segs)
        return True

    def combine(self, op):
        """An elementwise op of several tensors: tensors with channels are coupled, per-channel parameters sliced."""
        out_rank = len(list(op.result(0).shape))
        with_channels, params, others = [], [], []
        for i in range(op.num_operands()):
            v = op.operand_source(i)
            if not _present(v):
                continue
            if self._segs(v):
                with_channels.append(self._segs(v))
            elif v.id in self.param_of:
                params.append(v)
            else:
                others.append(v)
        if not with_channels:
            return
        segs = with_channels[0]
        width = sum(s.width for s in segs)
        # The channel axis counted from the right, which broadcasting lines up.
        axes = {self.channel_axis(op.operand_source(i)) - len(list(op.operand_source(i).shape))
                for i in range(op.num_operands()) if self._segs(op.operand_source(i))}
        if len(axes) > 1:
            return self.unknown(op, f"`{op.name()}` combines tensors with channels on different axes")
        axis = out_rank + axes.pop()
        for other in with_channels[1:]:
            self._couple(segs, other, f"`{op.name()}` combines tensors whose channels do not line up")
        for v in others:
            if _channel_dim(v, out_rank, axis) not in (None, 1):
                # Something slimkit did not trace is combined channel by channel with these channels.
                self._block(segs, f"`{op.name()}` combines them with a tensor slimkit cannot follow")
        for v in params:
            size = _channel_dim(v, out_rank, axis)
            if size in (None, 1):
                continue
            _, owner = self._param(v)
            if owner is None or len(owner[2]) != 1 or size != width or owner[2][0] != width:
                return self.unknown(op, f"`{op.name()}` with a parameter that is not one value per channel")
            self._add_slices(owner[0], owner[1], 0, segs)
        self.set_channels(op.result(0), segs, axis)

    def _couple(self, a, b, reason):
        """Channel i of `a` is channel i of `b`: their nodes must be pruned with the same indices."""
        if _covers_whole_nodes(a, b, self.nodes):
            for sa, sb in zip(a, b):
                self._union(sa.node, sb.node)
        else:
            self._block(list(a) + list(b), reason)

    def pool(self, op):
        if op.attrs().get("data_format", "NCHW") != "NCHW" and self._segs(op.operand_source(0)):
            return self.unknown(op, "channels-last pooling is not followed")
        return ops.PassThrough().visit(self, op)

    def reshape(self, op):
        x = op.operand_source(0)
        if _present(x) and x.id in self.pending:
            return self._shuffle(op)
        segs = self._segs(x)
        if not segs:
            return
        src, dst = list(x.shape), list(op.result(0).shape)
        if self.channel_axis(x) != 1:
            # Channels last ([N, L, C] tokens <-> [N, H, W, C]): only the axes before them may regroup.
            if self.channel_axis(x) == len(src) - 1 and src[-1] == dst[-1] > 0 and src[0] == dst[0] and len(dst) > 2:
                return self.set_channels(op.result(0), segs, len(dst) - 1)
            return self.unknown(op, f"reshaped from {src} to {dst} with channels on axis {self.channel_axis(x)}: "
                                    "not followed")
        out = _reshape_segs(segs, src, dst)
        regrouped = out is None and _splits_channels(src, dst)
        if out is not None or regrouped:
            self._note_fixed_shape(op, segs)
        if regrouped:
            # [N, C, ...] -> [N, a, b, ...]: the first step of a channel shuffle, followed to its end.
            self.pending[op.result(0).id] = (list(segs), dst[1], dst[2], False)
            return None
        if out is None:
            return self.unknown(op, f"reshaped from {src} to {dst}: the channel order after it is not followed")
        self.info[op.result(0).id] = out

    def _note_fixed_shape(self, op, segs):
        # A size written into the forward ([-1, 2048]) looks the same in the trace as one
        # computed from x.shape: `probe_fixed_shapes` tells them apart by trying.
        fixed = _constant(op.operand_source(1)) if op.num_operands() > 1 else None
        if isinstance(fixed, list) and len(fixed) >= 2 and fixed[1] > 0:
            self.fixed_shapes.append((f"`{op.name()}` to the fixed shape {[int(d) for d in fixed]}", list(segs)))

    def unknown_view(self, op, segs, reason):
        """Block the channels of a shuffle view `op` reads (they are not in `channels`) and what reaches it."""
        self._block(segs, reason)
        self.unknown(op, reason)

    def _shuffle(self, op):
        """The reshape back of [N, a, b, ...] -> transpose(0, 2, 1, ...) -> [N, a*b, ...] (ShuffleNet).

        Output channel j*a + i is input channel i*b + j. Removing channels keeps that order only
        if each of the a sub-blocks (b consecutive channels) keeps the same positions and as many:
        the sub-blocks' producers are pruned with the same indices (one layer per sub-block), or
        one layer spanning all of them keeps the same positions in each (`Group.aligned`).
        """
        x = op.operand_source(0)
        segs, a, b, done = self.pending[x.id]
        dst = list(op.result(0).shape)
        if not done or len(dst) != len(list(x.shape)) - 1 or dst[1] != a * b:
            return self.unknown_view(op, segs, f"regrouped channels [N, {a}, {b}, ...] reshaped to {dst}: only a "
                                               "channel shuffle back to [N, C, ...] is followed")
        sub = [_take(segs, i * b, b) for i in range(a)]
        if any(part is None for part in sub):
            return self.unknown_view(op, segs, "a channel shuffle that cuts through flattened features of a channel")
        if not self._align(sub, a):
            return self.unknown_view(
                op, segs, f"a channel shuffle of {a} sub-blocks that cannot keep the same positions (they mix "
                          "parts of several layers' outputs): removing channels would reorder the rest")
        self._note_fixed_shape(op, segs)
        columns = [_positions(part) for part in sub]
        self.info[op.result(0).id] = _compress([columns[i][j] for j in range(b) for i in range(a)])

    def _align(self, sub, a):
        """Make the `a` sub-blocks `sub` keep the same positions; False when that cannot be expressed."""
        first = sub[0]
        nodes = {s.node for part in sub for s in part}
        if len(nodes) == 1 and all(len(part) == 1 for part in sub):
            node, (s0, *_) = nodes.pop(), first
            runs = [(p[0].start, p[0].count, p[0].repeat) for p in sub]
            if s0.start == 0 and self.nodes[node].channels == a * s0.count and runs == [
                    (i * s0.count, s0.count, s0.repeat) for i in range(a)]:
                self.constraints.setdefault(node, []).append((a, True))
                return True
            return False
        if not all(_covers_whole_nodes(first, part, self.nodes) for part in sub[1:]):
            return False
        for part in sub[1:]:
            self._couple(first, part, "")
        sub[1:] = [first] * (a - 1)  # the same channels now: the output lists them once per sub-block
        return True

    def concat(self, op):
        parts = op.operand_source(0)
        combine = parts.get_defining_op()
        axis = _constant(op.operand_source(1))
        inputs = [combine.operand_source(i) for i in range(combine.num_operands())] if combine else []
        if not inputs or axis is None:
            return self.unknown(op, "`concat` whose inputs or axis are not known")
        rank = len(list(op.result(0).shape))
        axis = int(axis) % rank
        segs_in = [self._segs(v) for v in inputs]
        if axis == 1 and all(segs_in):
            self.info[op.result(0).id] = [s for segs in segs_in for s in segs]
        elif axis != 1 and all(segs_in):
            for other in segs_in[1:]:
                self._couple(segs_in[0], other, "`concat` along a non-channel axis of tensors with other channels")
            self.info[op.result(0).id] = list(segs_in[0])
        else:
            for segs in segs_in:
                self._block(segs or [], "concatenated with a tensor slimkit cannot follow")
            self._opaque(op.result(0), "concatenation with a tensor slimkit cannot follow")

    def split(self, op):
        segs = self._segs(op.operand_source(0))
        if not segs:
            return
        axis = _constant(op.operand_source(op.num_operands() - 1))
        rank = len(list(op.operand_source(0).shape))
        if axis is None:
            return self.unknown(op, "`split` along an unknown axis")
        self.vectors[op.result(0).id] = (segs, int(axis) % rank, op)

    def unpack_split(self, op):
        entry = self.vectors.get(op.operand_source(0).id)
        if entry is None:
            return
        segs, axis, split_op = entry
        if axis != 1:
            for i in range(op.num_results()):
                self.info[op.result(i).id] = list(segs)
            return
        sizes = [list(op.result(i).shape)[1] for i in range(op.num_results())]
        if len(sizes) > 1 and len(set(sizes)) == 1 and sizes[0] > 0:
            self._equal_parts(segs, len(sizes), split_op)
        else:
            # Unequal sections are sizes written into the forward: removing channels would break them.
            self._block(segs, "split along channels into parts of fixed size")
        offset = 0
        for i in range(op.num_results()):
            size = list(op.result(i).shape)[1]
            part = _take(segs, offset, size)
            if part is None:
                return self.unknown(split_op, "`split` through flattened features of one channel")
            self.info[op.result(i).id] = part
            offset += size

    def _equal_parts(self, segs, parts, split_op):
        """`paddle.split(x, n, axis=1)` / `paddle.chunk`: the parts must stay equal, so they lose as many channels.

        One layer's whole output loses as many channels from each part (`Group.blocks`); parts
        that are whole outputs of different layers are pruned with the same indices.
        """
        width = sum(s.width for s in segs) // parts
        pieces = [_take(segs, i * width, width) for i in range(parts)]
        if any(p is None for p in pieces):
            return self._block(segs, "split along channels through the flattened features of a channel")
        s0 = segs[0]
        if len(segs) == 1 and s0.start == 0 and s0.count == self.nodes[s0.node].channels and s0.count % parts == 0:
            self.constraints.setdefault(s0.node, []).append((parts, False))
        elif all(_covers_whole_nodes(pieces[0], p, self.nodes) for p in pieces[1:]):
            for p in pieces[1:]:
                self._couple(pieces[0], p, "")
        else:
            return self._block(segs, f"split along channels into {parts} equal parts that mix several layers' "
                                     "channels: they cannot lose channels evenly")
        sections = _constant(split_op.operand_source(1)) if split_op.name() == "pd_op.split" else None
        if isinstance(sections, list):
            # Sections from x.shape[1] // 2 and [8, 8] written in the forward trace alike: probed.
            self.fixed_shapes.append((f"`pd_op.split` into the sections {[int(v) for v in sections]}", list(segs)))
        return None

    def slice(self, op):
        segs = self._segs(op.operand_source(0))
        if not segs:
            return
        attrs = op.attrs()
        axes = list(attrs.get("axes", []))
        src, dst = list(op.operand_source(0).shape), list(op.result(0).shape)
        starts = _constant(op.operand_source(1))
        if 1 not in axes or src[1] == dst[1]:
            if len(dst) == len(src):
                self.info[op.result(0).id] = list(segs)
                return
            return self.unknown(op, "`slice` that drops axes")
        start = starts[axes.index(1)] if isinstance(starts, list) else None
        if start is None or len(axes) != 1 or len(dst) != len(src):
            return self.unknown(op, "`slice` of channels with unknown bounds")
        start = start % src[1] if start < 0 else min(start, src[1])
        self._block(segs, "sliced along channels at fixed positions")
        part = _take(segs, start, dst[1])
        if part is None:
            return self.unknown(op, "`slice` through flattened features of one channel")
        self.info[op.result(0).id] = part

    def reduce(self, op):
        x = op.operand_source(0)
        segs = self._segs(x)
        if not segs:
            return
        src, dst = list(x.shape), list(op.result(0).shape)
        axes = _constant(op.operand_source(1)) if op.num_operands() > 1 else op.attrs().get("axis")
        axes = [axes] if isinstance(axes, (int, float)) else list(axes or [])
        axes = [int(a) % len(src) for a in axes]
        if axes and 0 not in axes and 1 not in axes and len(dst) >= 2 and dst[1] == src[1]:
            self.info[op.result(0).id] = list(segs)
        else:
            self.unknown(op, f"`{op.name()}` reduces over the channel axis")

    # -- result
    def uncalled(self):
        """Conv/linear layers no followed program has called."""
        return {name for name in self.weighted_layers if name not in self.layer_node and name not in self.followers}

    def fixed_shape_groups(self, graph):
        """[(description, [Group])] for every reshape/split to constant sizes, with the prunable groups reaching it."""
        by_class = {self._find(self.layer_node[g.roots[0]]): g for g in graph.groups}
        out = []
        for description, segs in self.fixed_shapes:
            groups = [by_class.get(self._find(s.node)) for s in segs]
            groups = list({id(g): g for g in groups if g is not None and g.prunable}.values())
            if groups:
                out.append((description, groups))
        return out

    def graph(self, input_shape, output_shapes):
        classes = {}
        for node in self.nodes:
            classes.setdefault(self._find(node.index), []).append(node)
        slices_by_class = {}
        for node_index, s in self.slices:
            slices_by_class.setdefault(self._find(node_index), []).append((node_index, s))
        groups, tensor_shapes = [], {}
        shapes = {(layer, tensor): shape for layer, tensor, shape in self.param_owner.values()}
        for _, s in self.slices:
            tensor_shapes[(s.layer, s.tensor)] = shapes[(s.layer, s.tensor)]
        for root, nodes in sorted(classes.items()):
            layered = [n for n in nodes if n.layer]
            if not layered:
                continue
            reasons = []
            for n in nodes:
                reasons += [r for r in n.reasons if r not in reasons]
            if any(n.reasons == ["model input"] for n in nodes):
                reasons = [r if r != "model input" else "coupled with the model input (e.g. an identity shortcut)"
                           for r in reasons]
            members, slices = [], []
            for _node_index, s in slices_by_class.get(root, []):
                # Every node of a class has the same channel indices; slices refer to class channels.
                slices.append(s)
                key = (s.layer, s.tensor, s.axis)
                if key not in members:
                    members.append(key)
            roots = [n.layer for n in layered]
            found = {c for n in nodes for c in self.constraints.get(n.index, [])}
            blocks = sorted({b for b, _ in found})
            if len(blocks) > 1:
                reasons.append(f"its channels pass grouped convolutions with different group counts {blocks}")
            group_blocks = blocks[0] if len(blocks) == 1 else 1
            groups.append(Group(name=roots[0], roots=roots, channels=layered[0].channels, members=members,
                                prunable=not reasons, reason="; ".join(reasons[:3]), slices=slices,
                                channel_multiple=group_blocks, blocks=group_blocks,
                                aligned=any(aligned for _, aligned in found)))
        class_group = {self._find(self.layer_node[g.roots[0]]): g for g in groups}
        followers = {}
        for layer, nodes in self.followers.items():
            owners = [class_group.get(self._find(n)) for n in nodes]
            same = all(o is owners[0] for o in owners)
            followers[layer] = owners[0] if same else None
        seen = {r for g in groups for r in g.roots} | set(followers)
        why = f" (the training forward, which might, cannot be traced: {self.training_failed})" \
            if self.training_failed else ""
        unused = {name: f"{kind} not called by forward on input_shape {list(input_shape)}{why}"
                  for name, kind in self.weighted_layers.items() if name not in seen}
        return DependencyGraph(groups, input_shape, output_shapes, tensor_shapes, unused, followers)


def _one_node_per_group(segs, groups, in_per_group, nodes):
    """The segments when each of a grouped conv's `groups` input runs is one whole node, else None."""
    if len(segs) != groups or any(s.repeat != 1 or s.start != 0 or s.count != in_per_group
                                  or nodes[s.node].channels != in_per_group for s in segs):
        return None
    return list(segs)


def _present(value):
    # Optional operands left out (an interpolate without a size tensor) are empty values without an id.
    return value is not None and value.initialized()


def _channel_dim(value, out_rank, channel_axis=1):
    """Size of `value` along the output's channel axis after broadcasting (None: no such axis)."""
    shape = list(value.shape)
    axis = channel_axis - (out_rank - len(shape))
    return shape[axis] if 0 <= axis < len(shape) else None


def _covers_whole_nodes(a, b, nodes):
    # Coupling is only exact when both sides list the same channels of whole nodes, in order.
    if len(a) != len(b):
        return False
    for sa, sb in zip(a, b):
        if (sa.start, sa.count, sa.repeat) != (sb.start, sb.count, sb.repeat):
            return False
        if sa.start != 0 or sa.count != nodes[sa.node].channels or sb.count != nodes[sb.node].channels:
            return False
    return True


def _take(segs, offset, size):
    """The segments covering features [offset, offset+size) of the channel axis; None if a cut splits a channel."""
    out, pos = [], 0
    for s in segs:
        lo, hi = max(offset, pos), min(offset + size, pos + s.width)
        if lo < hi:
            if (lo - pos) % s.repeat or (hi - pos) % s.repeat:
                return None
            first = (lo - pos) // s.repeat
            out.append(_Seg(s.node, s.start + first, (hi - lo) // s.repeat, s.repeat))
        pos += s.width
    return out


def _reshape_segs(segs, src, dst):
    if len(src) >= 2 and len(dst) >= 2 and src[:2] == dst[:2] and src[1] > 0:
        # Batch and channels kept: the rest (sizes the trace may leave symbolic) only regroups space.
        return list(segs)
    if any(d <= 0 for d in src + dst) or len(src) < 2 or len(dst) < 2 or src[0] != dst[0]:
        return None
    spatial_in, spatial_out = math.prod(src[2:]), math.prod(dst[2:])
    if dst[1] == src[1] and spatial_in == spatial_out:
        return list(segs)  # only spatial axes changed (e.g. [N,C,1,1] -> [N,C])
    if len(dst) == 2 and dst[1] == src[1] * spatial_in:
        return [_Seg(s.node, s.start, s.count, s.repeat * spatial_in) for s in segs]  # flatten
    if len(src) == 2 and dst[1] * spatial_out == src[1] and all(s.repeat % spatial_out == 0 for s in segs):
        return [_Seg(s.node, s.start, s.count, s.repeat // spatial_out) for s in segs]  # unflatten
    return None


def _splits_channels(src, dst):
    """[N, C, rest] -> [N, a, b, rest] with a*b = C, a and b > 1 (the first reshape of a channel shuffle)."""
    return (len(dst) == len(src) + 1 and len(src) >= 2 and min(src + dst) > 0 and dst[0] == src[0]
            and dst[1] * dst[2] == src[1] and dst[3:] == src[2:] and dst[1] > 1 and dst[2] > 1)


def _positions(segs):
    """(node, channel) of every feature along the channel axis."""
    return [(s.node, s.start + k // s.repeat) for s in segs for k in range(s.width)]


def _compress(positions):
    """The segments of `positions` ((node, channel) per feature): runs of one channel, then of consecutive ones."""
    out, i = [], 0
    while i < len(positions):
        node, channel = positions[i]
        repeat = 1
        while i + repeat < len(positions) and positions[i + repeat] == (node, channel):
            repeat += 1
        last = out[-1] if out else None
        if last and (last.node, last.repeat, last.start + last.count) == (node, repeat, channel):
            out[-1] = _Seg(node, last.start, last.count + 1, repeat)
        else:
            out.append(_Seg(node, channel, 1, repeat))
        i += repeat
    return out


def _constant(value):
    """The value of a `full`/`full_int_array` op output, else None."""
    op = value.get_defining_op()
    if op is None or op.name() not in ("pd_op.full", "pd_op.full_int_array"):
        return None
    return op.attrs().get("value")
