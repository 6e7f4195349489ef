"""The deployable files of every stage, in the formats asked.

    export: {formats: [paddle, onnx]}      # config block; Pipeline(..., export={...}) in Python

`export_formats` runs after each stage is measured: `paddle` is the stage's Paddle Inference
export (`<stage>/inference/model.pdmodel` + `.pdiparams`, int8 for QAT/PTQ stages), `onnx`
converts that export to `<stage>/onnx/model.onnx` and verifies it in ONNX Runtime against
Paddle's predictor on the batches it is given (`<stage>/onnx/verification.json`, also in
the report's `extra`). A model paddle2onnx cannot convert is refused before any work
(`check_onnx`, called by the pipeline's checks).
`slimkit export` (slimkit.run.ship) copies these files out of a finished run.
"""

import dataclasses
import json
import sys
from pathlib import Path
from typing import List, Literal

from ..core.errors import ConfigError, ModelError
from ..core.schema import Options, option
from . import onnx as onnx_export
from .paddle_inference import MODEL_FILE, PARAMS_FILE, export_stage, native_output_captured, stage_export_prefix

FORMATS = ("paddle", "onnx")
PADDLE_FILES = (MODEL_FILE, PARAMS_FILE)
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
    tolerance: float = option(1e-4, "largest |ONNX Runtime - Paddle| output difference accepted on the evaluated "
                                    "split (for int8: of the QDQ arithmetic, without ORT's int8 kernels)", gt=0)
    min_top1_agreement: float = option(0.99, "smallest fraction of samples (pixels, for dense outputs) on which "
                                             "ONNX Runtime and Paddle must pick the same class", ge=0, le=1)

    def check(self):
        self.formats = list(dict.fromkeys(self.formats))
        if "onnx" in self.formats:
            onnx_export.require_onnx("formats")


def has_paddle_files(prefix):
    return all((Path(prefix).parent / name).is_file() for name in PADDLE_FILES)


def export_paddle(model, folder, input_shape):
    """`folder/inference/model` written by the one stage export (deploy.paddle_inference.export_stage)."""
    # The static executor jit.save runs logs from C++ ("New Executor is Running"): kept off the console.
    with native_output_captured() as captured:
        try:
            return export_stage(model, folder, input_shape)
        except Exception:
            sys.stderr.write(captured())
            raise


def export_formats(model, folder, input_shape, config, report, inputs, output=None):
    """Write the stage's deployable files; record them in `report.extra['export']`, a mismatch in its notes.

    `inputs()` gives the batches the ONNX file is verified on (images, or (images, labels));
    `output` is the model output its agreement reads (task.output).
    """
    if not config.formats:
        return
    prefix = stage_export_prefix(folder)
    if not has_paddle_files(prefix):  # the pipeline's export failed and is noted: nothing to convert
        report.extra["export"] = {"paddle": None}
        if "onnx" in config.formats:
            report.add_note("no ONNX export: the stage has no Paddle Inference export to convert", "onnx")
        return
    record = {"paddle": str(prefix.parent)}
    if "onnx" in config.formats:
        target = Path(folder) / onnx_export.ONNX_DIR
        try:
            onnx = onnx_export.export_onnx(prefix, target, inputs, output, config.opset, config.tolerance,
                                           config.min_top1_agreement)
        except ModelError as err:  # the stage is done and saved: the run goes on, the failure is on record
            onnx = {"ok": False, "error": err.message, "file": None}
            target.mkdir(parents=True, exist_ok=True)
            (target / onnx_export.RECORD_FILE).write_text(json.dumps(onnx, indent=2))
        record["onnx"] = onnx
        report.add_note(_onnx_note(onnx), "onnx")
    report.extra["export"] = record


def check_onnx(config, model, input_shape):
    """ConfigError, before any work, when the onnx format is asked and paddle2onnx cannot convert `model`."""
    if "onnx" not in config.formats:
        return
    reason = onnx_export.check_convertible(model, input_shape, config.opset)
    if reason:
        raise ConfigError("export.formats", f"the model cannot be converted to ONNX: {reason}",
                          "drop onnx from export.formats (the Paddle Inference files in <stage>/inference/ are "
                          "written either way); docs/deployment.md lists what converts")


def _onnx_note(record):
    if not record["ok"]:
        return "WARNING: " + onnx_export.mismatch_text(record)
    kind = "int8 QDQ" if record["int8"] else "float"
    return (f"ONNX export ({kind}, opset {record['opset']}) verified in ONNX Runtime: max abs output difference "
            f"{record['max_abs_diff']:.2g}, top-1 agreement {record['top1_agreement']:.2%} on "
            f"{record['samples']} samples of {record.get('inputs', 'the test split')} ({record['file']})")
