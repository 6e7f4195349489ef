"""Tasks: losses and metrics against hand-computed references, output selectors, auxiliary weights, user functions."""

import sys
import textwrap

import numpy as np
import paddle
import pytest

import slimkit
from slimkit.core.errors import ConfigError, ModelError
from slimkit.train.engine import Engine
from slimkit.train.metrics import SegmentationMetric, TopK
from slimkit.train.objective import build_task
from slimkit.train.tasks import TaskConfig

RNG = np.random.RandomState(0)


def reference_miou(pred, labels, num_classes, ignore):
    """Per class IoU by counting pixels one class at a time, the definition written out."""
    valid = labels != ignore
    ious = []
    for c in range(num_classes):
        inter = np.sum((pred == c) & (labels == c) & valid)
        union = np.sum(((pred == c) | (labels == c)) & valid)
        if union:
            ious.append(inter / union)
    return np.mean(ious), np.sum((pred == labels) & valid) / valid.sum()


def test_segmentation_metric_matches_the_definition_over_batches_with_ignored_pixels():
    scores = RNG.randn(6, 5, 7, 9).astype("float32")
    labels = RNG.randint(0, 4, size=(6, 7, 9))  # class 4 is never a label: counted where predicted
    labels[:, 0, :] = 255
    acc = SegmentationMetric(5, ignore_index=255)
    acc.update(scores[:4], labels[:4])
    acc.update(scores[4:], labels[4:])
    miou, pixel_acc = reference_miou(scores.argmax(1), labels, 5, 255)
    got = acc.result()
    assert got["miou"] == pytest.approx(miou, abs=1e-12) and got["pixel_acc"] == pytest.approx(pixel_acc, abs=1e-12)


def test_segmentation_metric_rejects_outputs_that_do_not_match_the_labels():
    with pytest.raises(ModelError, match=r"do not match labels"):
        SegmentationMetric(3).update(np.zeros((2, 3, 8, 8)), np.zeros((2, 4, 4), dtype="int64"))


def test_topk_matches_paddle_topk():
    scores, labels = RNG.randn(50, 10).astype("float32"), RNG.randint(0, 10, 50)
    acc = TopK(10)
    acc.update(scores[:20], labels[:20])
    acc.update(scores[20:], labels[20:])
    top = paddle.topk(paddle.to_tensor(scores), 5, axis=1)[1].numpy()
    assert acc.result() == {"top1": np.mean(top[:, 0] == labels), "top5": np.mean((top == labels[:, None]).any(1))}
    assert TopK(4).result()["top5"] is None  # top-5 of four classes means nothing


def test_segmentation_loss_is_the_mean_pixel_cross_entropy_without_ignored_pixels():
    scores = RNG.randn(2, 3, 4, 5).astype("float32")
    labels = RNG.randint(0, 3, size=(2, 4, 5))
    labels[0, :2] = 7
    task = build_task({"loss": "segmentation", "ignore_index": 7}, None)
    got = float(task.eval_loss(paddle.to_tensor(scores), paddle.to_tensor(labels)))
    logp = scores - np.log(np.exp(scores).sum(1, keepdims=True))
    picked = np.take_along_axis(logp, np.where(labels == 7, 0, labels)[:, None], axis=1)[:, 0]
    assert got == pytest.approx(-picked[labels != 7].mean(), rel=1e-5)


class TwoHeads(paddle.nn.Layer):
    def __init__(self, as_dict=False):
        super().__init__()
        self.main, self.aux = paddle.nn.Conv2D(1, 3, 1), paddle.nn.Conv2D(1, 3, 1)
        self.as_dict = as_dict

    def forward(self, x):
        out = [self.main(x), self.aux(x)]
        return {"seg": out[0], "aux": out[1]} if self.as_dict else out


def test_auxiliary_outputs_add_their_weighted_loss_and_the_main_output_is_selected():
    paddle.seed(0)
    x, y = paddle.randn([2, 1, 4, 4]), paddle.to_tensor(RNG.randint(0, 3, (2, 4, 4)))
    for model, main_key, aux_key in ((TwoHeads(), 0, 1), (TwoHeads(as_dict=True), "seg", "aux")):
        plain = build_task({"loss": "segmentation", "output": main_key}, None)
        weighted = build_task({"loss": "segmentation", "output": main_key, "aux_weights": {aux_key: 0.4}}, None)
        loss, main = weighted.loss_fn(model, x, y)
        expected = plain.eval_loss(model.main(x), y) + 0.4 * plain.eval_loss(model.aux(x), y)
        assert float(loss) == pytest.approx(float(expected), rel=1e-6)
        np.testing.assert_array_equal(main.numpy(), model.main(x).numpy())


def test_a_list_of_aux_weights_weighs_the_outputs_other_than_the_main_one_in_order():
    paddle.seed(0)
    x, y = paddle.randn([2, 1, 4, 4]), paddle.to_tensor(RNG.randint(0, 3, (2, 4, 4)))
    model = TwoHeads()
    task = build_task({"loss": "segmentation", "output": 1, "aux_weights": [0.25]}, None)
    loss, main = task.loss_fn(model, x, y)
    expected = task.eval_loss(model.aux(x), y) + 0.25 * task.eval_loss(model.main(x), y)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    np.testing.assert_array_equal(main.numpy(), model.aux(x).numpy())
    assert task.aux_outputs([x, x]) == [(0, 0.25)]
    with pytest.raises(ConfigError, match=r"task.aux_weights: 1 weights, but the model returns 2 auxiliary outputs"):
        task.aux_outputs([x, x, x])
    with pytest.raises(ConfigError, match=r"task.aux_weights: a list of weights is for auxiliary outputs in a list"):
        task.aux_outputs({"seg": x})


@pytest.mark.parametrize("output, outputs, message", [
    (2, [1, 2], r"task.output: the model returns 2 outputs, 2 is not one of them"),
    (None, {"seg": 1}, r"task.output: the model returns a dict with keys \['seg'\]"),
    ("sge", {"seg": 1}, r"did you mean 'seg'"),
    (1, "tensor", r"task.output: the model returns a single tensor"),
])
def test_a_bad_output_selector_names_the_key_and_the_outputs(output, outputs, message):
    outputs = paddle.zeros([1]) if outputs == "tensor" else outputs
    with pytest.raises(ConfigError, match=message):
        build_task({"output": output}, None).select(outputs)


def test_registry_segmenter_with_aux_head_trains_on_both_outputs_and_returns_a_tensor_in_eval():
    data = slimkit.load_dataset(name="shapes", train_samples=16)
    model = slimkit.build_model("small_unet", num_classes=4, in_channels=1, aux_head=True)
    engine = Engine(data, {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 1, "progress": False},
                    {"aux_weights": {1: 0.4}})
    before = model.aux[-1].weight.numpy().copy()
    engine.train(model)
    assert not np.allclose(before, model.aux[-1].weight.numpy()), "the auxiliary head is trained"
    assert isinstance(model(paddle.zeros([1, 1, 32, 32])), paddle.Tensor)
    result = engine.evaluate(model, "val")
    assert set(result) == {"miou", "pixel_acc", "loss", "samples"} and result["samples"] == len(data.val)


def test_engine_evaluate_of_a_segmenter_equals_the_metric_on_its_outputs():
    data = slimkit.load_dataset(name="shapes")
    model = slimkit.build_model("small_unet", num_classes=4, in_channels=1)
    model.eval()
    with paddle.no_grad():
        scores = model(paddle.to_tensor(data.test.images)).numpy()
    miou, pixel_acc = reference_miou(scores.argmax(1), data.test.labels, 4, 255)
    got = Engine(data, {"eval_batch_size": 32}).evaluate(model)
    assert got["miou"] == pytest.approx(miou, abs=1e-9) and got["pixel_acc"] == pytest.approx(pixel_acc, abs=1e-9)


USER_MODULE = textwrap.dedent("""
    import numpy as np
    import paddle.nn.functional as F

    def hinge(outputs, labels):
        return F.multi_margin_loss(outputs, labels)

    def balanced(outputs, labels):
        return {"hit": float(np.mean(outputs.argmax(1) == labels)), "one": 1.0}

    class Worst:
        def __init__(self):
            self.worst = 1.0
        def update(self, outputs, labels):
            self.worst = min(self.worst, float(np.mean(outputs.argmax(1) == labels)))
        def result(self):
            return {"worst_batch": self.worst}
""")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_task.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_task"
    sys.modules.pop("my_task", None)


def test_user_loss_and_metric_functions_and_accumulator_classes(user_module):
    data = slimkit.load_dataset(name="digits")
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    engine = Engine(data, {"eval_batch_size": 100}, {"loss": "my_task:hinge", "metric": "my_task:balanced"})
    model.eval()
    with paddle.no_grad():
        scores = model(paddle.to_tensor(data.test.images)).numpy()
    got = engine.evaluate(model)
    assert got["hit"] == pytest.approx(np.mean(scores.argmax(1) == data.test.labels)) and got["one"] == 1.0
    expected = paddle.nn.functional.multi_margin_loss(paddle.to_tensor(scores), paddle.to_tensor(data.test.labels))
    assert got["loss"] == pytest.approx(float(expected), rel=1e-4)
    assert engine.task.primary_value(got) == got["hit"]
    worst = Engine(data, {"eval_batch_size": 100}, {"metric": "my_task:Worst"}).evaluate(model)
    batches = [np.mean(scores[i:i + 100].argmax(1) == data.test.labels[i:i + 100]) for i in range(0, len(scores), 100)]
    assert worst["worst_batch"] == pytest.approx(min(batches))


@pytest.mark.parametrize("options, message", [
    ({"loss": "segmentaton"}, r"(?s)task.loss: unknown loss 'segmentaton'.*did you mean 'segmentation'"),
    ({"metric": "no_such_module_xyz:f"}, r"metric: cannot import 'no_such_module_xyz'"),
    ({"metric": "numpy:no_such_fn"}, r"metric: numpy has no 'no_such_fn'"),
    ({"output": 1, "aux_weights": {1: 0.5}}, r"aux_weights.1: is the main output"),
    ({"aux_weights": {1: -1}}, r"aux_weights.1: expected a weight >= 0"),
    ({"aux_weights": [0.4, -1]}, r"aux_weights\[1\]: expected a weight >= 0"),
    ({"aux_weights": [0.4, "x"]}, r"aux_weights\[1\]: expected a number"),
    ({"output": 1.5}, r"output: expected integer or string"),
])
def test_task_config_errors_name_the_key(options, message):
    with pytest.raises(ConfigError, match=message):
        TaskConfig.from_dict(options, "task")
