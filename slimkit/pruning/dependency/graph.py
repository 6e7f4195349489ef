"""The result of a dependency analysis: groups of channels that are pruned together, and where they live."""

import dataclasses

import numpy as np

from ...core.errors import ModelError, suggest


@dataclasses.dataclass
class Group:
    """Output channels of one or more layers that must be pruned together.

    `members` lists every (layer, tensor, axis) that shrinks with the channels, and (layer, None,
    None) for a layer whose attributes change with them (the attention layer whose head count a
    "heads" group changes, updated by its removal hook).
    """

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
    # What the channels are: "heads" (attention heads: each channel is one head, `head_dim` features
    # wide in every tensor), "embed" (a token stream attention reads, or any width LayerNorms
    # normalize: its pruning is not exact), "mlp" (the hidden width of linear layers on tokens),
    # "channels" (conv filters and everything else). `prune(prune_heads=..., ...)` chooses by it.
    kind: str = "channels"
    # {layer: split sections (a tuple of sizes) or None (a head count)}: layers whose attributes hold
    # sizes of these channels; their removal hooks get the change (see slimkit.pruning.layer_hooks).
    sizes: dict = dataclasses.field(default_factory=dict, repr=False)


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

    def positions(self, channels):
        """The positions on `axis` of this slice's channels `channels` (counted from the slice's first)."""
        channels = np.asarray(channels, dtype=np.int64)
        return (self.offset + channels[:, None] * self.repeat + np.arange(self.repeat)[None, :]).ravel()

    def dropped_positions(self, mask):
        """The positions on `axis` of the channels the group's keep `mask` drops from this slice."""
        return self.positions(np.nonzero(~mask[self.start:self.start + self.count])[0])


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
        self._by_root.update({g.name: g for g in groups})  # a part of a layer's channels: `layer[start:end]`
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
        raise ModelError(f"no conv/linear layer named {layer_name!r} in the model", suggest(layer_name, names))

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
    """The weights of `group`'s root layers, one row per channel (criterion input): per root, [channels, ...].

    A root's output slices sit side by side in its row: a head's rows of q, k and v in a qkv layer.
    """
    layers = dict(model.named_sublayers(include_self=True))
    parts = {}
    for s in group.slices:
        if s.role == "out":
            w = np.moveaxis(layers[s.layer].weight.numpy(), s.axis, 0)
            parts.setdefault(s.layer, []).append((s, w[s.offset:s.offset + s.count * s.repeat]))
    return [channel_rows(group.channels, found) for found in parts.values()]


def channel_rows(channels, parts):
    """[channels, features] of (ChannelSlice, values [count * repeat, ...]) parts, each at its channels.

    Parts side by side; where a part does not cover a channel its columns are zero. A single part
    of one feature per channel keeps its own shape ([channels, ...]).
    """
    if len(parts) == 1 and parts[0][0].start == 0 and parts[0][0].count == channels and parts[0][0].repeat == 1:
        return parts[0][1]  # one root, one slice: the weight as the layer holds it (filters stay [in, kh, kw])
    flat = [(s, v.reshape(s.count, -1)) for s, v in parts]
    out = np.zeros((channels, sum(v.shape[1] for _, v in flat)), dtype=flat[0][1].dtype)
    column = 0
    for s, v in flat:
        out[s.start:s.start + s.count, column:column + v.shape[1]] = v
        column += v.shape[1]
    return out
