"""Physically remove channels: smaller tensors and matching layer attributes, all groups at once.

`remove_channels(model, graph, keep)` slices every tensor the DependencyGraph lists for
the groups in `keep`, lets each changed layer's removal hook fix the attributes forward
reads (`_in_channels`, `_groups`, `_num_features`, an attention's head count; see
`layer_hooks`), then runs one forward pass to check the model still produces outputs of
the traced shapes. Any failure restores the model exactly and raises ModelError.

The graph passed in is not changed: it keeps describing the unpruned model, so a scan can
restore the model (`slimkit.core.surgery.restore`) and reuse it. `remove_channels` returns a
fresh DependencyGraph describing the pruned model.
"""

import dataclasses

import numpy as np
import paddle

from ..core.errors import ModelError, suggest
from ..core.surgery import capture, eval_mode, replace_tensor, restore, shape_attrs, train_mode
from .dependency import DependencyGraph, flat_outputs, output_structure
from .layer_hooks import GroupChange, LayerChange, hook_for, is_transposed_conv


def remove_channels(model, graph, keep):
    """Keep only channels `keep[group_name]` (sorted indices) of each group; return the graph of the pruned model."""
    return remove_with_undo(model, graph, keep)[0]


def remove_with_undo(model, graph, keep):
    """`remove_channels`, also returning `undo()`, which puts the model back as it was before."""
    masks = _keep_masks(graph, keep)
    _check_graph_fits(model, graph)
    removed = _removed_positions(graph, masks)
    attributes = _attribute_changes(graph, masks)
    layers = dict(model.named_sublayers(include_self=True))
    # Only the layers that change are copied: a full snapshot of a large model costs seconds.
    snapshot = {name: capture(layers[name]) for name in {layer for layer, _ in removed} | set(attributes)}

    def undo():
        for name, snap in snapshot.items():
            restore(layers[name], snap)

    try:
        _cut_tensors(model, removed, attributes)
        _check_layers(layers, graph, masks, removed)
        _check_forward(model, graph)
    except Exception as err:
        undo()
        detail = err.message if isinstance(err, ModelError) else f"{type(err).__name__}: {err}"
        raise ModelError(f"removing channels failed, the model was restored unchanged: {detail}",
                         "report the model structure; prune the other layers with `skip=[...]` meanwhile") from None
    return _pruned_graph(graph, masks, removed), undo


def _keep_masks(graph, keep):
    if not isinstance(keep, dict):
        raise ModelError(f"keep must be a dict {{group name: channel indices to keep}}, got {type(keep).__name__}")
    masks = {}
    names = [g.name for g in graph.groups]
    for name, indices in keep.items():
        group = next((g for g in graph.groups if g.name == name), None)
        if group is None:
            raise ModelError(f"no channel group named {name!r}", suggest(name, names))
        if not group.prunable:
            raise ModelError(f"group {name!r} cannot be pruned: {group.reason}", "leave it out of keep")
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ModelError(f"keep[{name!r}] must be a 1-D array of channel indices, got shape {idx.shape} "
                             f"dtype {idx.dtype}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= group.channels):
            raise ModelError(f"keep[{name!r}] has indices outside [0, {group.channels})")
        if np.any(np.diff(idx) <= 0):
            raise ModelError(f"keep[{name!r}] must be sorted without repeats", "pass np.unique(indices)")
        if idx.size < max(1, group.min_channels):
            raise ModelError(f"keep[{name!r}] keeps {idx.size} channels; group {name!r} needs at least "
                             f"{max(1, group.min_channels)}")
        if idx.size % group.channel_multiple:
            raise ModelError(f"keep[{name!r}] keeps {idx.size} channels; group {name!r} needs a multiple of "
                             f"{group.channel_multiple}")
        mask = np.zeros(group.channels, dtype=bool)
        mask[idx] = True
        if group.blocks > 1:
            runs = mask.reshape(group.blocks, -1)
            if len(set(runs.sum(axis=1).tolist())) > 1 or (group.aligned and not (runs == runs[0]).all()):
                how = "the same positions" if group.aligned else "as many channels"
                raise ModelError(f"keep[{name!r}] does not keep {how} in each of the {group.blocks} channel groups "
                                 f"of a grouped convolution", "choose the indices with slimkit.pruning.keep_indices")
        masks[name] = mask
    return masks


def _check_graph_fits(model, graph):
    layers = dict(model.named_sublayers(include_self=True))
    for (layer, tensor), shape in graph.tensor_shapes.items():
        t = layers[layer]._parameters.get(tensor) if layer in layers else None
        if t is None or list(t.shape) != list(shape):
            raise ModelError(f"the dependency graph does not match the model ({layer}.{tensor} is "
                             f"{None if t is None else list(t.shape)}, the graph expects {shape})",
                             "analyze the model again, or use the graph remove_channels returned after pruning")


def _removed_positions(graph, masks):
    """{(layer, tensor): {axis: sorted positions to delete}} for every sliced tensor."""
    removed = {}
    for group in graph.groups:
        mask = masks.get(group.name)
        if mask is None or mask.all():
            continue
        for s in group.slices:
            positions = s.dropped_positions(mask)
            removed.setdefault((s.layer, s.tensor), {}).setdefault(s.axis, set()).update(positions.tolist())
    return {key: {axis: np.array(sorted(p), dtype=np.int64) for axis, p in axes.items()}
            for key, axes in removed.items()}


def _attribute_changes(graph, masks):
    """{layer: [GroupChange]} for the layers whose attributes hold sizes of groups that lose channels."""
    out = {}
    for group in graph.groups:
        mask = masks.get(group.name)
        if mask is not None and not mask.all():
            for layer, sections in group.sizes.items():
                change = GroupChange(group.name, group.kind, group.channels, int(mask.sum()), sections)
                out.setdefault(layer, []).append(change)
    return out


def _cut_tensors(model, removed, attributes):
    layers = dict(model.named_sublayers(include_self=True))
    changed = {layer for layer, _ in removed} | set(attributes)
    before = {name: shape_attrs(layers[name]) for name in changed}
    cut = {}
    for (layer_name, tensor), axes in removed.items():
        layer = layers[layer_name]
        value = layer._parameters[tensor].numpy()
        mask = layer._buffers.get(f"{tensor}_mask")
        # A sparsity mask held through later stages (`<param>_mask`, the parameter's shape) loses
        # the same channels, so the mask keeps covering the weight it zeroes.
        shadow = mask.numpy() if mask is not None and list(mask.shape) == list(value.shape) else None
        for axis, positions in axes.items():
            value = np.delete(value, positions, axis=axis)
            shadow = None if shadow is None else np.delete(shadow, positions, axis=axis)
        replace_tensor(layer, tensor, value)
        if shadow is not None:
            replace_tensor(layer, f"{tensor}_mask", shadow)
        cut.setdefault(layer_name, {})[tensor] = axes
    # Inner layers first: a layer's hook sees its sublayers' attributes already updated.
    for name in sorted(changed, key=lambda n: (-n.count(".") - bool(n), n)):
        layer = layers[name]
        hook_for(layer)(layer, LayerChange(name, before[name], cut.get(name, {}), attributes.get(name, [])))


def _check_layers(layers, graph, masks, removed):
    """Each group's removal is valid layer by layer before the whole model runs.

    Every tensor a group slices must keep exactly the channels its slices keep (a grouped
    conv's shared input axis: once per conv group), and a conv's channels must still split
    into its groups. The error names the group, which the final forward could not.
    """
    kept, owners = {}, {}
    for group in graph.groups:
        mask = masks.get(group.name)
        for s in dict.fromkeys(group.slices):  # a layer called twice lists its bias once per call
            if (s.layer, s.tensor) not in removed:
                continue
            key = (s.layer, s.tensor, s.axis)
            count = int(mask[s.start:s.start + s.count].sum()) if mask is not None else s.count
            kept.setdefault(key, []).append(count * s.repeat)
            owners.setdefault(key, []).append(group.name)
    for s in graph.fixed_slices:  # channels no layer produces (concatenated with a layer's output) stay
        key = (s.layer, s.tensor, s.axis)
        if key in kept:
            kept[key].append(s.count * s.repeat)
    for (layer_name, tensor, axis), widths in kept.items():
        layer = layers[layer_name]
        size = layer._parameters[tensor].shape[axis]
        shared = isinstance(layer, paddle.nn.layer.conv._ConvNd) and axis == 1 and tensor == "weight" and (
            not is_transposed_conv(layer)) and layer._groups > 1
        # A grouped conv's input axis is shared by its conv groups: each of their slices keeps all of it.
        fits = all(w == size for w in widths) if shared else sum(widths) == size
        problem = (f"its {tensor} keeps {size} channels on axis {axis}, the groups' slices {widths}"
                   if not fits else _conv_problem(layer))
        if problem:
            names = " / ".join(dict.fromkeys(owners[(layer_name, tensor, axis)]))
            raise ModelError(f"removing channels of group {names} leaves `{layer_name}` invalid: {problem}")


def _conv_problem(layer):
    if not isinstance(layer, paddle.nn.layer.conv._ConvNd):
        return ""
    groups = layer._groups
    if layer._in_channels % groups or layer._out_channels % groups:
        return f"{layer._in_channels} input and {layer._out_channels} output channels do not split into {groups} groups"
    return ""


def _check_forward(model, graph):
    with eval_mode(model), paddle.no_grad():
        out = model(paddle.zeros(graph.input_shape, dtype="float32"))
    structure = output_structure(out)
    expected = graph.output_structure
    if expected is None:  # a graph built by hand: compare the flat shapes
        structure, expected = [list(t.shape) for t in flat_outputs(out)], graph.output_shapes
    if structure != expected:
        raise ModelError(f"the pruned model's outputs are {_describe(structure)}, expected {_describe(expected)}")
    if graph.train_structure is not None:
        # Layers only the training forward calls (auxiliary heads) must still fit the channels they read.
        with train_mode(model), paddle.no_grad():
            structure = output_structure(model(paddle.zeros(graph.input_shape, dtype="float32")))
        if structure != graph.train_structure:
            raise ModelError(f"the pruned model's training-mode outputs are {_describe(structure)}, "
                             f"expected {_describe(graph.train_structure)}")


def _describe(structure):
    return str(structure).replace("'", "")


def _pruned_graph(graph, masks, removed):
    def kept_before(key, axis, position):
        gone = removed.get(key, {}).get(axis)
        return position - (int(np.searchsorted(gone, position)) if gone is not None else 0)

    groups = []
    for group in graph.groups:
        mask = masks.get(group.name, np.ones(group.channels, dtype=bool))
        slices = [dataclasses.replace(s, offset=kept_before((s.layer, s.tensor), s.axis, s.offset),
                                      start=int(mask[:s.start].sum()),
                                      count=int(mask[s.start:s.start + s.count].sum()))
                  for s in group.slices]
        groups.append(dataclasses.replace(group, channels=int(mask.sum()), slices=slices,
                                          roots=list(group.roots), members=list(group.members)))
    shapes = {}
    for key, shape in graph.tensor_shapes.items():
        shape = list(shape)
        for axis, gone in removed.get(key, {}).items():
            shape[axis] -= len(gone)
        shapes[key] = shape
    by_name = {g.name: g for g in groups}
    followers = {k: (by_name[g.name] if g is not None else None) for k, g in graph.followers.items()}
    fixed = [dataclasses.replace(s, offset=kept_before((s.layer, s.tensor), s.axis, s.offset))
             for s in graph.fixed_slices]
    pruned = DependencyGraph(groups, graph.input_shape, graph.output_shapes, shapes, graph.unused, followers, fixed)
    pruned.output_structure, pruned.train_structure = graph.output_structure, graph.train_structure
    return pruned
