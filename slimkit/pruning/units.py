"""Which prunable units a prune touches: attention heads, MLP widths, embedding widths (`Group.kind`).

`prune(prune_heads=True, prune_mlp=True, prune_embed=False)` and the filter_pruning stage's
options of the same names leave the groups of a unit they switch off whole, with the option
in the reason. Embedding widths are off by default: the residual stream of a transformer (or
of a ConvNeXt) passes every LayerNorm, so removing its channels changes what the kept ones
compute (the model is not the masked one; finetuning recovers it), and it touches every
block at once.
"""

from ..core.errors import ConfigError

# Group.kind -> (option, what the unit is)
UNITS = {"heads": ("prune_heads", "attention heads"),
         "mlp": ("prune_mlp", "MLP hidden width"),
         "embed": ("prune_embed", "embedding width (LayerNorms normalize it)")}


def check_units(prune_heads, prune_mlp, prune_embed):
    """The three switches must be booleans (ConfigError naming the one that is not)."""
    for key, value in (("prune_heads", prune_heads), ("prune_mlp", prune_mlp), ("prune_embed", prune_embed)):
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")


def unit_skips(graph, ratios, prune_heads=True, prune_mlp=True, prune_embed=False):
    """{group name: reason} of the prunable groups of units switched off.

    `ratios` naming a group of a unit switched off is a ConfigError: the two settings contradict.
    """
    check_units(prune_heads, prune_mlp, prune_embed)
    on = {"heads": prune_heads, "mlp": prune_mlp, "embed": prune_embed}
    off = {g.name: g.kind for g in graph.prunable() if not on.get(g.kind, True)}
    for name in ratios if isinstance(ratios, dict) else ():
        group = graph.group(name)
        if group.name in off:
            option, what = UNITS[group.kind]
            raise ConfigError(f"ratios.{name}", f"{name!r} is in a group of {what}, and {option} is false",
                              f"set {option}: true, or leave {name!r} out of ratios")
    return {name: f"{UNITS[kind][1]} not pruned ({UNITS[kind][0]} is false)" for name, kind in off.items()}
