"""From the walk's classes of coupled nodes to Groups: folded channels (attention heads) and what each group is.

Every class of coupled nodes (union-find over layer outputs and other channels) becomes one
Group. A node whose channels leave in whole units (`ChannelWalk.fold`: a qkv layer's output
[3 * heads * head_dim] folded into heads) gives its class to the class of its fold node: the
group's channels are then the units (the heads), and every slice of the folded class becomes
slices of whole units (`repeat` = the unit size, one slice per run of units that does not wrap
around: q, k and v of a qkv weight are three slices of the same heads).

A group's `kind`: "heads" (attention heads), "embed" (a token stream attention reads, or any
width LayerNorms normalize: the residual stream of a transformer or a ConvNeXt, Swin's merged
patches), "mlp" (the hidden width of linear layers on tokens), or "channels" (everything else:
conv filters, classifier widths).
"""

import dataclasses
import math

from .graph import DependencyGraph, Group


@dataclasses.dataclass
class _Unit:
    nodes: list
    slices: list
    channels: int
    reasons: list
    name: str = ""  # for a part of a layer's channels that no layer of its own roots: `layer[start:end]`
    cut: list = dataclasses.field(default_factory=list)  # the layers such a part is cut from (its roots)


def build_graph(walk, input_shape, output_shapes):
    """The DependencyGraph of what `walk` (a ChannelWalk) saw; sets `walk.class_groups` (class root -> Group)."""
    groups, walk.class_groups, fixed = build_groups(walk)
    shapes = {(layer, tensor): shape for layer, tensor, shape in walk.param_owner.values()}
    tensor_shapes = {(s.layer, s.tensor): shapes[(s.layer, s.tensor)] for _, s in walk.slices}
    return DependencyGraph(groups, input_shape, output_shapes, tensor_shapes, _unused(walk, groups, input_shape),
                           _followers(walk), fixed)


def _followers(walk):
    followers = {}
    for layer, nodes in walk.followers.items():
        owners = [walk.class_groups.get(walk._find(n)) for n in nodes]
        followers[layer] = owners[0] if all(o is owners[0] for o in owners) else None
    return followers


def _unused(walk, groups, input_shape):
    # A layer whose output is cut into parts of several groups roots none of them: its slices show it.
    seen = {r for g in groups for r in g.roots} | set(walk.followers) | {
        s.layer for g in groups for s in g.slices if s.role == "out"}
    why = f" (the training forward, which might, cannot be traced: {walk.training_failed})" \
        if walk.training_failed else ""
    return {name: f"{kind} not called by forward on input_shape {list(input_shape)}{why}"
            for name, kind in walk.weighted_layers.items() if name not in seen}


def build_groups(walk):
    """([Group], {class root: Group}, [fixed ChannelSlice]) of the walk's classes of coupled nodes.

    Fixed slices are those of classes no conv/linear layer produces (the model input, an op
    slimkit does not follow) that reach a sliced tensor: they stay whole.
    """
    folded = _folded_classes(walk)
    classes, slices_by_class = {}, {}
    for node in walk.nodes:
        classes.setdefault(walk._find(node.index), []).append(node)
    for node_index, s in walk.slices:
        slices_by_class.setdefault(walk._find(node_index), []).append(s)
    units, class_unit = {}, {}
    cut = set(_partitioned_classes(walk, folded))
    for root, nodes in classes.items():
        if root not in folded and root not in cut:
            units[root] = _Unit(list(nodes), list(slices_by_class.get(root, [])), nodes[0].channels, [])
            class_unit[root] = root
    for root, parts in _partitioned_classes(walk, folded).items():
        for part_root, start, count in parts:
            part = units.get(part_root)
            if part is None:
                continue
            layered = [n for n in classes[root] if n.layer]
            if layered and not any(n.layer for n in part.nodes):
                # No layer of its own: the part is named after (and rooted at) the layer it is cut from.
                part.name = part.name or f"{layered[0].layer}[{start}:{start + count}]"
                part.cut += layered
            part.reasons += [r for n in classes[root] for r in n.reasons]
            part.slices += [p for s in slices_by_class.get(root, []) for p in _within(s, start, count)]
        class_unit[root] = parts[0][0]
    for root, (target, unit, count, reasons) in folded.items():
        part = units.get(target)
        if part is None:  # folded twice over: not followed
            continue
        part.nodes += classes[root]
        part.reasons += reasons
        for s in slices_by_class.get(root, []):
            converted = _whole_units(s, unit, count)
            if converted is None:
                part.reasons.append(f"its channels are also used apart from whole heads (`{s.layer}`.{s.tensor})")
            else:
                part.slices += converted
        class_unit[root] = target
    groups, by_root, fixed = [], {}, []
    for root in sorted(units):
        part = units[root]
        if any(n.layer for n in part.nodes + part.cut):
            by_root[root] = _group(walk, part)
            groups.append(by_root[root])
        else:
            fixed += part.slices
    return groups, {c: by_root[u] for c, u in class_unit.items() if u in by_root}, fixed


def _folded_classes(walk):
    """{folded class root: (fold class root, unit, count, reasons)}; folds of coupled channels are merged first."""
    first = {}
    for node, (fold_node, unit, count) in walk.folds.items():
        root = walk._find(node)
        if root in first and (first[root][1], first[root][2]) == (unit, count):
            walk._union(first[root][0], fold_node)  # two folds of coupled channels: the same heads
        first.setdefault(root, (fold_node, unit, count))
    out = {}
    for node, (_, unit, count) in walk.folds.items():
        root = walk._find(node)
        reasons = out.get(root, (None, None, None, []))[3]
        if (unit, count) != first[root][1:]:
            reasons.append("its channels are split into heads in two different ways")
        for blocks, _ in walk.constraints.get(node, []):
            if (walk.nodes[node].channels // blocks) % (unit * count):
                reasons.append(f"its {blocks} equal parts do not fall on whole heads")
        out[root] = (walk._find(first[root][0]), first[root][1], first[root][2], reasons)
    return {root: entry for root, entry in out.items() if root != entry[0]}


def _partitioned_classes(walk, folded):
    """{class root: [(part class root, start, count)]} of the classes cut into parts (`ChannelWalk._partition`)."""
    out = {}
    for node, parts in walk.parts.items():
        root = walk._find(node)
        if root not in folded:
            out[root] = [(walk._find(part), start, count) for part, start, count in parts]
    return out


def _within(s, start, count):
    """The part of slice `s` on class channels [start, start + count), renumbered from 0 (none if outside)."""
    lo, hi = max(s.start, start), min(s.start + s.count, start + count)
    if lo >= hi:
        return []
    return [dataclasses.replace(s, offset=s.offset + (lo - s.start) * s.repeat, start=lo - start, count=hi - lo)]


def _whole_units(s, unit, count):
    """A slice of folded channels as slices of whole units (None if it cuts through a unit)."""
    if s.start % unit or s.count % unit:
        return None
    out, first, last = [], s.start // unit, (s.start + s.count) // unit
    u = first
    while u < last:
        end = min(last, (u // count + 1) * count)
        out.append(dataclasses.replace(s, offset=s.offset + (u - first) * unit * s.repeat, start=u % count,
                                       count=end - u, repeat=s.repeat * unit))
        u = end
    return out


def _kind(walk, nodes):
    marks = set().union(*(walk.kinds.get(n.index, set()) for n in nodes))
    layered = [n for n in nodes if n.layer]
    if "heads" in marks:
        return "heads"
    if "embed" in marks or "normed" in marks:
        # A stream attention reads, or a width LayerNorms normalize (the residual stream of a ConvNeXt,
        # Swin's merged patches): removing its channels changes what the kept ones compute.
        return "embed"
    return "mlp" if layered and all("mlp" in walk.kinds.get(n.index, ()) for n in layered) else "channels"


def _group(walk, part):
    nodes, slices = part.nodes, part.slices
    layered = [n for n in nodes if n.layer] or part.cut
    reasons = []
    for n in nodes:
        reasons += [r for r in n.reasons if r not in reasons]
    reasons += [r for r in part.reasons if r not in reasons]
    if any(n.reasons == ["model input"] for n in nodes):
        reasons = [r if r != "model input" else "coupled with the model input (e.g. an identity shortcut)"
                   for r in reasons]
    # Every node of a class has the same channel indices; slices refer to class channels.
    members = list(dict.fromkeys((s.layer, s.tensor, s.axis) for s in slices))
    kind = _kind(walk, nodes)
    sizes = {layer: sections for n in nodes for layer, sections in walk.owners.get(n.index, {}).items()}
    if kind == "heads" and not sizes:
        sizes = {_common_layer([s.layer for s in slices]): None}  # the layer holding the attention's layers
    # Layers whose attributes hold sizes of these channels: their removal hooks get the change.
    members += [(layer, None, None) for layer in sorted(sizes)]
    folds = {n.index for n in nodes if n.index in walk.folds}
    found = {c for n in nodes if n.index not in folds for c in walk.constraints.get(n.index, [])}
    blocks = sorted({b for b, _ in found})
    # Equal runs for every count at once: as many runs as the least common multiple, each keeping as
    # many (at the same positions when one of them asks so, which keeps every coarser run equal too).
    group_blocks = math.lcm(*blocks) if blocks else 1
    if part.channels % group_blocks:
        reasons.append(f"its channels pass grouped convolutions or equal splits of {blocks} parts at once, "
                       f"which {part.channels} channels cannot all keep even")
        group_blocks = 1
    return Group(name=part.name or layered[0].layer, roots=[n.layer for n in layered], channels=part.channels,
                 members=members,
                 prunable=not reasons, reason="; ".join(reasons[:3]), slices=list(slices),
                 channel_multiple=group_blocks, blocks=group_blocks,
                 aligned=any(aligned for _, aligned in found), kind=kind, sizes=sizes)


def _common_layer(names):
    """The innermost layer holding all of `names` ("" for the model itself)."""
    parts = [n.split(".") for n in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)


def fixed_shape_groups(walk, graph):
    """[(description, [Group])] for every reshape/split to constant sizes, with the prunable groups reaching it.

    Candidates reaching the same groups are tried once (the first description is kept).
    """
    out, seen = [], set()
    for description, segs in walk.fixed_shapes:
        groups = [walk.class_groups.get(walk._find(s.node)) for s in segs]
        groups = list({id(g): g for g in groups if g is not None and g.prunable}.values())
        key = tuple(sorted(g.name for g in groups))
        if groups and key not in seen:
            seen.add(key)
            out.append((description, groups))
    return out
