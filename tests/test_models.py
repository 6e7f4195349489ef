"""Models by name, by `package.module:function`, and from checkpoints."""

import sys

import paddle
import pytest

import slimkit
from slimkit.core.errors import ModelError


@pytest.mark.parametrize("name, kwargs, shape", [
    ("small_cnn", dict(in_channels=1, input_size=28), [2, 1, 28, 28]),
    ("resnet20", dict(in_channels=1), [2, 1, 28, 28]),
    ("resnet56", dict(in_channels=3), [2, 3, 32, 32]),
    ("mobilenet_v1", dict(in_channels=3, scale=0.5), [2, 3, 32, 32]),
    ("resnet18", dict(in_channels=3), [2, 3, 32, 32]),
])
def test_registry_models_forward(name, kwargs, shape):
    model = slimkit.build_model(name, num_classes=7, **kwargs)
    assert model(paddle.randn(shape)).shape == [2, 7]


@pytest.mark.parametrize("size", [32, 48])
def test_small_unet_returns_scores_at_the_input_size(size):
    model = slimkit.build_model("small_unet", num_classes=5, in_channels=3, input_size=size)
    model.eval()
    assert model(paddle.randn([2, 3, size, size])).shape == [2, 5, size, size]


def test_resnet20_has_the_published_size():
    model = slimkit.build_model("resnet20", num_classes=10, in_channels=3)
    trainable = sum(int(p.numel()) for p in model.parameters() if not p.stop_gradient)
    assert 0.26e6 < trainable < 0.29e6


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ModelError, match="did you mean 'resnet20'"):
        slimkit.build_model("resnet2O")


def test_user_model_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import paddle\n"
        "def tiny(num_classes=10, hidden=8):\n"
        "    return paddle.nn.Sequential(paddle.nn.Flatten(), paddle.nn.Linear(64, hidden), "
        "paddle.nn.Linear(hidden, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = slimkit.build_model("my_models:tiny", num_classes=3, in_channels=1, input_size=8, hidden=5)
    assert model(paddle.randn([2, 1, 8, 8])).shape == [2, 3]
    sys.modules.pop("my_models", None)


def test_user_model_import_error_is_clear():
    with pytest.raises(ModelError, match="cannot import 'no_such_pkg.mod'"):
        slimkit.build_model("no_such_pkg.mod:fn")


def test_checkpoint_pdparams_loads_and_mismatch_is_clear(tmp_path):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    paddle.save(model.state_dict(), str(tmp_path / "w.pdparams"))
    again = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8,
                                checkpoint=str(tmp_path / "w.pdparams"))
    assert all((again.state_dict()[k].numpy() == v.numpy()).all() for k, v in model.state_dict().items())
    with pytest.raises(ModelError, match="shape mismatch"):
        slimkit.build_model("small_cnn", num_classes=5, in_channels=1, input_size=8,
                            checkpoint=str(tmp_path / "w.pdparams"))
    with pytest.raises(ModelError, match="checkpoint not found"):
        slimkit.build_model("small_cnn", checkpoint=str(tmp_path / "missing.pdparams"))


def test_registry_mobilenet_v1_takes_the_data_channels():
    # paddle.vision also has a `mobilenet_v1` (3 channels only); the registry's wins and gets in_channels.
    model = slimkit.build_model("mobilenet_v1", num_classes=10, in_channels=1, scale=0.5)
    assert model(paddle.randn([2, 1, 28, 28])).shape == [2, 10]
