"""Careless inputs get one slimkit error naming the fix before any work: NaN/inf data, divergence, bad labels,
a missing channel axis, a model whose forward cannot be traced for pruning."""

import copy
import dataclasses

import numpy as np
import paddle
import paddle.nn as nn
import pytest

import slimkit
from slimkit import DataError, FilterPruning, Finetune, ModelError, Pipeline, to_bundle
from slimkit.core.errors import TrainingError
from slimkit.core.surgery import capture
from slimkit.data.shapes import make_shapes

QUICK = {"epochs": 1, "batch_size": 32, "progress": False, "max_steps_per_epoch": 3}
REPORT = {"latency_runs": 1, "latency_warmup": 0}


def small_model(classes=10):
    paddle.seed(0)
    return slimkit.build_model("small_cnn", num_classes=classes, in_channels=1, input_size=8)


class Samples(paddle.io.Dataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


@pytest.mark.parametrize("source", ["arrays", "dataset"])
def test_nan_in_one_image_of_seven_is_refused_naming_it(source):
    x = np.random.RandomState(0).randn(7, 1, 8, 8).astype("float32")
    x[4, 0, 2, 3] = np.nan
    y = np.arange(7) % 3
    data = (x, y) if source == "arrays" else Samples(x, y)
    with pytest.raises(DataError, match=r"^data: 1 of 7 samples hold NaN or inf values \(sample 4\)"):
        to_bundle(data)
    x[1, 0, 0, 0] = np.inf
    with pytest.raises(DataError, match=r"data\['train'\]: 2 of 7 samples hold NaN or inf values \(samples 1, 4\)"):
        to_bundle({"train": (x, y), "test": (np.zeros_like(x[:2]), y[:2])})


def test_a_diverging_stage_stops_naming_the_stage_and_the_step(digits, trained_cnn, tmp_path):
    model = copy.deepcopy(trained_cnn)
    before = capture(model)
    pipeline = Pipeline(model, digits, [Finetune(name="boom", epochs=2, lr=1e6)],
                        train={**QUICK, "optimizer": "sgd", "weight_decay": 0.0}, out_dir=tmp_path, verbose=False,
                        report=REPORT)
    with pytest.raises(TrainingError, match=r"training boom diverged: the loss is (nan|inf) at step \d+ "
                                            r"\(epoch \d\)|training boom diverged: .* hold NaN or inf by step"):
        pipeline.run()
    after = capture(model)
    assert all(np.array_equal(after["tensors"][k], v) for k, v in before["tensors"].items()), "the model is unchanged"
    assert not (tmp_path / "01-boom" / "stage.json").exists()


@dataclasses.dataclass
class Poison(slimkit.Strategy):
    """A stage of the user's that leaves an infinite weight behind (no training)."""

    def apply(self, model, ctx):
        weight = model.parameters()[0]
        weight.set_value(paddle.full(weight.shape, float("inf")))
        return model


def test_non_finite_weights_after_any_stage_stop_the_run(digits, trained_cnn, tmp_path):
    pipeline = Pipeline(copy.deepcopy(trained_cnn), digits, [Poison(name="poison"), Finetune()], train=QUICK,
                        out_dir=tmp_path, verbose=False, report=REPORT)
    with pytest.raises(TrainingError, match=r"stage poison diverged: features.0.weight hold NaN or inf after the "
                                            "stage") as err:
        pipeline.run()
    assert "--resume" in err.value.hint
    assert not (tmp_path / "02-finetune").exists()


def test_labels_out_of_range_name_the_label_before_training(digits, tmp_path):
    X, y = digits.train.images, digits.train.labels.copy()
    y[5] = 10
    pipeline = Pipeline(small_model(10), (X, y), [Finetune()], train=QUICK, out_dir=tmp_path, verbose=False)
    with pytest.raises(DataError, match=r"data: label 10 is out of range: the model predicts 10 classes \(0..9\)"):
        pipeline.run()
    assert not (tmp_path / "01-finetune").exists()
    with pytest.raises(DataError, match=r"data: label 10 is out of range for 10 classes \(0..9\)"):
        Pipeline(small_model(10), (X, y), [Finetune()], num_classes=10, verbose=False)
    y[5] = -1
    with pytest.raises(DataError, match=r"labels must be class indices 0..9; found negative label\(s\) \[-1\]"):
        Pipeline(small_model(10), (X, y), [Finetune()], verbose=False)


def test_classes_the_labels_do_not_reach_are_the_models(digits, tmp_path):
    keep = digits.train.labels < 9  # class 9 never occurs
    pipeline = Pipeline(small_model(10), (digits.train.images[keep], digits.train.labels[keep]), [Finetune()],
                        train=QUICK, out_dir=tmp_path, verbose=False, report=REPORT)
    assert pipeline.data.num_classes == 9
    pipeline.run()
    assert pipeline.task.num_classes == 10


def test_negative_mask_labels_and_wrong_mask_size():
    x, masks = make_shapes(count=20)
    bad = masks.copy()
    bad[0, 0, 0] = -1
    task = {"loss": "segmentation", "metric": "segmentation"}
    unet = slimkit.build_model("small_unet", num_classes=4, in_channels=1)
    with pytest.raises(DataError, match=r"0..3 \(or ignore_index 255\); found negative label\(s\) \[-1\]"):
        Pipeline(unet, (x, bad), [Finetune()], task=task, verbose=False)
    pipeline = Pipeline(unet, (x, masks[:, :16, :16]), [Finetune()], task=task, verbose=False)
    with pytest.raises(DataError, match=r"the masks are \[16, 16\] per sample, the model's scores \[32, 32\]"):
        pipeline.run()


def test_inputs_without_a_channel_axis_name_the_fix(digits, tmp_path):
    pipeline = Pipeline(small_model(), (digits.train.images[:, 0], digits.train.labels), [Finetune()],
                        out_dir=tmp_path, verbose=False)
    with pytest.raises(ModelError, match=r"the model cannot run on input_shape \[1, 8, 8\]") as err:
        pipeline.run()
    assert err.value.hint == "the inputs have no channel axis: give X[:, None] ([N, 1, H, W])"


class Branchy(nn.Layer):
    """A forward that branches on a tensor value: the trace follows one branch."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2D(1, 8, 3, padding=1), nn.Conv2D(8, 8, 3, padding=1), nn.Linear(8, 10)

    def forward(self, x):
        x = self.c1(x)
        if x.mean() > 0:
            x = self.c2(x)
        return self.fc(x.mean(axis=[2, 3]))


def test_pruning_a_model_with_nothing_traceable_is_an_error_before_work(digits, tmp_path, capsys):
    pipeline = Pipeline(Branchy(), digits, [Finetune(), FilterPruning(ratios=0.5)], train=QUICK, out_dir=tmp_path,
                        verbose=False, report=REPORT)
    message = r"stages\[1\]: filter_pruning: no prunable layer in the model, nothing could be traced as prunable \(c1: "
    with pytest.raises(slimkit.SlimkitError, match=message + r".*c2: Conv2D not called") as err:
        pipeline.run()
    assert "sparse_pruning" in err.value.hint and "paddle.where" in err.value.hint
    assert not (tmp_path / "01-finetune").exists(), "refused before the first stage"
