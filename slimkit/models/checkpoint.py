"""slimkit's own model save/load: weights plus the shapes a pruned model needs to be rebuilt.

`paddle.save(model.state_dict())` alone cannot be loaded into a freshly built model
once filters were removed; `save_model` also writes each layer's tensor shapes and
shape attributes, and `load_model` reshapes a fresh (or any structurally equal) model to
match before setting the weights.
"""

import json
from pathlib import Path

import paddle

from ..core.errors import ModelError
from ..core.surgery import restore, shape_attrs
from ..run.rundir import atomic_save, atomic_write_text, read_run

WEIGHTS = "model.pdparams"
ARCH = "architecture.json"
INFERENCE_DIR = "inference"  # a stage folder's exported program for Paddle Inference


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


def record_spec(folder, spec):
    """Store `spec` in the folder's architecture.json where it has none, so the folder loads on its own."""
    path = Path(folder) / ARCH
    if spec is None or not path.is_file():
        return
    arch = json.loads(path.read_text())
    if arch.get("spec") is None:
        arch["spec"] = spec
        path.write_text(json.dumps(arch, indent=1))


def load_model(folder, model=None):
    """Load a model saved by `save_model`, into `model` (reshaped to fit) or rebuilt from its spec.

    A stage folder that cannot be rebuilt from its spec (no spec, or a structure the spec
    does not build, such as a quantized model) loads its saved inference program instead:
    an `InferenceModel`, whose `run(images)` returns the logits (the output the run's `task.output` names).
    """
    folder = Path(folder)
    if model is None:
        exported = _inference_program(folder)
        if exported is not None:
            return exported
    if not (folder / WEIGHTS).is_file() or not (folder / ARCH).is_file():
        raise ModelError(f"{folder} is not a slimkit model folder (needs {WEIGHTS} and {ARCH})",
                         "save with slimkit.save_model, or load a plain .pdparams with model.set_state_dict")
    arch = json.loads((folder / ARCH).read_text())
    if model is None:
        if not arch.get("spec"):
            raise ModelError(f"{folder} holds no model spec", "pass the model to load into: load_model(folder, model)")
        from .zoo import build_model

        model = build_model(**arch["spec"])
    return _load_into(model, folder, arch)


def _inference_program(folder):
    """The folder's saved inference program, where its weights alone do not rebuild the model."""
    prefix = folder / INFERENCE_DIR / "model"
    if not Path(f"{prefix}.pdmodel").is_file():
        return None
    arch = json.loads((folder / ARCH).read_text()) if (folder / ARCH).is_file() else {}
    if arch.get("spec") and not _quantized(arch):
        return None
    from ..quant.export import InferenceModel

    run = read_run(folder.parent) or {}  # run(images) returns the output the run's task measured
    return InferenceModel(prefix, runtime="cpu", output=(run.get("task") or {}).get("output"))


def _quantized(arch):
    # Layers of paddle's quantization wrappers are not built by the model's own constructor.
    return any("Quant" in info["type"] for info in arch.get("layers", {}).values())


def _load_into(model, folder, arch):
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
