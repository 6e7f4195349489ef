"""The teacher only teaches: eval mode, no gradients, same batch as the student, weights untouched."""

import copy

import numpy as np
import paddle
import pytest

import slimkit
from slimkit import ConfigError, Distillation
from slimkit.distill import DistillLoss
from slimkit.strategies.base import Context


def make_ctx(data, engine, tmp_path, teacher=None):
    return Context(data=data, engine=engine, input_shape=[1, *data.input_shape], out_dir=tmp_path,
                   teacher=teacher, stage_name="distill")


def state(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_gradients_do_not_reach_the_teacher(trained_cnn):
    teacher = copy.deepcopy(trained_cnn)
    student = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8, width=8)
    student.train()
    images = paddle.randn([16, 1, 8, 8])
    labels = paddle.randint(0, 10, [16])
    loss, logits = DistillLoss(teacher, temperature=4.0, alpha=0.0)(student, images, labels)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters() if not p.stop_gradient)
    assert not teacher.training  # eval: dropout off, BatchNorm statistics fixed


def test_teacher_is_unchanged_and_sees_the_students_augmented_batch(trained_cnn, tmp_path):
    data = slimkit.load_dataset(name="digits", augment=True)  # random crops: batches differ per draw
    engine = slimkit.Engine(data, {"epochs": 2, "batch_size": 32, "max_steps_per_epoch": 4, "progress": False})
    teacher = copy.deepcopy(trained_cnn)
    student = copy.deepcopy(trained_cnn)
    before = state(teacher)
    seen = {"teacher": [], "student": []}
    for name, model in (("teacher", teacher), ("student", student)):
        def keep(layer, inputs, name=name):
            if inputs[0].shape[0] > 1:  # skip the batch-1 shape probes before training
                seen[name].append(inputs[0].numpy().copy())
        model.register_forward_pre_hook(keep)

    Distillation(epochs=2, alpha=0.2).apply(student, make_ctx(data, engine, tmp_path, teacher))

    after = state(teacher)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert not teacher.training
    assert len(seen["teacher"]) == len(seen["student"]) == 2 * 4  # one teacher pass per step
    assert all(np.array_equal(a, b) for a, b in zip(seen["teacher"], seen["student"]))
    assert not np.array_equal(state(student)["features.0.weight"], before["features.0.weight"])


def test_teacher_from_config_checkpoint(digits, trained_cnn, tmp_path):
    path = tmp_path / "teacher.pdparams"
    paddle.save(trained_cnn.state_dict(), str(path))
    engine = slimkit.Engine(digits, {"epochs": 1, "batch_size": 32, "max_steps_per_epoch": 3, "progress": False})
    student = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8, width=8)
    ctx = make_ctx(digits, engine, tmp_path, teacher=None)  # no pipeline teacher: the config's is used
    Distillation(epochs=1, teacher={"name": "small_cnn", "checkpoint": str(path)}).apply(student, ctx)
    assert ctx.metrics["teacher_top1"] == pytest.approx(engine.evaluate(trained_cnn)["top1"], abs=1e-5)
    assert ctx.metrics["teacher_top1"] > 0.9


def test_teacher_checkpoint_that_does_not_fit_fails_before_training(digits, trained_cnn, tmp_path):
    path = tmp_path / "teacher.pdparams"
    paddle.save(trained_cnn.state_dict(), str(path))
    engine = _NoTraining()
    stage = Distillation(teacher={"name": "small_cnn", "args": {"width": 8}, "checkpoint": str(path)})
    with pytest.raises(ConfigError, match="teacher: checkpoint .* does not fit"):
        stage.apply(copy.deepcopy(trained_cnn), make_ctx(digits, engine, tmp_path))


def test_missing_teacher_is_a_clear_error(digits, trained_cnn, tmp_path):
    with pytest.raises(ConfigError, match="no teacher") as err:
        Distillation().apply(copy.deepcopy(trained_cnn), make_ctx(digits, _NoTraining(), tmp_path))
    assert "compressing stage" in err.value.hint


class _NoTraining:
    """An engine that fails the test if training starts."""

    def train(self, *args, **kwargs):
        raise AssertionError("training started before the configuration was checked")

    def evaluate(self, *args, **kwargs):
        raise AssertionError("evaluation started before the configuration was checked")
