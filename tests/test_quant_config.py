"""Quantization options are checked before any work, with errors that name the fix."""

import numpy as np
import paddle
import pytest

from slimkit import PTQ, QAT, ConfigError, Pipeline, compat
from slimkit.strategies.base import strategy_from_config


@pytest.mark.parametrize("options, path, text", [
    ({"weight_bits": 1}, "weight_bits", "below the minimum 2"),
    ({"activation_bits": 17}, "activation_bits", "above the maximum 16"),
    ({"weight_quantize_type": "channel_wise"}, "weight_quantize_type", "channel_wise_abs_max"),
    ({"quantizable_layer_type": ["Conv2d"]}, "quantizable_layer_type[0]", "did you mean 'Conv2D'"),
    ({"quantizable_layer_type": []}, "quantizable_layer_type", "Conv2D"),
    ({"moving_rate": 1.0}, "moving_rate", "less than 1"),
    ({"epochs": 0}, "epochs", "below the minimum 1"),
])
def test_bad_qat_options(options, path, text):
    with pytest.raises(ConfigError) as err:
        QAT(**options)
    assert err.value.path == path
    assert text in str(err.value)


@pytest.mark.parametrize("options, path, text", [
    ({"algo": "kll"}, "algo", "did you mean 'kl'"),
    ({"calibration_batches": 0}, "calibration_batches", "greater than 0"),
    ({"calibration_split": "test"}, "calibration_split", "valid"),
    ({"quantizable_layer_type": ["Linear", "BatchNorm2D"]}, "quantizable_layer_type[1]", "valid: Conv2D, Linear"),
])
def test_bad_ptq_options(options, path, text):
    with pytest.raises(ConfigError) as err:
        PTQ(**options)
    assert err.value.path == path
    assert text in str(err.value)


def test_yaml_keys_are_checked():
    with pytest.raises(ConfigError, match="did you mean 'weight_bits'"):
        strategy_from_config({"type": "qat", "weight_bit": 4}, "stages[2]")
    stage = strategy_from_config({"type": "ptq", "algo": "hist", "weight_bits": 4}, "stages[0]")
    assert (stage.algo, stage.weight_bits, stage.quantizable_layer_type) == ("hist", 4, ["Conv2D", "Linear"])


def test_unknown_skip_name_fails_before_any_work(digits, trained_cnn, tmp_path):
    before = {k: v.numpy().copy() for k, v in trained_cnn.state_dict().items()}
    pipeline = Pipeline(trained_cnn, digits, stages=[PTQ(skip_layers=["classifier.4"])], out_dir=tmp_path,
                        train={"progress": False}, verbose=False)
    with pytest.raises(ConfigError) as err:
        pipeline.run()
    assert err.value.path == "stages[0].skip_layers[0]"  # checked before any work, named by its stage
    assert "did you mean 'classifier.3'" in str(err.value)
    assert not list(tmp_path.glob("01-*/inference"))
    assert all(np.array_equal(before[k], v.numpy()) for k, v in trained_cnn.state_dict().items())
    assert compat.pir_enabled() and paddle.in_dynamic_mode()
