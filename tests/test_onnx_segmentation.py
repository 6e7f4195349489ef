"""ONNX for segmentation networks: interpolate-based upsampling converts (compat rewrite), a model paddle2onnx cannot
convert is refused before any work, reports carry no terminal escape codes, `slimkit export` of a Python run of the
user's own data verifies without reloading it."""

import json
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

import slimkit
from slimkit import PTQ, ConfigError, DataBundle, FilterPruning, Finetune, Pipeline, compat
from slimkit.data import ArrayDataset
from slimkit.data.shapes import make_shapes
from slimkit.deploy import onnx as onnx_export
from slimkit.deploy.onnx import OnnxModel
from slimkit.deploy.paddle_inference import InferenceModel, export_float
from slimkit.run.cli import main

QUICK = {"epochs": 1, "batch_size": 16, "progress": False, "max_steps_per_epoch": 2}
REPORT = {"latency_runs": 1, "latency_warmup": 0}
SEG = {"loss": "segmentation", "metric": "segmentation"}


class Upsample(nn.Layer):
    def __init__(self, **interpolate):
        super().__init__()
        self.conv, self.interpolate = nn.Conv2D(1, 3, 3, padding=1), interpolate

    def forward(self, x):
        return F.interpolate(self.conv(x), **self.interpolate)


def _exported(model, folder, shape=(1, 1, 8, 8)):
    paddle.seed(0)
    model.eval()
    return export_float(model, folder, list(shape))


@pytest.mark.parametrize("interpolate", [{"scale_factor": 2, "mode": "bilinear"},
                                         {"scale_factor": 2.0, "mode": "nearest"},
                                         {"scale_factor": [2, 4], "mode": "bilinear", "align_corners": True}])
def test_scale_factor_interpolation_is_rewritten_and_converts_exactly(interpolate, tmp_path):
    prefix = _exported(Upsample(**interpolate), tmp_path / "paddle")
    original = (tmp_path / "paddle" / "model.pdmodel").read_bytes()
    # Still needed: paddle2onnx stops on the program as Paddle saves it.
    files = [str(prefix) + ".pdmodel", str(prefix) + ".pdiparams", str(tmp_path / "raw.onnx"), "13"]
    done = subprocess.run([sys.executable, "-c", onnx_export._CONVERT, *files], capture_output=True, text=True)
    assert "MUST be ir::FloatAttribute" in done.stderr + done.stdout, "paddle2onnx converts scales now: drop it"
    rewritten = compat.onnx_ready_program(prefix, tmp_path / "rewritten" / "model")
    assert rewritten != str(prefix) and (tmp_path / "paddle" / "model.pdmodel").read_bytes() == original
    # The rewritten program computes what the original does, in Paddle and, converted, in ONNX Runtime.
    x = np.random.RandomState(0).randn(3, 1, 8, 8).astype("float32")
    ours, theirs = InferenceModel(rewritten, "cpu").run(x), InferenceModel(prefix, "cpu").run(x)
    np.testing.assert_array_equal(ours, theirs)
    onnx_export.convert(prefix, tmp_path / "model.onnx")
    np.testing.assert_allclose(OnnxModel(tmp_path / "model.onnx").run(x), theirs, atol=1e-5)


def test_a_program_without_scales_is_left_as_it_is(tmp_path):
    prefix = _exported(Upsample(size=[16, 16], mode="bilinear"), tmp_path / "paddle")
    assert compat.onnx_ready_program(prefix, tmp_path / "rewritten" / "model") == str(prefix)
    assert not (tmp_path / "rewritten").exists()


def test_small_unet_trains_prunes_quantizes_and_exports_to_onnx(tmp_path):
    x, masks = make_shapes(count=64, seed=0)
    paddle.seed(0)
    model = slimkit.build_model("small_unet", num_classes=4, in_channels=1)
    stages = [Finetune(name="train"), FilterPruning(ratios=0.3), PTQ(calibration_batches=1, runtime="cpu")]
    reports = Pipeline(model, (x, masks), stages, task=SEG, train=QUICK, out_dir=tmp_path, verbose=False,
                       report=REPORT, export={"formats": ["paddle", "onnx"]}).run()
    for report in reports:
        record = report.extra["export"]["onnx"]
        assert record["ok"], (report.stage, record)
    assert reports[-1].extra["export"]["onnx"]["int8"]
    assert reports[1].extra["export"]["onnx"]["max_abs_diff"] <= 1e-4
    text = (tmp_path / "report.md").read_text() + (tmp_path / "report.json").read_text()
    assert "\x1b" not in text and "\\u001b" not in text and "WARNING" not in text


class FractionalUpsample(nn.Layer):
    """x1.5 on 7 pixels: 10.5, no whole output size to rewrite to; paddle2onnx cannot convert it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(1, 2, 3, padding=1)
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        return self.fc(F.interpolate(self.conv(x), scale_factor=1.5).mean(axis=[2, 3]))


def test_a_model_paddle2onnx_cannot_convert_is_refused_before_any_work(tmp_path):
    x = np.random.RandomState(0).randn(40, 1, 7, 7).astype("float32")
    y = np.arange(40) % 3
    pipeline = Pipeline(FractionalUpsample(), (x, y), [Finetune()], train=QUICK, out_dir=tmp_path, verbose=False,
                        export={"formats": ["paddle", "onnx"]})
    with pytest.raises(ConfigError, match="export.formats: the model cannot be converted to ONNX: .*ir::FloatAttribute"
                       ) as err:
        pipeline.run()
    assert "\x1b" not in err.value.message and "drop onnx from export.formats" in err.value.hint
    assert not (tmp_path / "00-baseline").exists()


def test_the_converters_error_reaches_notes_without_escape_codes():
    coloured = "\x1b[0;31m2026-12-07 [ERROR]\tFailed: no mapper\x1b[0m\n"
    done = subprocess.CompletedProcess([], 1, stdout="", stderr=coloured)
    assert onnx_export._last_error(done) == "2026-12-07 [ERROR]\tFailed: no mapper"


def test_slimkit_export_of_a_python_run_on_own_data(tmp_path, capsys):
    x, masks = make_shapes(count=40, seed=4)
    bundle = DataBundle(name="rects", train=ArrayDataset(x[:24], masks[:24]), val=ArrayDataset(x[24:30], masks[24:30]),
                        test=ArrayDataset(x[30:], masks[30:]), num_classes=4, input_shape=(1, 32, 32),
                        class_names=list("abcd"), task="segmentation")
    paddle.seed(0)
    model = slimkit.build_model("small_unet", num_classes=4, in_channels=1)
    Pipeline(model, bundle, [Finetune()], train=QUICK, out_dir=tmp_path / "run", verbose=False, report=REPORT).run()
    assert main(["export", str(tmp_path / "run"), "--format", "onnx", "--to", str(tmp_path / "ship")]) == 0, \
        capsys.readouterr().err
    record = json.loads((tmp_path / "ship" / "verification.json").read_text())
    assert record["ok"] and record["samples"] == 64 and record["inputs"].startswith("64 seeded random inputs")
    arrays = Pipeline(model, (x, masks), [Finetune()], task=SEG, train=QUICK, out_dir=tmp_path / "arrays",
                      verbose=False, report=REPORT)
    arrays.run()
    assert main(["export", str(tmp_path / "arrays"), "--format", "onnx", "--to", str(tmp_path / "ship2")]) == 0
