"""`slimkit.load_model`: a folder `save_model` wrote, or a finished stage's folder, back as a model."""

from pathlib import Path

from ..core.errors import ModelError
from ..models.checkpoint import ARCH, INFERENCE_DIR, WEIGHTS, load_into, read_architecture
from .rundir import read_run, verify_stage


def load_model(folder, model=None):
    """Load a model saved by `save_model`, into `model` (reshaped to fit) or rebuilt from its spec.

    A stage folder that cannot be rebuilt from its spec (no spec, or a structure the spec
    does not build, such as a quantized model) loads its saved inference program instead:
    an `InferenceModel`, whose `run(images)` returns the logits (the output the run's `task.output` names).
    """
    folder = Path(folder)
    # A finished stage's folder: its files are checked against the checksums its stage.json recorded.
    verify_stage(folder, only=(WEIGHTS, ARCH, f"{INFERENCE_DIR}/"))
    if model is None:
        exported = _inference_program(folder)
        if exported is not None:
            return exported
    arch = read_architecture(folder)
    if model is None:
        if not arch.get("spec"):
            raise ModelError(f"{folder} holds no model spec", "pass the model to load into: load_model(folder, model)")
        from ..models.zoo import build_model

        model = build_model(**arch["spec"])
    return load_into(model, folder, arch)


def _inference_program(folder):
    """The folder's saved inference program, where its weights alone do not rebuild the model."""
    prefix = folder / INFERENCE_DIR / "model"
    if not Path(f"{prefix}.pdmodel").is_file():
        return None
    arch = read_architecture(folder) if (folder / ARCH).is_file() and (folder / WEIGHTS).is_file() else {}
    if arch.get("spec") and not _quantized(arch):
        return None
    from ..deploy.paddle_inference import InferenceModel

    run = read_run(folder.parent) or {}  # run(images) returns the output the run's task measured
    return InferenceModel(prefix, runtime="cpu", output=(run.get("task") or {}).get("output"))


def _quantized(arch):
    # Layers of paddle's quantization wrappers are not built by the model's own constructor.
    return any("Quant" in info["type"] for info in arch.get("layers", {}).values())
