"""Every number in a stage report is measured on the model after that stage."""

import contextlib
import io
import json
import os

import paddle

import slimkit
from slimkit import Finetune, Pipeline


def test_report_numbers_match_independent_measurements(digits, tmp_path):
    paddle.seed(0)
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    pipeline = Pipeline(model, digits, stages=[Finetune(epochs=2, name="train")], out_dir=tmp_path,
                        train={"progress": False}, report={"latency_runs": 5, "latency_warmup": 2}, verbose=False)
    base, trained = pipeline.run()
    with contextlib.redirect_stdout(io.StringIO()):
        expected_flops = paddle.flops(pipeline.model, [1, 1, 8, 8])
    assert trained.flops == expected_flops
    assert trained.params == sum(int(p.numel()) for p in pipeline.model.parameters())
    assert trained.size_bytes == os.path.getsize(tmp_path / "01-train" / "model.pdparams")
    assert trained.latency_ms > 0 and base.latency_ms > 0
    acc = slimkit.Engine(digits).evaluate(pipeline.model, "test")
    assert trained.top1 == acc["top1"] and trained.top5 == acc["top5"]
    assert trained.top1 > 0.9 > base.top1, "training must show in the measured accuracy"
    assert trained.seconds > 0


def test_reports_written_as_json_and_markdown(digits, tmp_path):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    reports = Pipeline(model, digits, stages=[Finetune(epochs=1)], out_dir=tmp_path,
                       train={"progress": False}, report={"latency_runs": 3}, verbose=False).run()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [s["stage"] for s in saved["stages"]] == ["baseline", "finetune"]
    assert saved["stages"][1]["flops"] == reports[1].flops
    assert saved["environment"]["paddle"] == paddle.__version__
    markdown = (tmp_path / "report.md").read_text()
    assert "| baseline |" in markdown and "| finetune |" in markdown and "latency" in markdown


def test_flops_buffers_do_not_leak_into_the_state_dict():
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    before = set(model.state_dict())
    slimkit.count_flops(model, [1, 1, 8, 8])
    assert set(model.state_dict()) == before


def test_zero_flops_layers_are_reported_not_hidden():
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    _, zero = slimkit.count_flops(model, [1, 1, 8, 8])
    assert "MaxPool2D" in zero


def test_pipeline_leaves_the_input_model_unchanged(digits, tmp_path):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    pipeline = Pipeline(model, digits, stages=[Finetune(epochs=1)], out_dir=tmp_path,
                        train={"progress": False}, report={"latency_runs": 3}, verbose=False)
    pipeline.run()
    assert pipeline.model is not model
    assert all((model.state_dict()[k].numpy() == v).all() for k, v in before.items())


def test_flops_counting_on_a_wrong_shape_leaves_no_hooks_behind():
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    model.eval()
    x = paddle.randn([2, 1, 8, 8])
    expected = model(x).numpy()
    before = set(model.state_dict())
    try:
        slimkit.count_flops(model, [1, 3, 8, 8])  # 3 channels: the forward fails inside paddle.flops
    except slimkit.ModelError:
        pass
    else:
        raise AssertionError("a wrong input shape must be a ModelError")
    assert all(not layer._forward_post_hooks for layer in model.sublayers(include_self=True))
    assert set(model.state_dict()) == before
    assert (model(x).numpy() == expected).all()
