"""The result of a dependency analysis: groups of channels that are pruned together, and where they live."""

import dataclasses

import numpy as np

from ...core.errors import ModelError
from ...core.schema import _suggest


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

    def __init__(self, groups, input_shape, output_shapes, tensor_shapes, unused=None, followers=None,
                 fixed_slices=()):
        self.groups = groups
        self.input_shape = list(input_shape)
        self.output_shapes = output_shapes  # model output shapes, to check a pruned model still runs
        self.tensor_shapes = tensor_shapes  # {(layer, tensor): shape} of every sliced tensor, to detect a stale graph
        self.unused = dict(unused or {})  # conv/linear layers the traced forward never called
        # Depthwise convs whose output carries another group's channels -> that Group (None: several groups).
        self.followers = dict(followers or {})
        # Slices of channels no conv/linear layer produces (the model input, an op slimkit does not
        # follow) that reach a sliced tensor, e.g. concatenated with a layer's output: they stay whole.
        self.fixed_slices = list(fixed_slices)
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


def build_graph(walk, input_shape, output_shapes):
    """The DependencyGraph of what `walk` (a ChannelWalk) saw: one Group per class of coupled layer outputs."""
    classes = {}
    for node in walk.nodes:
        classes.setdefault(walk.class_of(node.index), []).append(node)
    slices_by_class = {}
    for node_index, s in walk.slices:
        slices_by_class.setdefault(walk.class_of(node_index), []).append(s)
    shapes = {(layer, tensor): shape for layer, tensor, shape in walk.param_owner.values()}
    tensor_shapes = {(s.layer, s.tensor): shapes[(s.layer, s.tensor)] for _, s in walk.slices}
    layered = sorted(root for root, nodes in classes.items() if any(n.layer for n in nodes))
    groups = [_group(walk, classes[root], slices_by_class.get(root, [])) for root in layered]
    fixed = [s for root, slices in sorted(slices_by_class.items()) if root not in set(layered) for s in slices]
    return DependencyGraph(groups, input_shape, output_shapes, tensor_shapes, _unused(walk, groups, input_shape),
                           _followers(walk, groups), fixed)


def _group(walk, nodes, slices):
    layered = [n for n in nodes if n.layer]
    reasons = []
    for n in nodes:
        reasons += [r for r in n.reasons if r not in reasons]
    if any(n.reasons == ["model input"] for n in nodes):
        reasons = [r if r != "model input" else "coupled with the model input (e.g. an identity shortcut)"
                   for r in reasons]
    # Every node of a class has the same channel indices; slices refer to class channels.
    members = list(dict.fromkeys((s.layer, s.tensor, s.axis) for s in slices))
    roots = [n.layer for n in layered]
    found = {c for n in nodes for c in walk.constraints.get(n.index, [])}
    blocks = sorted({b for b, _ in found})
    if len(blocks) > 1:
        reasons.append(f"its channels pass grouped convolutions with different group counts {blocks}")
    group_blocks = blocks[0] if len(blocks) == 1 else 1
    return Group(name=roots[0], roots=roots, channels=layered[0].channels, members=members,
                 prunable=not reasons, reason="; ".join(reasons[:3]), slices=list(slices),
                 channel_multiple=group_blocks, blocks=group_blocks,
                 aligned=any(aligned for _, aligned in found))


def _followers(walk, groups):
    class_group = {walk.class_of(walk.layer_node[g.roots[0]]): g for g in groups}
    followers = {}
    for layer, nodes in walk.followers.items():
        owners = [class_group.get(walk.class_of(n)) for n in nodes]
        followers[layer] = owners[0] if all(o is owners[0] for o in owners) else None
    return followers


def _unused(walk, groups, input_shape):
    seen = {r for g in groups for r in g.roots} | set(walk.followers)
    why = f" (the training forward, which might, cannot be traced: {walk.training_failed})" \
        if walk.training_failed else ""
    return {name: f"{kind} not called by forward on input_shape {list(input_shape)}{why}"
            for name, kind in walk.weighted_layers.items() if name not in seen}
