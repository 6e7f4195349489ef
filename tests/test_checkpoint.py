"""slimkit's save/load keeps a model whose layers changed shape (as pruning does)."""

import numpy as np
import paddle
import pytest
from conftest import outputs

import slimkit
from slimkit.core.errors import ModelError
from slimkit.core.surgery import capture, replace_tensor, restore


def shrink_first_conv(model, keep=8):
    conv, bn, conv2 = model.features[0], model.features[1], model.features[3]
    replace_tensor(conv, "weight", conv.weight.numpy()[:keep])
    replace_tensor(conv, "bias", conv.bias.numpy()[:keep])
    conv._out_channels = keep
    for name in ("weight", "bias", "_mean", "_variance"):
        replace_tensor(bn, name, getattr(bn, name).numpy()[:keep])
    bn._num_features = keep
    replace_tensor(conv2, "weight", conv2.weight.numpy()[:, :keep])
    conv2._in_channels = keep


def test_save_load_rebuilds_a_reshaped_model(tmp_path):
    spec = dict(name="small_cnn", num_classes=10, in_channels=1, input_size=8)
    model = slimkit.build_model(**spec)
    shrink_first_conv(model)
    expected = outputs(model, [2, 1, 8, 8])
    slimkit.save_model(model, tmp_path, spec)
    from_spec = slimkit.load_model(tmp_path)
    into_fresh = slimkit.load_model(tmp_path, slimkit.build_model(**spec))
    for loaded in (from_spec, into_fresh):
        assert loaded.features[0].weight.shape == [8, 1, 3, 3] and loaded.features[0]._out_channels == 8
        np.testing.assert_allclose(outputs(loaded, [2, 1, 8, 8]), expected, atol=1e-6)
    # and it trains further
    opt = paddle.optimizer.SGD(0.01, parameters=from_spec.parameters())
    from_spec.train()
    loss = from_spec(paddle.randn([4, 1, 8, 8])).mean()
    loss.backward()
    opt.step()


def test_load_into_a_different_model_is_a_clear_error(tmp_path):
    slimkit.save_model(slimkit.build_model("small_cnn", input_size=8), tmp_path)
    with pytest.raises(ModelError, match="no layer"):
        slimkit.load_model(tmp_path, slimkit.build_model("resnet20"))
    with pytest.raises(ModelError, match="not a slimkit model folder"):
        slimkit.load_model(tmp_path / "nowhere")


def test_capture_restore_undoes_a_shape_change():
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    expected = outputs(model, [2, 1, 8, 8])
    snapshot = capture(model)
    shrink_first_conv(model, keep=4)
    restore(model, snapshot)
    assert model.features[0].weight.shape == [16, 1, 3, 3] and model.features[3]._in_channels == 16
    np.testing.assert_allclose(outputs(model, [2, 1, 8, 8]), expected, atol=1e-6)
