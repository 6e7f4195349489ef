"""The channel walk: every op of a traced program, in order, told what happens to the channels reaching it.

`ChannelWalk(model).run(program, outputs)` visits each op and lets the op's handler (the
registry in `slimkit.pruning.ops`, or `handlers=` given to one analysis) describe the
channels of its outputs with the walk's public methods below. What the handlers say adds
up to a union-find over *nodes* (a conv/linear layer's output channels, the model input,
or channels of something not followed):

- a conv/linear layer's output channels start a node; they flow through BN, activations,
  pooling, dropout and per-channel parameters to the layers that consume them (their
  input-channel axis is sliced);
- `add`/`multiply`/... of two tensors couples their nodes (residual partners, SE gates):
  they are pruned with the same indices, as one Group;
- structural rules (slimkit.pruning.dependency.layer_rules and .shape_rules) follow convs
  of every kind, linear layers, norms, transposes, reshapes, channel shuffles, concat,
  split, slice and reductions;
- anything else (ops slimkit does not know, reshapes it cannot follow, the model's
  output) makes the channels that reach it unprunable, with the reason.

`graph()` turns the classes into the `DependencyGraph` of `Group`s that removal cuts.
"""

import math

import paddle

from .. import ops
from . import attention_rules, axis_rules, layer_rules, shape_rules  # noqa: F401  (they register the structural rules)
from . import grouping, params, scopes
from .coupling import ChannelClasses
from .graph import ChannelSlice
from .segments import Seg, present
from .trace import PARAM_VIEWS


class ChannelWalk(ChannelClasses):
    """The walk over one model's traced programs; op handlers call its public methods."""

    def __init__(self, model, handlers=None):
        super().__init__()
        self.param_owner = {}
        for prefix, layer in model.named_sublayers(include_self=True):
            for name, p in layer._parameters.items():
                if p is not None:
                    self.param_owner[p.name] = (prefix, name, list(p.shape))
        self.layer_types = {prefix: type(layer).__name__ for prefix, layer in model.named_sublayers(include_self=True)}
        self.weighted_layers = {prefix: type(layer).__name__ for prefix, layer in model.named_sublayers()
                                if isinstance(layer, (paddle.nn.Linear, paddle.nn.layer.conv._ConvNd))}
        # This analysis's own handlers, looked up before the registry (`analyze(..., handlers={...})`).
        self.handlers = {ops.op_key(name): ops.check_handler(h) for name, h in (handlers or {}).items()}
        self.slices = []  # (node, ChannelSlice) pairs
        self.info = {}  # value id -> list of Seg along the value's channel axis
        self.axes = {}  # value id -> its channel axis when not 1 (channels-last blocks, tokens)
        self.param_of = {}  # value id -> parameter name, for parameters and views of them
        self.notes = {}  # value id -> what a rule left on a value for a later op (views, split vectors)
        self.derived = {}  # value id -> ParamAxes of a tensor computed from one parameter alone
        self.owners = {}  # node -> {layer: split sections or None}: attributes that hold sizes of its channels
        self.scopes = {}  # call path of layer classes -> layer name, for the program being walked
        self.layer_node = {}  # layer name -> its output node (a layer called twice keeps one node)
        self.layer_inputs = {}  # layer name -> input segments of its first call
        self.followers = {}  # depthwise conv name -> nodes whose channels its output carries
        self.fixed_shapes = []  # (description, segments) of reshapes/splits to sizes constant in the trace
        self.training_failed = ""  # why the training-mode forward could not be followed, if it was tried
        self.class_groups = {}  # class root -> its Group, once `graph` built them

    # -- walking the program
    def run(self, program, outputs):
        """Follow one traced program; a second one (the training forward) adds to the same layers' nodes."""
        self.info, self.axes, self.param_of, self.notes, self.derived = {}, {}, {}, {}, {}  # per program
        self.scopes = scopes.layer_scopes(program, self.param_owner, self.layer_types)
        for op in program.global_block().ops:
            self._visit(op)
        for v in outputs:
            view = self.view(v)
            segs = self.info.get(v.id) or (view.segs if view is not None else None)
            if segs:
                self.block(segs, "its channels are the model's output")

    def handler(self, kind):
        """The handler of op `kind` for this walk: its own `handlers`, else the registry's (or None)."""
        return self.handlers.get(ops.op_key(kind)) or ops.handler_for(kind)

    def _visit(self, op):
        kind = op.name().split(".", 1)[1] if op.name().startswith("pd_op.") else op.name()
        if kind == "builtin.parameter":
            name = op.attrs()["parameter_name"]
            self.param_of[op.result(0).id] = name
            self.derived[op.result(0).id] = params.of_parameter(name, list(op.result(0).shape))
        elif kind == "data":
            shape = list(op.result(0).shape)
            if len(shape) >= 2 and shape[1] > 0:
                self.info[op.result(0).id] = [Seg(self._new_node(shape[1], reason="model input"), 0, shape[1])]
        elif self._from_parameter(op, kind):
            return None
        else:
            handler = self.handler(kind)
            if handler is None:
                return self.unknown(op, f"its channels reach `{op.name()}`, which slimkit does not follow "
                                        "(teach it with slimkit.pruning.ops.register_op)")
            if self._refuses_views(op, handler):
                return None
            moved = [i for i in range(op.num_operands()) if self.channels(op.operand_source(i))
                     and self.channel_axis(op.operand_source(i)) != 1]
            if moved and not getattr(handler, "any_axis", False):
                return self.unknown(op, f"its channels reach `{op.name()}` on axis "
                                        f"{self.channel_axis(op.operand_source(moved[0]))}, and that op is only "
                                        "followed with channels on axis 1")
            handler.visit(self, op)

    def _from_parameter(self, op, kind):
        """A reshape, transpose, gather, ... of a parameter alone: its axes are followed (params.py)."""
        x = op.operand_source(0) if op.num_operands() else None
        source = self.param_axes(x) if x is not None else None
        if source is None or kind not in params.DERIVED_OPS or any(
                self.channels(op.operand_source(i)) or self.view(op.operand_source(i))
                for i in range(op.num_operands())):
            return False
        if kind in PARAM_VIEWS and x.id in self.param_of:
            self.param_of[op.result(0).id] = self.param_of[x.id]  # still the parameter (Linear weights)
        derived = params.derive(op, kind, source)
        if derived is not None:
            self.derived[op.result(0).id] = derived
        return True

    def _refuses_views(self, op, handler):
        # A view (channels regrouped into several axes, e.g. [N, a, b, ...]) is followed only by
        # handlers that say they accept views; shape queries pass, anything else keeps it whole.
        views = [self.view(op.operand_source(i)) for i in range(op.num_operands())]
        views = [v for v in views if v is not None]
        passes = isinstance(handler, ops.Ignore) and op.name() != "builtin.combine"
        if not views or passes or getattr(handler, "accepts_views", False):
            return False
        for view in views:
            self.block(view.segs, view.refused(op.name()))
        self.opaque(op)
        return True

    # -- the public walk API: what an op handler may read and say
    def channels(self, value):
        """The channel segments (`Seg`s) `value` carries along its channel axis, or None (not followed)."""
        return self.info.get(value.id) if present(value) else None

    def set_channels(self, value, segs, axis=1):
        """`value` carries `segs` (as `channels` returned them for an input) along `axis`."""
        self.info[value.id] = list(segs)
        if axis % max(1, len(list(value.shape))) != 1:
            self.axes[value.id] = axis % len(list(value.shape))
        else:
            self.axes.pop(value.id, None)

    def channel_axis(self, value):
        """The axis along which `value` carries its channels (1 unless a transpose moved them)."""
        return self.axes.get(value.id, 1) if present(value) else 1

    def opaque(self, op):
        """The op's outputs carry channels slimkit does not follow (whatever consumes them keeps them whole)."""
        for i in range(op.num_results()):
            self.untraced(op.result(i), f"produced by `{op.name()}`, which slimkit does not follow")

    def untraced(self, value, reason):
        """`value`'s channels are new ones nothing can remove (`reason`), so its consumers keep their inputs."""
        try:
            shape = list(value.shape)
        except Exception:  # vectors and other non-tensor results have no shape
            return
        if len(shape) >= 2 and shape[1] > 0:
            self.info[value.id] = [Seg(self._new_node(shape[1], reason=reason), 0, shape[1])]

    def new_channels(self, value, axis=1):
        """`value`'s channels along `axis` are new ones, free to go (a constant padding): their segments."""
        segs = [Seg(self._new_node(list(value.shape)[axis]), 0, list(value.shape)[axis])]
        self.set_channels(value, segs, axis)
        return segs

    def unknown(self, op, reason):
        """Block every channel reaching `op` (views too) with `reason`; its outputs are not followed."""
        segs = []
        for i in range(op.num_operands()):
            value = op.operand_source(i)
            view = self.view(value)
            segs += (self.channels(value) or []) + (view.segs if view is not None else [])
        self.block(segs, reason)
        self.opaque(op)

    def note(self, value, data):
        """Leave `data` on `value` for the op that reads it next (a split's parts, a view under way)."""
        self.notes[value.id] = data

    def noted(self, value):
        """What `note` left on `value`, or None."""
        return self.notes.get(value.id) if present(value) else None

    def view(self, value):
        """The view `value` is (a `note` with `segs` and `refused(op_name)`, e.g. a shuffle under way), or None."""
        data = self.noted(value)
        return data if data is not None and hasattr(data, "refused") else None

    def fixed_shape(self, description, segs):
        """A size written into the forward may depend on these channels: probed after the walk (probe.py)."""
        self.fixed_shapes.append((description, list(segs)))

    def param(self, value):
        """(parameter name, (layer, tensor, shape)) when `value` is a layer parameter (or a view of one), else Nones."""
        name = self.param_of.get(value.id) if present(value) else None
        return (name, self.param_owner.get(name)) if name else (None, None)

    def is_param(self, value):
        return present(value) and value.id in self.param_of

    def param_axes(self, value):
        """The `params.ParamAxes` of a parameter or a tensor computed from one alone, else None."""
        return self.derived.get(value.id) if present(value) else None

    def owner_of(self, axes):
        """(layer, tensor, shape) of the parameter a `ParamAxes` comes from (None if no layer owns it)."""
        return self.param_owner.get(axes.name)

    def fold(self, node, unit, count, kind=None):
        """Node `node`'s channels leave in whole units: channel c is unit c // unit, one of `count` folded
        alike (unit u is channel u % count of the node returned); None when `node` is folded otherwise.

        A qkv layer's output [3 * heads * head_dim] folds with unit head_dim and count heads: removing a
        head removes it from q, k and v. `kind` ("heads") becomes the Group's kind.
        """
        if node in self.folds:
            folded, old_unit, old_count = self.folds[node]
            return folded if (old_unit, old_count) == (unit, count) else None
        if self.nodes[node].channels % (unit * count) or node in self.parts:
            return None
        folded = self._new_node(count)
        self.folds[node] = (folded, unit, count)
        if kind:
            self.kinds[folded] = {kind}
        layer = self.nodes[node].layer
        if kind == "heads" and layer in self.layer_inputs:
            # The stream the attention reads: an embedding width. Its forward may compute head sizes
            # from that width (head_dim = C // num_heads), which only trying tells.
            self.mark(self.layer_inputs[layer], "embed")
            self.fixed_shape(f"the head sizes of the attention after `{layer}`", self.layer_inputs[layer])
        return folded

    def owner_layer(self, op):
        """The name of the layer whose forward emitted `op` (scopes.py), or None when it cannot be told."""
        return self.scopes.get(scopes.scope_of(op))

    def attribute_owner(self, segs, layer, sections=None):
        """`layer`'s attributes hold sizes of these channels: its removal hook gets the change.

        `sections` are the constant sizes a split of them uses (None: a head count). `Group.members`
        lists the layer as (layer, None, None), `Group.sizes` maps it to the sections.
        """
        if layer is not None:
            for s in segs or []:
                self.owners.setdefault(s.node, {})[layer] = tuple(sections) if sections else None

    def add_slices(self, layer, tensor, axis, segs, offset=0, role="channel"):
        """`layer`.`tensor` holds the channels of `segs` along `axis`, from `offset` on (they are cut with them)."""
        for s in segs:
            self.slices.append((s.node, ChannelSlice(layer, tensor, axis, offset, s.start, s.count, s.repeat, role)))
            offset += s.width

    def add_slice(self, node, channel_slice):
        """One explicit `ChannelSlice` of node `node` (runs repeated per conv group, ...)."""
        self.slices.append((node, channel_slice))

    def root(self, op, layer, tensor, axis, channels, value_axis=1):
        """The op's first result is `layer`'s output channels (`tensor` holds them on `axis`); returns their node.

        One node per layer, even when the layer is called twice.
        """
        if layer not in self.layer_node:
            self.layer_node[layer] = self._new_node(channels, layer=layer)
            self.slices.append((self.layer_node[layer], ChannelSlice(layer, tensor, axis, 0, 0, channels, 1, "out")))
        node = self.layer_node[layer]
        self.set_channels(op.result(0), [Seg(node, 0, channels)], value_axis)
        return node

    def first_call(self, key, segs, reason=None):
        """True the first time `key` (a layer) reads `segs`; later calls must read the same channels (coupled)."""
        if key in self.layer_inputs:
            self.couple(self.layer_inputs[key], segs, reason or f"`{key}` is called on tensors with different channels")
            return False
        self.layer_inputs[key] = segs
        return True

    def consume(self, layer, tensor, axis, segs):
        """`layer` reads `segs` on `tensor`'s input axis `axis` (sliced with them)."""
        if self.first_call(layer, segs):
            self.add_slices(layer, tensor, axis, segs, role="in")

    def follow(self, layer, nodes):
        """Depthwise conv `layer`'s output carries the channels of `nodes` (pruning it means pruning them)."""
        self.followers[layer] = list(nodes)

    def per_channel_params(self, op, segs, operand_indices):
        """Slice the 1-D parameters among `operand_indices` with `segs`; False (op blocked) if one is not per channel.

        A one-value parameter (PReLU's shared slope, a scalar scale) applies to every channel
        alike and stays as it is.
        """
        width = sum(s.width for s in segs)
        params = []
        for i in operand_indices:
            name, owner = self.param(op.operand_source(i))
            if name is None or (owner is not None and math.prod(owner[2]) == 1):
                continue
            if owner is None or len(owner[2]) != 1 or owner[2][0] != width:
                self.unknown(op, f"`{op.name()}` has a parameter that is not one value per channel")
                return False
            params.append(owner)
        for layer in dict.fromkeys(layer for layer, _, _ in params):
            # A norm layer applied twice must see the same channels every call.
            shared = f"`{layer}` is applied to tensors with different channels"
            if self.first_call((layer, "per-channel"), segs, shared):
                for owner, tensor, _ in params:
                    if owner == layer:
                        self.add_slices(layer, tensor, 0, segs)
        return True

    # -- result
    def uncalled(self):
        """Conv/linear layers no followed program has called."""
        return {name for name in self.weighted_layers if name not in self.layer_node and name not in self.followers}

    def graph(self, input_shape, output_shapes):
        """The DependencyGraph of everything the walk saw: one Group per class of coupled layer outputs."""
        return grouping.build_graph(self, input_shape, output_shapes)

