"""Labels of any shape the task's loss takes (masks, several targets, dicts) from arrays, Datasets and factories;
the task follows the loss and metric, not the labels' shape; loss and metric as Python functions."""

import json
import sys

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

import slimkit
from slimkit import ConfigError, DataError, Finetune, Pipeline, to_bundle
from slimkit.data.shapes import make_shapes
from slimkit.run.config import RunConfig, build_pipeline

SEG = {"loss": "segmentation", "metric": "segmentation"}
QUICK = {"epochs": 1, "batch_size": 16, "progress": False, "max_steps_per_epoch": 2}
REPORT = {"latency_runs": 1, "latency_warmup": 0}
X, MASKS = make_shapes(count=64, seed=1)


class MaskDataset(paddle.io.Dataset):
    """A user's segmentation Dataset: (image, mask) per sample."""

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        return X[i], MASKS[i]


def unet():
    paddle.seed(0)
    return slimkit.build_model("small_unet", num_classes=4, in_channels=1)


def seen_labels():
    """A segmentation loss recording the labels it gets."""
    shapes = []

    def loss(outputs, labels):
        shapes.append(list(labels.shape))
        return slimkit.compat.pixel_cross_entropy(outputs, labels)

    return loss, shapes


@pytest.mark.parametrize("source", ["dataset", "arrays"])
def test_masks_reach_the_loss_whole_from_a_dataset_and_from_arrays(source, tmp_path):
    data = MaskDataset() if source == "dataset" else (X, MASKS)
    loss, shapes = seen_labels()
    pipeline = Pipeline(unet(), data, [Finetune(epochs=1)], task={"loss": loss, "metric": "segmentation"},
                        train=QUICK, out_dir=tmp_path, verbose=False, report=REPORT)
    assert pipeline.data.num_classes == 4 and pipeline.data.task == "segmentation"
    reports = pipeline.run()
    assert shapes and all(s[1:] == [32, 32] for s in shapes), "every mask arrives as [N, 32, 32]"
    assert set(reports[-1].metrics) == {"miou", "pixel_acc"} and 0 < reports[-1].metrics["pixel_acc"] <= 1
    # the same masks on the test split, measured independently of the engine
    test = [pipeline.data.test[i] for i in range(len(pipeline.data.test))]
    pipeline.model.eval()
    with paddle.no_grad():
        pred = pipeline.model(paddle.to_tensor(np.stack([s[0] for s in test]))).numpy().argmax(1)
    masks = np.stack([s[1] for s in test])
    assert reports[-1].metrics["pixel_acc"] == pytest.approx((pred == masks).mean(), abs=1e-6)


def test_masks_from_a_yaml_factory_follow_the_task(tmp_path, monkeypatch):
    (tmp_path / "segdata.py").write_text(
        "from slimkit.data.shapes import make_shapes\n"
        "def load(count=48):\n"
        "    return make_shapes(count=count, seed=2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = RunConfig.from_dict({"data": {"factory": "segdata:load"}, "model": {"name": "small_unet"},
                                  "task": SEG, "train": QUICK, "report": REPORT, "stages": [{"type": "finetune"}]})
    pipeline = build_pipeline(config, tmp_path / "run", verbose=False)
    assert pipeline.data.num_classes == 4 and pipeline.task.name == "segmentation"
    assert pipeline.run()[-1].metrics["miou"] >= 0
    sys.modules.pop("segdata", None)


def test_masks_without_a_segmentation_task_name_the_fix():
    with pytest.raises(DataError, match=r"labels have shape \[32, 32\] per sample; classification takes one class "
                                        r"index per sample") as err:
        Pipeline(unet(), (X, MASKS), [Finetune()], verbose=False)
    assert "task={loss: segmentation, metric: segmentation}" in err.value.hint


def test_ignored_pixels_are_not_a_class():
    masks = MASKS.copy()
    masks[:, 0, :] = 255
    assert to_bundle((X, masks), task=SEG).num_classes == 4
    assert to_bundle((X, masks), task=SEG).task == "segmentation"


class DetectionLike(nn.Layer):
    """Two heads, class scores and a box, returned side by side ([N, 3 + 4])."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2D(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2D(1), nn.Flatten())
        self.cls, self.box = nn.Linear(4, 3), nn.Linear(4, 4)

    def forward(self, x):
        features = self.body(x)
        return paddle.concat([self.cls(features), self.box(features)], axis=1)


class Targets(paddle.io.Dataset):
    """(image, {"cls": int, "box": 4 floats}) per sample, as a detector's Dataset gives."""

    def __init__(self, n=40):
        rng = np.random.RandomState(0)
        self.x = rng.randn(n, 1, 8, 8).astype("float32")
        self.cls = rng.randint(0, 3, n)
        self.box = rng.rand(n, 4).astype("float32")

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], {"cls": self.cls[i], "box": self.box[i]}


def detection_loss(outputs, labels):
    """A loss against dict labels."""
    return F.cross_entropy(outputs[:, :3], labels["cls"]) + F.mse_loss(outputs[:, 3:], labels["box"])


def box_error(outputs, labels):
    return float(np.abs(outputs[:, 3:] - labels["box"]).mean())


@pytest.mark.parametrize("source", ["dataset", "arrays"])
def test_dict_labels_reach_the_users_loss_and_metric(source, tmp_path):
    targets = Targets()
    data = targets if source == "dataset" else (targets.x, {"cls": targets.cls, "box": targets.box})
    paddle.seed(0)
    pipeline = Pipeline(DetectionLike(), data, [Finetune(epochs=2)], task={"loss": detection_loss,
                                                                         "metric": box_error},
                        train={**QUICK, "lr": 0.01}, out_dir=tmp_path, verbose=False, report=REPORT)
    assert pipeline.task.name == "custom" and pipeline.data.num_classes is None
    reports = pipeline.run()
    assert set(reports[-1].metrics) == {"box_error"} and reports[-1].metrics["box_error"] > 0
    assert reports[-1].extra["history"][-1]["train_top1"] is None  # no classes to count
    recorded = json.loads((tmp_path / "report.json").read_text())["config"]["task"]
    assert recorded["loss"] == "test_own_labels:detection_loss" and recorded["metric"] == "test_own_labels:box_error"


def test_several_targets_from_arrays_arrive_as_a_tuple():
    rng = np.random.RandomState(0)
    x = rng.randn(30, 1, 8, 8).astype("float32")
    seen = []

    def loss(outputs, labels):
        seen.append([list(t.shape) for t in labels])
        return outputs.mean() * 0 + labels[1].mean()

    bundle = to_bundle((x, (rng.randint(0, 3, 30), rng.rand(30, 2))))
    engine = slimkit.Engine(bundle, QUICK, task={"loss": loss, "metric": box_error_like})
    images, labels = next(engine.batches("train", 8))
    assert isinstance(labels, tuple) and labels[0].dtype == paddle.int64 and labels[1].dtype == paddle.float32
    assert [list(t.shape) for t in labels] == [[8], [8, 2]]


def box_error_like(outputs, labels):
    return 0.0


def test_python_functions_are_validated_before_any_work(tmp_path):
    def one_argument(outputs):
        return outputs.mean()

    with pytest.raises(ConfigError, match=r"task.loss: .*one_argument\(outputs\) cannot be called as "
                                          r"fn\(outputs, labels\)"):
        Pipeline(unet(), (X, MASKS), [Finetune()], task={"loss": one_argument, "metric": "segmentation"},
                 verbose=False)

    def returns_a_float(outputs, labels):
        return 1.0

    pipeline = Pipeline(unet(), (X, MASKS), [Finetune()], task={"loss": returns_a_float, "metric": "segmentation"},
                        train=QUICK, out_dir=tmp_path / "f", verbose=False, report=REPORT)
    with pytest.raises(ConfigError, match="task.loss: the loss returned float"):
        pipeline.run()
    assert not (tmp_path / "f" / "01-finetune").exists(), "refused before any stage"

    class NoResult:
        def update(self, outputs, labels):
            pass

    with pytest.raises(ConfigError, match="task.metric: NoResult is a class without result"):
        Pipeline(unet(), (X, MASKS), [Finetune()], task={"loss": "segmentation", "metric": NoResult}, verbose=False)
    with pytest.raises(ConfigError, match=r"task.loss: expected string or function \(Python\) or null, got an "
                                          r"integer 3"):
        Pipeline(unet(), (X, MASKS), [Finetune()], task={"loss": 3}, verbose=False)


def test_a_loss_that_cannot_take_the_labels_fails_before_training(tmp_path):
    def wrong(outputs, labels):
        return F.cross_entropy(outputs.mean(axis=[2, 3]), labels)  # [N, C] scores against [N, H, W] masks

    pipeline = Pipeline(unet(), (X, MASKS), [Finetune()], task={"loss": wrong, "metric": "segmentation"},
                        train=QUICK, out_dir=tmp_path, verbose=False, report=REPORT)
    with pytest.raises(ConfigError, match="task.loss: the loss fails on the first samples"):
        pipeline.run()
