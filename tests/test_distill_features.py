"""Feature distillation: adapters follow pruned channel counts, train, and leave no trace in the model."""

import copy

import numpy as np
import paddle
import pytest
from conftest import prune_small_cnn

import slimkit
from slimkit import ConfigError, Distillation
from slimkit.distill import FeatureDistiller
from slimkit.strategies.base import Context

SAMPLE = paddle.zeros([1, 1, 8, 8])


def test_adapter_shapes_follow_pruned_channel_counts(trained_cnn):
    teacher = copy.deepcopy(trained_cnn)                    # widths 16, 32, 64
    student = prune_small_cnn(copy.deepcopy(trained_cnn), 0.25)  # widths 4, 8, 64
    pairs = [{"student": "features.2", "teacher": "features.2"},   # conv1 output after ReLU
             {"student": "features.5", "teacher": "features.5"},   # conv2 output after ReLU
             {"student": "features.9", "teacher": "features.9"}]   # conv3: not pruned
    distiller = FeatureDistiller(pairs, student, teacher, SAMPLE)
    assert distiller.mapped == [True, True, False]
    assert list(distiller.adapters[0].weight.shape) == [16, 4, 1, 1]
    assert list(distiller.adapters[1].weight.shape) == [32, 8, 1, 1]
    assert [s for s, _ in distiller.shapes] == [[1, 4, 8, 8], [1, 8, 8, 8], [1, 64, 4, 4]]
    assert len(distiller.parameters()) == 4  # two adapters (weight, bias); the models are not sublayers


def test_linear_adapter_for_flat_outputs(trained_cnn):
    student = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8, width=8)
    distiller = FeatureDistiller([{"student": "classifier.2", "teacher": "classifier.2"}], student, trained_cnn, SAMPLE)
    assert list(distiller.adapters[0].weight.shape) == [64, 128]  # paddle Linear: [in, out]


def test_spatial_mismatch_is_a_config_error(trained_cnn):
    with pytest.raises(ConfigError, match=r"features\[0\].*only the channel count"):
        FeatureDistiller([{"student": "features.2", "teacher": "features.9"}], trained_cnn, trained_cnn, SAMPLE)


def test_adapters_train_with_the_student_and_are_dropped(digits, trained_cnn, tmp_path, monkeypatch):
    teacher = copy.deepcopy(trained_cnn)
    student = prune_small_cnn(copy.deepcopy(trained_cnn), 0.25)
    names_before = [n for n, _ in student.named_parameters()]
    engine = slimkit.Engine(digits, {"epochs": 2, "batch_size": 32, "max_steps_per_epoch": 5, "progress": False})
    ctx = Context(data=digits, engine=engine, input_shape=[1, 1, 8, 8], out_dir=tmp_path, teacher=teacher)
    adapters = []
    build = FeatureDistiller.__init__

    def keep_initial_adapters(self, *args, **kwargs):
        build(self, *args, **kwargs)
        adapters.extend([{k: v.numpy().copy() for k, v in self.state_dict().items()}, self])

    monkeypatch.setattr(FeatureDistiller, "__init__", keep_initial_adapters)
    result = Distillation(epochs=2, features=[{"student": "features.5", "teacher": "features.5", "weight": 2.0}]
                          ).apply(student, ctx)
    initial, distiller = adapters
    trained = distiller.state_dict()
    assert any(not np.array_equal(initial[k], trained[k].numpy()) for k in initial)  # the adapter learned
    assert result is student
    assert [n for n, _ in result.named_parameters()] == names_before  # no adapter left in the model
    assert not distiller._handles  # hooks removed: later forwards are untouched
    assert ctx.metrics["distill_feature"] > 0
    assert any("features.5 [8, 8, 8] -> features.5 [32, 8, 8]" in n for n in ctx.notes)
    with paddle.no_grad():
        assert list(result(paddle.zeros([2, 1, 8, 8])).shape) == [2, 10]
