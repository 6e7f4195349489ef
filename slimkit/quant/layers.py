"""Which layers get quantized: the chosen layer types, minus the layers skipped by name or by type.

`skip_layers` names sublayers as `model.named_sublayers()` does: a quantizable layer
(`neck.blocks.0.attn.qkv`) or any layer holding some (`neck` keeps the whole neck float).
`skip_types` names layer classes: a quantizable type (`Linear`) or any class of the model
(`Attention`, `SqueezeExcite`): every quantizable layer that is, or sits inside, a layer of
that class stays float. Both are checked against the model before any work; a name that
does not fit gets a ConfigError with the closest valid name.
"""

import paddle

from ..core.errors import ConfigError, suggest

# The layer types paddle.quantization can replace by a quantized twin (its DEFAULT_QAT_LAYER_MAPPINGS).
QUANTIZABLE_TYPES = {"Conv2D": paddle.nn.Conv2D, "Linear": paddle.nn.Linear}


def check_layer_types(names, path="quantizable_layer_type"):
    """Raise ConfigError for a layer type name paddle.quantization cannot quantize."""
    if not names:
        raise ConfigError(path, "no layer type to quantize", f"use e.g. {list(QUANTIZABLE_TYPES)}")
    for i, name in enumerate(names):
        if name not in QUANTIZABLE_TYPES:
            raise ConfigError(f"{path}[{i}]", f"{name!r} is not a layer type paddle.quantization can quantize",
                              suggest(name, list(QUANTIZABLE_TYPES)))


def quantizable_layers(model, layer_types=("Conv2D", "Linear")):
    """Structured names of the layers of `model` whose type is one of `layer_types`, in model order."""
    check_layer_types(list(layer_types))
    types = tuple(QUANTIZABLE_TYPES[t] for t in layer_types)
    return [name for name, layer in model.named_sublayers() if type(layer) in types]


def _inside(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


def _skipped_by_name(model, chosen, skip_layers, path):
    names = [n for n, _ in model.named_sublayers()]
    skipped = set()
    for i, prefix in enumerate(skip_layers):
        hits = [n for n in chosen if _inside(n, prefix)]
        if not hits:
            known = prefix in names
            message = (f"{prefix!r} holds no quantizable layer" if known else
                       f"{prefix!r} is not a layer of the model")
            raise ConfigError(f"{path}[{i}]", message, suggest(prefix, chosen if known else names))
        skipped.update(hits)
    return skipped


def _skipped_by_type(model, chosen, skip_types, path):
    layers = dict(model.named_sublayers())
    classes = {}
    for name, layer in layers.items():
        classes.setdefault(type(layer).__name__, []).append(name)
    skipped = set()
    for i, type_name in enumerate(skip_types):
        if type_name not in classes:
            raise ConfigError(f"{path}[{i}]", f"the model has no layer of type {type_name!r}",
                              suggest(type_name, sorted(classes)))
        hits = [n for n in chosen if any(_inside(n, owner) for owner in classes[type_name])]
        if not hits:
            raise ConfigError(f"{path}[{i}]", f"no quantizable layer is or sits inside a {type_name}",
                              f"remove it from {path}")
        skipped.update(hits)
    return skipped


def layers_to_quantize(model, layer_types=("Conv2D", "Linear"), skip_layers=(), skip_types=(), path="skip_layers",
                       types_path="skip_types"):
    """Structured names of the layers that get quantizers: `layer_types` minus those skipped by name or type.

    Raises ConfigError naming the closest valid name, before anything is changed, when an
    entry of `skip_layers` or `skip_types` matches nothing quantizable in `model`.
    """
    chosen = quantizable_layers(model, layer_types)
    skipped = _skipped_by_name(model, chosen, list(skip_layers), path)
    skipped |= _skipped_by_type(model, chosen, list(skip_types), types_path)
    return [name for name in chosen if name not in skipped]
