"""Segmentation end to end: the shapes dataset, small_unet pruned exactly, a YAML pipeline with mIoU per stage."""

import json
from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml
from prune_checks import _randomize_bn, check_attributes, check_exact, check_jit_roundtrip, run

import slimkit
from slimkit import Finetune
from slimkit.core.errors import ConfigError
from slimkit.core.surgery import capture
from slimkit.data.shapes import CLASSES, make_shapes
from slimkit.pruning import analyze, prune
from slimkit.run.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_shapes_are_seeded_and_every_labelled_pixel_is_drawn():
    images, labels = make_shapes(count=40, seed=3)
    again, same = make_shapes(count=40, seed=3)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, same)
    assert images.shape == (40, 1, 32, 32) and labels.shape == (40, 32, 32)
    assert set(np.unique(labels)) == set(range(len(CLASSES)))
    # shapes are bright (>= 0.6) on a dark background (< 0.35): the labels are what the image shows
    assert (images[:, 0][labels > 0] >= 0.6).all() and (images[:, 0][labels == 0] < 0.35).all()


def test_shapes_dataset_is_a_segmentation_bundle_and_rejects_crop_augmentation():
    data = slimkit.load_dataset(name="shapes")
    assert data.task == "segmentation" and data.num_classes == 4 and data.input_shape == (1, 32, 32)
    assert data.train.labels.shape[1:] == (32, 32) and len(data.train) + len(data.val) + len(data.test) == 600
    assert slimkit.load_dataset(name="digits").task == "classification"
    with pytest.raises(ConfigError, match="augment: the shapes dataset has per-pixel labels"):
        slimkit.DataConfig(name="shapes", augment=True)


def test_small_unet_prunes_exactly_with_skip_concatenations_and_upsampling(tmp_path):
    shape = [2, 1, 32, 32]

    def build():
        paddle.seed(0)
        return slimkit.build_model("small_unet", num_classes=4, in_channels=1)

    model = build()
    _randomize_bn(model)
    graph = analyze(model, shape)
    original = capture(model)
    x = paddle.to_tensor(np.random.RandomState(0).randn(*shape).astype("float32"))
    result = prune(model, shape, ratios=0.3, graph=graph)
    assert result.flops_ratio < 0.85 and list(result.skipped) == ["head"]  # only the output layer stays whole
    outs = run(model, x)
    assert outs[0].shape == (2, 4, 32, 32)
    check_attributes(model)
    check_exact(build, original, graph, result.keep, x, outs)
    check_jit_roundtrip(model, shape, x, outs, tmp_path)


def _config(tmp_path, **changes):
    config = yaml.safe_load((ROOT / "configs" / "shapes_segmentation.yaml").read_text())
    config["data"]["train_samples"] = 64
    config["train"].update(epochs=1, max_steps_per_epoch=2, eval_batch_size=64)
    config["report"] = {"latency_runs": 2, "latency_warmup": 1}
    for key, value in changes.items():
        config[key] = value
    path = tmp_path / "seg.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_yaml_segmentation_pipeline_reports_miou_in_every_row(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(_config(tmp_path)), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out  # 100 columns: the secondary metric may give way there, not in report.md
    assert "mIoU %" in printed and "top-1" not in printed
    table = (out / "report.md").read_text()
    assert "| mIoU % | pixel acc % |" in table and "top-1" not in table
    stages = json.loads((out / "report.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["baseline", "train", "filter_pruning", "recover"]
    for s in stages:
        assert list(s["metrics"]) == ["miou", "pixel_acc"] and 0 < s["metrics"]["miou"] <= 1
        assert s["top1"] is None
    assert stages[2]["flops"] < 0.85 * stages[0]["flops"]
    assert "| mIoU % | pixel acc % |" in (out / "report.md").read_text()
    assert main(["report", str(out)]) == 0
    assert "mIoU %" in capsys.readouterr().out


@pytest.mark.parametrize("task, stages, message", [
    ({"loss": "segmentaton"}, None, "task.loss: unknown loss 'segmentaton'"),
    ({"output": 2}, None, "task.output: the model returns a single tensor"),
    ({}, [{"type": "finetune"}, {"type": "distill"}], "stages[1]: distill works on classification models only"),
    ({"aux_weights": [0.4]}, None, "task.aux_weights: a list of weights is for auxiliary outputs in a list or tuple, "
                                   "and the model returns one tensor in training mode"),
])
def test_bad_task_values_exit_2_before_any_work(tmp_path, capsys, task, stages, message):
    changes = {"task": task} if stages is None else {"stages": stages}
    earlier = tmp_path / "run" / "01-train" / "model.pdparams"  # a previous run's stage
    earlier.parent.mkdir(parents=True)
    earlier.write_text("weights")
    assert main(["run", str(_config(tmp_path, **changes)), "--out", str(earlier.parents[1]), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [earlier.relative_to(tmp_path), Path("seg.yaml")], "nothing measured, trained or removed"


def test_yaml_pipeline_with_an_aux_head_prunes_it_and_finetunes_on_both_outputs(tmp_path):
    stages = [{"type": "finetune", "name": "train"}, {"type": "filter_pruning", "ratios": 0.5},
              {"type": "finetune", "name": "recover"}]
    path = _config(tmp_path, model={"name": "small_unet", "args": {"aux_head": True}},
                   task={"aux_weights": [0.4]}, stages=stages)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    stages = json.loads((out / "report.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["baseline", "train", "filter_pruning", "recover"]
    assert all(0 < s["metrics"]["miou"] <= 1 for s in stages)
    pruned = slimkit.load_model(out / "03-recover")
    assert pruned.aux[0][0].weight.shape[:2] == [8, pruned.enc3[1][0].weight.shape[0]] == [8, 16]
    pruned.train()
    assert [o.shape for o in pruned(paddle.zeros([2, 1, 32, 32]))] == [[2, 4, 32, 32]] * 2


def test_ptq_of_a_segmenter_reports_the_exported_models_miou(tmp_path):
    data = slimkit.load_dataset(name="shapes", train_samples=64)
    model = slimkit.build_model("small_unet", num_classes=4, in_channels=1)
    pipeline = slimkit.Pipeline(model, data, [slimkit.PTQ(calibration_batches=2)], out_dir=tmp_path / "run",
                                train={"batch_size": 32, "eval_batch_size": 64}, report={"latency_runs": 2},
                                verbose=False)
    report = pipeline.run()[-1]
    exported, eager = report.metrics, report.extra["eager_metrics"]
    assert list(exported) == ["miou", "pixel_acc"] and report.top1 is None
    # int8 rounding moves a few pixels: the exported model is measured, by the same metric code
    assert abs(exported["pixel_acc"] - eager["pixel_acc"]) < 0.05 and exported != eager
    assert "miou, pixel_acc, size and latency are measured on the exported files" in " ".join(report.notes)


def test_taylor_scores_of_a_segmenter_come_from_the_pixel_loss():
    from slimkit.pruning.criteria import collect_taylor_data, get_criterion, score_groups

    data = slimkit.load_dataset(name="shapes", train_samples=64)
    engine = slimkit.Engine(data, {"batch_size": 16, "eval_batch_size": 16})
    model = slimkit.build_model("small_unet", num_classes=4, in_channels=1)
    groups = [g for g in analyze(model, [1, 1, 32, 32]).prunable() if g.roots == ["enc1.0"]]
    scores = score_groups(model, groups, "taylor", engine)[groups[0].name]

    def pixel_cross_entropy(m, x, y):  # written out: mean of -log p(label) over every pixel
        out = m(x)
        picked = paddle.take_along_axis(paddle.nn.functional.log_softmax(out, axis=1), y.unsqueeze(1), axis=1)
        return -picked.mean(), out

    batches = engine.batches("train", 16, shuffle=True, seed=0, max_batches=4)
    acts, grads = collect_taylor_data(model, ["enc1.0"], batches, pixel_cross_entropy)["enc1.0"]
    expected = get_criterion("taylor").scores(None, grads=[grads], activations=[acts])
    np.testing.assert_allclose(scores, expected, rtol=1e-4)
    assert len(scores) == 8 and np.all(scores > 0)


def test_resume_with_another_task_is_refused(tmp_path):
    data = slimkit.load_dataset(name="shapes", train_samples=32)
    model = slimkit.build_model("small_unet", num_classes=4, in_channels=1)
    options = dict(out_dir=tmp_path / "run", verbose=False, report={"latency_runs": 1, "latency_warmup": 0},
                   train={"batch_size": 16, "max_steps_per_epoch": 1})
    slimkit.Pipeline(model, data, [Finetune(epochs=1)], **options).run()
    again = slimkit.Pipeline(model, data, [Finetune(epochs=1)], task={"ignore_index": 0}, **options)
    with pytest.raises(slimkit.ResumeError, match="different task"):
        again.run(resume=True)
