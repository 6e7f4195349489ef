"""Removal hooks: what a layer's forward reads besides its tensors, brought in line after channels go.

`remove_channels` cuts the tensors of every group, then calls one hook per changed layer:
the layers whose own tensors were cut, and the layer holding an attention whose heads were
pruned (the innermost layer holding all of that group's tensors, e.g. `blocks.3.attn`).
Hooks are looked up by layer type, the most specific registered class of the layer's MRO
first, so a user's layer gets its own hook without editing slimkit; slimkit's are registered
the same way:

- convolutions (`_ConvNd`): `_in_channels`, `_out_channels`, and `_groups` of depthwise convs;
- `paddle.nn.MultiHeadAttention`: `num_heads` (from `q_proj` and `head_dim`), `embed_dim`,
  `kdim`, `vdim`;
- any other layer (`paddle.nn.Layer`): the feature count of per-channel layers
  (`_num_features`, `_normalized_shape`, PReLU's `_num_parameters`); for the layer holding
  pruned heads the one int attribute named like a head count (`num_heads`, `heads`,
  `n_heads`, ...) that equals the heads before; for the layer whose forward splits channels
  into equal constant sections (MixNet's `paddle.split(x, self.splitted_in_channels, 1)`) the
  one list attribute equal to the sections before.

A hook is `hook(layer, change)` with `change` a `LayerChange`; it changes plain attributes
only (ints, lists of ints): they are snapshot with the tensors, restored when removal fails,
saved by `slimkit.save_model`. A custom attention that keeps its head count elsewhere:

    from slimkit.pruning import layer_hooks

    def fix_heads(layer, change):
        (before, after), = change.heads  # of its pruned heads group
        layer.h = after
    layer_hooks.register_layer_hook(MyAttention, fix_heads)
"""

import dataclasses

import paddle

from ..core.errors import ModelError

_HOOKS = {}

HEAD_COUNT_ATTRS = ("num_heads", "_num_heads", "n_heads", "heads", "num_head", "n_head", "nhead")


@dataclasses.dataclass(frozen=True)
class GroupChange:
    """A group that lost channels and whose sizes a layer's attributes hold (a head count, split sections)."""

    group: str
    kind: str      # Group.kind: "heads" for attention heads
    before: int    # channels (heads) before
    after: int     # channels (heads) kept
    split: tuple = None  # the constant sections of a split of these channels, before (None: not a split)

    @property
    def sections(self):
        """(sections before, sections after) of the split: every part keeps its share of the channels kept."""
        return list(self.split), [s * self.after // self.before for s in self.split]


@dataclasses.dataclass
class LayerChange:
    """What removal did to one layer, for its hook."""

    name: str       # the layer's name in the model ("" for the model itself)
    before: dict    # its int attributes before removal (slimkit.core.surgery.shape_attrs)
    removed: dict   # {tensor name: {axis: positions removed}} of its own tensors
    groups: list    # [GroupChange] of the groups whose sizes its attributes hold

    @property
    def heads(self):
        """[(heads before, heads after)] of the attention head groups the layer holds."""
        return [(g.before, g.after) for g in self.groups if g.kind == "heads"]


def register_layer_hook(layer_type, hook, replace=True):
    """Call `hook(layer, change)` after removal for layers of `layer_type` (and subclasses); returns the hook.

    A type already registered is replaced unless `replace=False`, which raises ModelError instead.
    """
    if not isinstance(layer_type, type) or not issubclass(layer_type, paddle.nn.Layer):
        raise ModelError(f"a removal hook is registered for a paddle.nn.Layer subclass, got {layer_type!r}")
    if not callable(hook):
        raise ModelError(f"a removal hook must be callable as hook(layer, change), got {type(hook).__name__}")
    if not replace and layer_type in _HOOKS:
        raise ModelError(f"{layer_type.__name__} already has a removal hook", "pass replace=True to override it")
    _HOOKS[layer_type] = hook
    return hook


def unregister_layer_hook(layer_type):
    """Forget the hook of `layer_type` (its layers then get the hook of their nearest registered base class)."""
    if layer_type is not paddle.nn.Layer:  # the default stays
        _HOOKS.pop(layer_type, None)


def hook_for(layer):
    """The hook of the most specific registered class of `layer`'s MRO."""
    return next(_HOOKS[cls] for cls in type(layer).__mro__ if cls in _HOOKS)


def registered_layer_hooks():
    """{layer type: hook} of every registered removal hook."""
    return dict(_HOOKS)


# ---- slimkit's own hooks, registered like a user's ----

_TRANSPOSED = (paddle.nn.Conv1DTranspose, paddle.nn.Conv2DTranspose, paddle.nn.Conv3DTranspose)


def is_transposed_conv(layer):
    return isinstance(layer, _TRANSPOSED)


def conv_hook(layer, change):
    """A conv's channel counts follow its weight; a depthwise conv's group count follows its channels."""
    w = layer.weight.shape
    groups = change.before.get("_groups", layer._groups)
    transposed = isinstance(layer, _TRANSPOSED)
    if groups > 1 and groups == change.before.get("_in_channels") and not transposed:
        # Depthwise: `multiplier` filters per channel, the group count follows the channels.
        multiplier = max(1, (change.before.get("_out_channels") or groups) // groups)
        layer._groups = layer._in_channels = w[0] // multiplier
        layer._out_channels = w[0]
    elif transposed:
        layer._in_channels, layer._out_channels = w[0], w[1] * groups
    else:
        layer._out_channels, layer._in_channels = w[0], w[1] * groups


def multi_head_attention_hook(layer, change):
    """paddle.nn.MultiHeadAttention: heads from the projections (head_dim is kept), widths from their inputs."""
    layer.num_heads = layer.q_proj.weight.shape[1] // layer.head_dim
    layer.embed_dim = layer.q_proj.weight.shape[0]
    layer.kdim, layer.vdim = layer.k_proj.weight.shape[0], layer.v_proj.weight.shape[0]


def default_hook(layer, change):
    """Per-channel layers' feature counts; a head count, split sections held by a layer whose groups changed."""
    params = [p for p in layer._parameters.values() if p is not None and len(p.shape) == 1]
    if params and change.removed:
        size = params[0].shape[0]
        for key in ("_num_features", "num_features", "_num_channels"):
            if isinstance(getattr(layer, key, None), int):
                setattr(layer, key, size)
        if isinstance(getattr(layer, "_num_parameters", None), int) and layer._num_parameters > 1:
            layer._num_parameters = size
        if isinstance(getattr(layer, "_normalized_shape", None), (list, tuple)) and len(layer._normalized_shape) == 1:
            layer._normalized_shape = [size]
    if len(change.heads) == 1:
        _replace_unique(layer, HEAD_COUNT_ATTRS, *change.heads[0])
    for group in change.groups:
        if group.split:
            _replace_unique(layer, list(vars(layer)), *group.sections)


def _replace_unique(layer, names, old, new):
    # Only an attribute that is the one holding `old` is changed: two would make it a guess.
    holders = [key for key in names if _same(getattr(layer, key, None), old)]
    if len(holders) == 1:
        current = getattr(layer, holders[0])
        setattr(layer, holders[0], type(current)(new) if isinstance(current, (list, tuple)) else new)


def _same(value, target):
    if isinstance(value, bool) or isinstance(target, bool):
        return False
    if isinstance(target, list):
        return isinstance(value, (list, tuple)) and list(value) == target
    return isinstance(value, int) and value == target


register_layer_hook(paddle.nn.Layer, default_hook)
register_layer_hook(paddle.nn.layer.conv._ConvNd, conv_hook)
register_layer_hook(paddle.nn.MultiHeadAttention, multi_head_attention_hook)
