"""The deployable files of every stage, in the formats asked, and the files to ship from a finished run.

    export: {formats: [paddle, onnx]}      # config block; Pipeline(..., export={...}) in Python

`export_formats` runs after each stage is measured: `paddle` is the stage's Paddle Inference
export (`<stage>/inference/model.pdmodel` + `.pdiparams`, int8 for QAT/PTQ stages), `onnx`
converts that export to `<stage>/onnx/model.onnx` and verifies it in ONNX Runtime against
Paddle's predictor (`<stage>/onnx/verification.json`, also in the report's `extra`).
`export_run` is `slimkit export RUN_DIR [--stage NAME] --format paddle|onnx --to DIR`.
"""

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import List, Literal

from ..core.errors import ConfigError, ModelError
from ..core.schema import Options, _suggest, option
from . import onnx as onnx_export
from .paddle_inference import OUTPUTS_FILE, export_stage, native_output_captured, stage_export_prefix

FORMATS = ("paddle", "onnx")
PADDLE_FILES = ("model.pdmodel", "model.pdiparams")
ONNX_FILES = (onnx_export.ONNX_FILE, onnx_export.RECORD_FILE)


@dataclasses.dataclass
class ExportConfig(Options):
    """Deployable files written into every stage folder (config block `export`)."""

    formats: List[Literal["paddle", "onnx"]] = option(
        default_factory=lambda: ["paddle"],
        doc="paddle: Paddle Inference files in `<stage>/inference/`; onnx: also `<stage>/onnx/model.onnx`, "
            "verified in ONNX Runtime (needs `pip install -e \".[onnx]\"`)")
    opset: int = option(13, "ONNX opset of the onnx files (13 or later: per-channel int8 QDQ needs it)",
                        ge=13, le=19)
    tolerance: float = option(1e-4, "largest |ONNX Runtime - Paddle| logit difference accepted on the test "
                                    "split (for int8: of the QDQ arithmetic, without ORT's int8 kernels)", gt=0)
    min_top1_agreement: float = option(0.99, "smallest fraction of test samples on which ONNX Runtime and Paddle "
                                             "must pick the same class", ge=0, le=1)

    def check(self):
        self.formats = list(dict.fromkeys(self.formats))
        if "onnx" in self.formats:
            onnx_export.require_onnx("formats")


def _has_paddle_files(prefix):
    return all((Path(prefix).parent / name).is_file() for name in PADDLE_FILES)


def _export_paddle(model, folder, input_shape):
    """`folder/inference/model` written by the one stage export (deploy.paddle_inference.export_stage)."""
    # The static executor jit.save runs logs from C++ ("New Executor is Running"): kept off the console.
    with native_output_captured() as captured:
        try:
            return export_stage(model, folder, input_shape)
        except Exception:
            sys.stderr.write(captured())
            raise


def export_formats(model, folder, input_shape, engine, config, report):
    """Write the stage's deployable files; record them in `report.extra['export']`, a mismatch in its notes."""
    if not config.formats:
        return
    prefix = stage_export_prefix(folder)
    if not _has_paddle_files(prefix):  # the pipeline's export failed and is noted: nothing to convert
        report.extra["export"] = {"paddle": None}
        if "onnx" in config.formats:
            report.add_note("no ONNX export: the stage has no Paddle Inference export to convert", "onnx")
        return
    record = {"paddle": str(prefix.parent)}
    if "onnx" in config.formats:
        target = Path(folder) / onnx_export.ONNX_DIR
        try:
            onnx = onnx_export.export_onnx(prefix, target, engine, config.opset, config.tolerance,
                                           config.min_top1_agreement)
        except ModelError as err:  # the stage is done and saved: the run goes on, the failure is on record
            onnx = {"ok": False, "error": err.message, "file": None}
            target.mkdir(parents=True, exist_ok=True)
            (target / onnx_export.RECORD_FILE).write_text(json.dumps(onnx, indent=2))
        record["onnx"] = onnx
        report.add_note(_onnx_note(onnx), "onnx")
    report.extra["export"] = record


def _onnx_note(record):
    if not record["ok"]:
        return "WARNING: " + onnx_export.mismatch_text(record)
    kind = "int8 QDQ" if record["int8"] else "float"
    return (f"ONNX export ({kind}, opset {record['opset']}) verified in ONNX Runtime: max abs logit difference "
            f"{record['max_abs_diff']:.2g}, top-1 agreement {record['top1_agreement']:.2%} on "
            f"{record['samples']} test samples ({record['file']})")


# --- slimkit export -------------------------------------------------------------------------
def export_run(run_dir, to, stage=None, fmt="paddle"):
    """Copy the deployable files of a finished run's stage (default: the last) into `to`; returns their paths."""
    if fmt not in FORMATS:
        raise ConfigError("--format", f"{fmt!r} is not an export format", _suggest(fmt, list(FORMATS)))
    if fmt == "onnx":
        onnx_export.require_onnx("--format")
    folder = find_stage(run_dir, stage)
    names = PADDLE_FILES if fmt == "paddle" else ONNX_FILES
    target = Path(to)
    taken = [n for n in (*names, OUTPUTS_FILE) if (target / n).exists()]
    if taken:
        raise ConfigError("--to", f"{target} already holds {', '.join(taken)}", "choose an empty or new folder")
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
    done = sorted(p for p in run_dir.glob("[0-9][0-9]-*") if (p / "stage.json").is_file())
    if not done:
        raise ConfigError("RUN_DIR", f"{run_dir} holds no finished stage", "give the --out folder of a slimkit run")
    if stage is None:
        return done[-1]
    by_name = {p.name: p for p in done} | {p.name[3:]: p for p in done}
    if stage not in by_name:
        raise ConfigError("--stage", f"{run_dir} has no finished stage {stage!r}",
                          _suggest(stage, [p.name[3:] for p in done]))
    return by_name[stage]


def _paddle_files(folder):
    if _has_paddle_files(stage_export_prefix(folder)):
        return stage_export_prefix(folder).parent
    from ..models.checkpoint import load_model

    model = load_model(folder)  # a stage of a run made before every stage was exported
    pipeline = json.loads((folder.parent / "pipeline.json").read_text())
    return _export_paddle(model, folder, pipeline["input_shape"]).parent


def _onnx_files(folder, run_dir):
    source = folder / onnx_export.ONNX_DIR
    record_path = source / onnx_export.RECORD_FILE
    if not record_path.is_file():
        record = onnx_export.export_onnx(_paddle_files(folder) / "model", source, _run_engine(run_dir))
    else:
        record = json.loads(record_path.read_text())
    if not record["ok"]:
        raise ModelError(onnx_export.mismatch_text(record),
                         "ship the Paddle files (--format paddle), or report the model as a conversion bug")
    return source


def _builtin_datasets():
    import typing

    from ..data.datasets import DataConfig

    return typing.get_args(typing.get_type_hints(DataConfig)["name"])


def _run_engine(run_dir):
    from ..data import DataConfig, load_dataset
    from ..train.engine import Engine

    described = json.loads((Path(run_dir) / "pipeline.json").read_text())
    data = described.get("data")
    if isinstance(data, dict):  # the description of what was used: a built-in dataset is reloaded by its name
        data = data.get("name") if data.get("name") in _builtin_datasets() and "factory" not in data else None
    if not isinstance(data, str):
        raise ModelError(f"{run_dir} was run on data slimkit cannot reload by name, needed to verify the ONNX file",
                         "run it with `export: {formats: [paddle, onnx]}` to export while the data is at hand")
    return Engine(load_dataset(DataConfig(name=data)), task=described.get("task"))
