"""slimkit's own model save/load: weights plus the shapes a pruned model needs to be rebuilt.

`paddle.save(model.state_dict())` alone cannot be loaded into a freshly built model
once filters were removed; `save_model` also writes each layer's tensor shapes and
shape attributes, and `load_model` reshapes a fresh (or any structurally equal) model to
match before setting the weights.
"""

import json
from pathlib import Path

import paddle

from .errors import ModelError
from .rundir import atomic_save, atomic_write_text
from .surgery import restore, shape_attrs

WEIGHTS = "model.pdparams"
ARCH = "architecture.json"


def save_model(model, folder, spec=None):
    """Write `model.pdparams` and `architecture.json` to `folder`; `spec` (optional) rebuilds the model."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    layers = {}
    for prefix, layer in model.named_sublayers(include_self=True):
        # Only what the state dict holds: non-persistable buffers are rebuilt by the layer itself.
        tensors = {name: list(t.shape) for name, t in list(layer._parameters.items()) + list(layer._buffers.items())
                   if t is not None and (f"{prefix}.{name}" if prefix else name) in state}
        attrs = shape_attrs(layer)
        if tensors or attrs:
            layers[prefix] = {"type": type(layer).__name__, "tensors": tensors, "attrs": attrs}
    # Renamed into place: a crash mid-save leaves the previous file, never a torn one.
    atomic_save(lambda tmp: paddle.save(state, tmp), folder / WEIGHTS)
    atomic_write_text(folder / ARCH, json.dumps({"format": 1, "spec": spec, "layers": layers}, indent=1))
    return folder


def load_model(folder, model=None):
    """Load a model saved by `save_model`, into `model` (reshaped to fit) or rebuilt from its spec."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / ARCH).is_file():
        raise ModelError(f"{folder} is not a slimkit model folder (needs {WEIGHTS} and {ARCH})",
                         "save with slimkit.save_model, or load a plain .pdparams with model.set_state_dict")
    arch = json.loads((folder / ARCH).read_text())
    if model is None:
        if not arch.get("spec"):
            raise ModelError(f"{folder} holds no model spec", "pass the model to load into: load_model(folder, model)")
        from .models import build_model

        model = build_model(**arch["spec"])
    state = paddle.load(str(folder / WEIGHTS))
    own = dict(model.named_sublayers(include_self=True))
    missing = [p for p in arch["layers"] if p not in own]
    if missing:
        raise ModelError(f"the model has no layer(s) {missing[:5]} saved in {folder}",
                         "load into a model built the same way as the saved one")
    snapshot = {"tensors": {}, "attrs": {}}
    for prefix, info in arch["layers"].items():
        for name in info["tensors"]:
            key = f"{prefix}.{name}" if prefix else name
            if key not in state:
                raise ModelError(f"{folder / WEIGHTS} lacks {key}", "the folder is incomplete: save it again")
            snapshot["tensors"][(prefix, name)] = state[key].numpy()
        snapshot["attrs"][prefix] = info["attrs"]
    restore(model, snapshot)
    return model
