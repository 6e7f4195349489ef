"""Data without labels: the model given is the reference; stages learn from its outputs and report agreement."""

import copy
import json

import numpy as np
import paddle
import paddle.nn as nn
import pytest
import yaml

import slimkit
from slimkit import PTQ, ConfigError, DataError, Distillation, FilterPruning, Finetune, Pipeline
from slimkit.data.shapes import make_shapes
from slimkit.run.cli import main
from slimkit.run.config import RunConfig, build_pipeline
from slimkit.train.metrics import Agreement

QUICK = {"epochs": 1, "batch_size": 32, "progress": False}
REPORT = {"latency_runs": 1, "latency_warmup": 0}


def predictions(model, x):
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def test_inputs_alone_make_the_original_the_reference(digits, trained_cnn, tmp_path):
    X = digits.train.images  # no labels
    stages = [FilterPruning(ratios=0.6), Finetune(name="recover", epochs=3, lr=0.02)]
    pipeline = Pipeline(copy.deepcopy(trained_cnn), X, stages, train=QUICK, out_dir=tmp_path, verbose=False,
                        report=REPORT)
    assert not pipeline.data.labelled and pipeline.task.name == "agreement"
    before = {k: v.numpy().copy() for k, v in pipeline.input_model.state_dict().items()}
    reports = {r.stage: r for r in pipeline.run()}
    assert reports["baseline"].metrics == {"top1_agreement": 1.0}
    pruned = reports["filter_pruning"].metrics["top1_agreement"]
    recovered = reports["recover"].metrics["top1_agreement"]
    assert pruned < 0.9 and recovered > pruned + 0.1, "distillation from the original recovers its answers"
    # The reported agreement is the share of test inputs where the result picks the original's class.
    test = pipeline.data.test.images
    same = (predictions(pipeline.model, test).argmax(1) == predictions(trained_cnn, test).argmax(1)).mean()
    assert recovered == pytest.approx(same, abs=1e-9)
    assert all(np.array_equal(before[k], v.numpy()) for k, v in pipeline.input_model.state_dict().items())
    used = json.loads((tmp_path / "report.json").read_text())["config"]["data"]
    assert used["labels"].startswith("none: the original model's outputs are the reference")


def test_ptq_calibrates_on_inputs_and_reports_the_exports_agreement(digits, trained_cnn, tmp_path):
    pipeline = Pipeline(copy.deepcopy(trained_cnn), digits.train.images, [PTQ(calibration_batches=2, runtime="cpu")],
                        train=QUICK, out_dir=tmp_path, verbose=False, report=REPORT)
    report = pipeline.run()[-1]
    assert report.extra["calibration_batches"] == 2
    assert 0.9 <= report.metrics["top1_agreement"] <= 1.0, "the int8 export mostly agrees with the original"
    assert "top1_agreement" in (tmp_path / "report.md").read_text() or "top-1 agree" in \
        (tmp_path / "report.md").read_text()


def test_dense_outputs_report_per_pixel_agreement(tmp_path):
    images, _ = make_shapes(count=48, seed=0)
    paddle.seed(0)
    model = slimkit.build_model("small_unet", num_classes=4, in_channels=1)
    reports = Pipeline(model, images, [Finetune(epochs=1)], train={**QUICK, "max_steps_per_epoch": 1},
                       out_dir=tmp_path, verbose=False, report=REPORT).run()
    assert reports[0].metrics == {"pixel_agreement": 1.0}
    assert 0 <= reports[1].metrics["pixel_agreement"] <= 1
    metric = Agreement("pixel_agreement")
    ours = np.zeros((1, 4, 2, 2))
    ours[0, 1] = 1  # class 1 everywhere
    theirs = np.zeros((1, 4, 2, 2))
    theirs[0, 1, 0] = 1
    theirs[0, 2, 1] = 1  # class 1 on the first row, 2 on the second
    metric.update(ours, theirs)
    assert metric.result() == {"pixel_agreement": 0.5}


class Sequence(nn.Layer):
    """A recogniser-like model: [N, T, vocabulary] scores."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(1, 6, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean(axis=2).transpose([0, 2, 1])  # [N, W=8, 6]


def same_strings(outputs, reference):
    """A CTC-style greedy decode compared as strings."""
    def decode(scores):
        best = scores.argmax(-1)
        return ["".join(str(c) for i, c in enumerate(row) if c and (i == 0 or c != row[i - 1])) for row in best]
    return float(np.mean([a == b for a, b in zip(decode(outputs), decode(reference))]))


def test_other_outputs_need_the_users_agreement(digits, tmp_path):
    X = digits.train.images[:200]
    with pytest.raises(ConfigError, match=r"task.agreement: the model's output has shape \[1, 8, 6\]") as err:
        Pipeline(Sequence(), X, [Finetune()], verbose=False)
    assert "fn(outputs, reference_outputs)" in err.value.hint
    paddle.seed(0)
    pipeline = Pipeline(Sequence(), X, [Finetune(epochs=1)], task={"agreement": same_strings}, train=QUICK,
                        out_dir=tmp_path, verbose=False, report=REPORT)
    reports = pipeline.run()
    assert reports[0].metrics == {"same_strings": 1.0} and 0 <= reports[1].metrics["same_strings"] <= 1
    assert json.loads((tmp_path / "report.json").read_text())["config"]["task"]["agreement"] == \
        "test_unlabelled_data:same_strings"


class InputsOnly(paddle.io.Dataset):
    def __init__(self, x):
        super().__init__()
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def test_a_dataset_yielding_inputs_alone(digits, trained_cnn, tmp_path):
    pipeline = Pipeline(copy.deepcopy(trained_cnn), InputsOnly(digits.train.images[:300]), [Finetune(epochs=1)],
                        train=QUICK, out_dir=tmp_path, verbose=False, report=REPORT)
    images, reference = next(pipeline.engine.batches("test", 16))
    np.testing.assert_allclose(reference.numpy(), predictions(trained_cnn, images.numpy()), atol=1e-5)
    reports = pipeline.run()
    assert reports[0].metrics == {"top1_agreement": 1.0} and reports[1].metrics["top1_agreement"] > 0.9


def test_what_needs_labels_is_refused_up_front(digits, trained_cnn):
    X = digits.train.images
    with pytest.raises(ConfigError, match="task.loss: classification needs labels, and the data has none"):
        Pipeline(trained_cnn, X, [Finetune()], task={"loss": "classification"}, verbose=False)
    with pytest.raises(ConfigError, match="task.metric: the data has no labels") as err:
        Pipeline(trained_cnn, X, [Finetune()], task={"metric": same_strings}, verbose=False)
    assert "task.agreement" in err.value.hint
    with pytest.raises(ConfigError, match=r"stages\[1\]: distill works on classification models only") as err:
        Pipeline(trained_cnn, X, [FilterPruning(ratios=0.3), Distillation()], verbose=False)
    assert "learn from the original model" in err.value.hint


def write_images(folder, count=24, size=(10, 12), seed=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    pixels = rng.randint(0, 256, size=(count, *size), dtype=np.uint8)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(folder / f"img_{i:03d}.png")
    return pixels


def gray_small(image):
    """A preprocessing hook: the top-left 8x8 of the gray image, scaled to [-1, 1], channels first."""
    return (image[:8, :8].astype("float32") / 127.5 - 1.0).transpose(2, 0, 1)


def test_a_folder_of_images_with_builtin_steps_or_a_hook(tmp_path, trained_cnn):
    pixels = write_images(tmp_path / "imgs")
    data = slimkit.load_dataset(images=str(tmp_path / "imgs"), color="gray", size=[8, 8], mean=[0.5], std=[0.25])
    assert not data.labelled and data.input_shape == (1, 8, 8)
    assert len(data.train) + len(data.val) + len(data.test) == 24
    from PIL import Image

    first = np.asarray(Image.fromarray(pixels[0]).resize((8, 8), Image.BILINEAR)).astype("float32") / 255
    every = np.concatenate([data.train.images, data.val.images, data.test.images])
    assert any(np.allclose(row[0], (first - 0.5) / 0.25, atol=1e-6) for row in every)
    hooked = slimkit.load_dataset(images=str(tmp_path / "imgs"), color="gray", preprocess=gray_small)
    assert hooked.input_shape == (1, 8, 8) and hooked.description["preprocess"] == \
        "test_unlabelled_data:gray_small"
    reports = Pipeline(copy.deepcopy(trained_cnn), {"images": str(tmp_path / "imgs"), "color": "gray",
                                                    "preprocess": gray_small},
                       [Finetune(epochs=1)], train=QUICK, out_dir=tmp_path / "run", verbose=False,
                       report=REPORT).run()
    assert reports[0].metrics == {"top1_agreement": 1.0}


def test_image_folder_problems_name_the_fix(tmp_path):
    write_images(tmp_path / "mixed", count=2, size=(10, 12))
    write_images(tmp_path / "mixed" / "sub", count=1, size=(9, 9), seed=1)
    with pytest.raises(DataError, match=r"img_000.png gives an input of shape \[3, 9, 9\]") as err:
        slimkit.load_dataset(images=str(tmp_path / "mixed"))
    assert "data.size" in err.value.hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="data.images: no image in"):
        slimkit.load_dataset(images=str(tmp_path / "empty"))
    with pytest.raises(DataError, match="data.images: no folder"):
        slimkit.load_dataset(images=str(tmp_path / "missing"))


def test_yaml_images_and_npy_inputs_are_validated_like_every_block(tmp_path, monkeypatch, digits, capsys):
    write_images(tmp_path / "imgs", size=(8, 8))
    (tmp_path / "prep.py").write_text("def fn(image):\n    return image[..., :1].transpose(2, 0, 1) / 255.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    checkpoint = tmp_path / "cnn.pdparams"
    paddle.seed(0)
    paddle.save(slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8).state_dict(),
                str(checkpoint))
    config = {"data": {"images": str(tmp_path / "imgs"), "preprocess": "prep:fn"},
              "model": {"name": "small_cnn", "checkpoint": str(checkpoint)},
              "train": QUICK, "report": REPORT, "stages": [{"type": "finetune", "epochs": 1}]}
    pipeline = build_pipeline(RunConfig.from_dict(config), tmp_path / "run", verbose=False)
    assert pipeline.data.input_shape == (1, 8, 8) and pipeline.task.metric_names == ("top1_agreement",)
    np.save(tmp_path / "x.npy", digits.train.images[:100])
    np.save(tmp_path / "y.npy", digits.train.labels[:100])
    for data, labelled in (({"inputs": str(tmp_path / "x.npy")}, False),
                           ({"inputs": str(tmp_path / "x.npy"), "labels": str(tmp_path / "y.npy")}, True)):
        got = build_pipeline(RunConfig.from_dict({**config, "data": data}), tmp_path / "r", verbose=False)
        assert got.data.labelled == labelled and len(got.data.train) == 70
    bad = [({"preprocess": "prep:fn"}, "preprocess: preprocesses `images`, and none are given"),
           ({"images": "x", "preprocess": "prep:fn", "size": [8, 8]}, "size: the preprocess function replaces"),
           ({"images": "x", "inputs": "x.npy"}, "images: `inputs` and `images` are two sources of data"),
           ({"labels": "y.npy"}, "labels: labels without `inputs`"),
           ({"images": "x", "size": [8]}, r"size: expected \[height, width\]"),
           ({"images": "x", "std": [0]}, r"std\[0\]: 0.0 must be greater than 0")]
    for block, message in bad:
        with pytest.raises(ConfigError, match=message):
            RunConfig.from_dict({**config, "data": block})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**config, "data": {"images": str(tmp_path / "imgs"), "preprocess": "prep:nope"}}))
    assert main(["check", str(path)]) == 2
    assert "data.preprocess: prep has no 'nope'" in capsys.readouterr().err
