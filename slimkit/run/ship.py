"""`slimkit export RUN_DIR [--stage NAME] --format paddle|onnx --to DIR`: the files to ship from a finished run."""

import shutil
import typing
from pathlib import Path

from ..core.errors import ConfigError, ModelError, suggest
from ..core.files import read_json
from ..data import DataConfig, load_dataset
from ..deploy import onnx as onnx_export
from ..deploy.formats import FORMATS, ONNX_FILES, PADDLE_FILES, export_paddle, has_paddle_files
from ..deploy.paddle_inference import INFERENCE_DIR, OUTPUTS_FILE, stage_export_prefix
from .loading import load_model
from .rundir import finished_stages, read_run, stage_fix, verify_stage


def export_run(run_dir, to, stage=None, fmt="paddle"):
    """Copy the deployable files of a finished run's stage (default: the last) into `to`; returns their paths."""
    if fmt not in FORMATS:
        raise ConfigError("--format", f"{fmt!r} is not an export format", suggest(fmt, list(FORMATS)))
    if fmt == "onnx":
        onnx_export.require_onnx("--format")
    folder = find_stage(run_dir, stage)
    names = PADDLE_FILES if fmt == "paddle" else ONNX_FILES
    target = Path(to)
    taken = [n for n in (*names, OUTPUTS_FILE) if (target / n).exists()]
    if taken:
        raise ConfigError("--to", f"{target} already holds {', '.join(taken)}", "choose an empty or new folder")
    # The files leave the run folder here (or are converted): a damaged one is named now, not in deployment.
    # (An onnx/ folder deleted on purpose is exported again from inference/.)
    onnx_kept = fmt == "onnx" and (folder / onnx_export.ONNX_DIR).is_dir()
    verify_stage(folder, only=[f"{INFERENCE_DIR}/", *([f"{onnx_export.ONNX_DIR}/"] if onnx_kept else [])])
    source = _paddle_files(folder) if fmt == "paddle" else _onnx_files(folder, run_dir)
    target.mkdir(parents=True, exist_ok=True)
    if (source / OUTPUTS_FILE).is_file():  # which model output each exported one is (exports since it exists)
        names = (*names, OUTPUTS_FILE)
    for name in names:
        shutil.copy2(source / name, target / name)
    return [target / n for n in names]


def find_stage(run_dir, stage=None):
    """The folder of the finished stage `stage` (its name, or `NN-name`) in `run_dir`; default: the last one."""
    run_dir = Path(run_dir)
    done = finished_stages(run_dir)
    if not done:
        raise ConfigError("RUN_DIR", f"{run_dir} holds no finished stage", "give the --out folder of a slimkit run")
    if stage is None:
        return done[-1]
    by_name = {p.name: p for p in done} | {p.name[3:]: p for p in done}
    if stage not in by_name:
        raise ConfigError("--stage", f"{run_dir} has no finished stage {stage!r}",
                          suggest(stage, [p.name[3:] for p in done]))
    return by_name[stage]


def _paddle_files(folder):
    if has_paddle_files(stage_export_prefix(folder)):
        return stage_export_prefix(folder).parent
    model = load_model(folder)  # a stage of a run made before every stage was exported
    pipeline = read_run(folder.parent, strict=True) or {}
    return export_paddle(model, folder, pipeline["input_shape"]).parent


def _onnx_files(folder, run_dir):
    source = folder / onnx_export.ONNX_DIR
    record_path = source / onnx_export.RECORD_FILE
    if not record_path.is_file():
        inputs, text, output = _verification_inputs(run_dir)
        record = onnx_export.export_onnx(_paddle_files(folder) / "model", source, inputs, output, inputs_text=text)
    else:
        record = read_json(record_path, stage_fix(folder))
    if not record["ok"]:
        raise ModelError(onnx_export.mismatch_text(record),
                         "ship the Paddle files (--format paddle), or report the model as a conversion bug")
    return source


def _builtin_datasets():
    return typing.get_args(typing.get_type_hints(DataConfig)["name"])


def _verification_inputs(run_dir):
    """(inputs(), what they are, task.output) to verify an ONNX file of the run on.

    A built-in dataset is reloaded by its name and its test split used; other data (a Python
    run's arrays or Dataset, a factory) is not at hand: seeded random inputs of the run's input
    shape then compare ONNX Runtime with Paddle, which needs no labels.
    """
    described = read_run(run_dir, strict=True) or {}
    output = (described.get("task") or {}).get("output")
    data = described.get("data")
    if isinstance(data, dict) and data.get("name") in _builtin_datasets() and "factory" not in data:
        bundle = load_dataset(DataConfig(name=data["name"]))
        return (lambda: (images for images, _ in bundle.test.batches(256))), f"the {data['name']} test split", output
    shape = described["input_shape"]
    return onnx_export.random_inputs(shape), "64 seeded random inputs (the run's data is not at hand)", output
