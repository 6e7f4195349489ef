"""slimkit's own model save/load: weights plus the shapes a pruned model needs to be rebuilt.

`paddle.save(model.state_dict())` alone cannot be loaded into a freshly built model
once filters were removed; `save_model` also writes each layer's tensor shapes and
shape attributes, and `load_into` reshapes a fresh (or any structurally equal) model to
match before setting the weights (`slimkit.load_model` also rebuilds the model from its spec).
"""

import json
from pathlib import Path

import paddle

from ..core.errors import CorruptFileError, ModelError
from ..core.files import atomic_save, atomic_write_text, read_json
from ..core.surgery import restore, shape_attrs

WEIGHTS = "model.pdparams"
ARCH = "architecture.json"
INFERENCE_DIR = "inference"  # a stage folder's exported program for Paddle Inference
DAMAGED = ("the file is truncated or damaged: save the model again (slimkit.save_model); in a run's stage folder, "
           "delete that folder and rerun the run with --resume, or rerun it with --overwrite")


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
    # Arrays, not tensors: paddle.save also stores each tensor's process-wide unique name (`conv2d_3.w_0`),
    # which depends on what the process built before, so the same weights would give other bytes.
    arrays = {key: tensor.numpy() for key, tensor in state.items()}
    # Renamed into place: a crash mid-save leaves the previous file, never a torn one.
    atomic_save(lambda tmp: paddle.save(arrays, tmp), folder / WEIGHTS)
    atomic_write_text(folder / ARCH, json.dumps({"format": 1, "spec": spec, "layers": layers}, indent=1))
    return folder


def record_spec(folder, spec):
    """Store `spec` in the folder's architecture.json where it has none, so the folder loads on its own."""
    path = Path(folder) / ARCH
    if spec is None or not path.is_file():
        return
    arch = read_json(path, DAMAGED)
    if arch.get("spec") is None:
        arch["spec"] = spec
        atomic_write_text(path, json.dumps(arch, indent=1))


def read_architecture(folder):
    """The `architecture.json` of a folder `save_model` wrote (ModelError for any other folder)."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / ARCH).is_file():
        raise ModelError(f"{folder} is not a slimkit model folder (needs {WEIGHTS} and {ARCH})",
                         "save with slimkit.save_model, or load a plain .pdparams with model.set_state_dict")
    arch = read_json(folder / ARCH, DAMAGED)
    if not (isinstance(arch, dict) and isinstance(arch.get("layers"), dict)):
        raise CorruptFileError(f"{folder / ARCH} is damaged: not a slimkit architecture record", DAMAGED)
    return arch


def load_state(path):
    """`paddle.load` of a weights file; CorruptFileError naming it when it is truncated or not Paddle weights."""
    try:
        state = paddle.load(str(path))
    except Exception as err:  # EOFError, UnpicklingError, ValueError, ...: one meaning to the user
        raise CorruptFileError(f"{path} cannot be read as Paddle weights ({type(err).__name__}: "
                               f"{str(err)[:120]})", DAMAGED) from None
    if not isinstance(state, dict):
        raise CorruptFileError(f"{path} holds a {type(state).__name__}, not a state dict of weights", DAMAGED)
    return state


def load_into(model, folder, arch=None):
    """Load the weights of `folder` (saved by `save_model`) into `model`, reshaped to fit; returns `model`."""
    folder = Path(folder)
    arch = read_architecture(folder) if arch is None else arch
    state = load_state(folder / WEIGHTS)
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


def load_weights(model, checkpoint):
    """Load weights from a `.pdparams` file or a slimkit model folder; shapes must match."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return load_into(model, path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}", "give a .pdparams file or a folder saved by slimkit")
    state = load_state(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [f"{k}: {list(state[k].shape)} vs {list(v.shape)}" for k, v in own.items()
             if k in state and list(state[k].shape) != list(v.shape)]
    if missing or wrong:
        raise ModelError(f"checkpoint {path} does not fit the model: "
                         + (f"missing {missing[:5]} " if missing else "")
                         + (f"shape mismatch {wrong[:5]}" if wrong else ""),
                         "a pruned model's weights need its folder saved by slimkit (slimkit.save_model)")
    model.set_state_dict(state)
    return model
