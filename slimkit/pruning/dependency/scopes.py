"""Which layer's forward emitted an op (the layer whose attributes hold the sizes that op uses).

Paddle records for every traced op the call path of layer classes it ran under
(`struct_name`, e.g. `/MixUnit_2/MixConv/`, a class's second call in its parent named
`Class_1`). Paths name classes, not layers, so they are matched to layer names through
parameters: an op under path P using a parameter of layer L is matched from the inside
out, each class of P to the nearest enclosing layer of L of that class (containers that are
never called, such as LayerList, are in the names and not in the paths). A path matched to
two layers, or to none, has no owner.
"""

import re

from .segments import present


def layer_scopes(program, param_owner, layer_types):
    """{call path (tuple of class names): layer name} for the program's ops.

    `param_owner` is {parameter name: (layer, ...)}, `layer_types` {layer name: class name}.
    """
    params, found, clashes = {}, {}, set()
    for op in program.global_block().ops:
        if op.name() == "builtin.parameter":
            params[op.result(0).id] = op.attrs()["parameter_name"]
            continue
        path = scope_of(op)
        if not path:
            continue
        for i in range(op.num_operands()):
            value = op.operand_source(i)
            owner = param_owner.get(params.get(value.id)) if present(value) else None
            if owner is None:
                continue
            for key, name in _matches(path, owner[0], layer_types):
                if found.setdefault(key, name) != name:
                    clashes.add(key)
    return {key: name for key, name in found.items() if key not in clashes}


def _matches(path, layer, layer_types):
    """(path prefix, layer) pairs: each class of `path`, from the last, matched to the nearest enclosing layer."""
    out, depth, current = [], len(path) - 1, layer
    while depth >= 0 and current:
        if re.sub(r"_\d+$", "", path[depth]) == layer_types.get(current) or path[depth] == layer_types.get(current):
            out.append((path[:depth + 1], current))
            depth -= 1
        current = current.rpartition(".")[0] if "." in current else ""
    return out


def scope_of(op):
    """The op's call path of layer classes, or () when the trace recorded none."""
    name = op.attrs().get("struct_name", "")
    return tuple(part for part in str(name).split("/") if part)
