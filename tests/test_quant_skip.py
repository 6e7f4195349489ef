"""Layers kept float by name or by type: containers and classes match what they hold; wrong names
fail before any work with the closest valid one."""

import numpy as np
import paddle
import pytest

from slimkit import PTQ, ConfigError, Pipeline
from slimkit.quant import layers_to_quantize, prepare_ptq, quantized_layer_names
from text_recognizer import text_recognizer


@pytest.fixture(scope="module")
def recognizer():
    return text_recognizer(num_classes=12, scale=0.25, hidden=32, depth=1)


def quantizable(model):
    return layers_to_quantize(model)


def test_skip_layers_takes_a_layer_or_a_container(recognizer):
    every = quantizable(recognizer)
    assert layers_to_quantize(recognizer, skip_layers=["head"]) == [n for n in every if n != "head"]
    kept = layers_to_quantize(recognizer, skip_layers=["neck"])
    assert kept == [n for n in every if not n.startswith("neck.")] and "head" in kept


def test_skip_types_takes_a_quantizable_type_or_any_class_of_the_model(recognizer):
    every = quantizable(recognizer)
    assert layers_to_quantize(recognizer, skip_types=["Linear"]) == [
        n for n in every if not isinstance(dict(recognizer.named_sublayers())[n], paddle.nn.Linear)]
    no_attention = layers_to_quantize(recognizer, skip_types=["Attention"])
    assert set(every) - set(no_attention) == {"neck.blocks.0.attn.qkv", "neck.blocks.0.attn.proj"}
    no_se = layers_to_quantize(recognizer, skip_types=["SqueezeExcite"])
    assert sorted(set(every) - set(no_se)) == sorted(n for n in every if ".se." in n) != []


@pytest.mark.parametrize("options, path, text", [
    ({"skip_layers": ["neck.blocks.0.atn"]}, "skip_layers[0]", "did you mean 'neck.blocks.0.attn'"),
    ({"skip_layers": ["head", "backbone.pool"]}, "skip_layers[1]", "holds no quantizable layer"),
    ({"skip_types": ["Attension"]}, "skip_types[0]", "did you mean 'Attention'"),
    ({"skip_types": ["LayerNorm"]}, "skip_types[0]", "no quantizable layer is or sits inside a LayerNorm"),
])
def test_wrong_skip_entries_name_the_fix(recognizer, options, path, text):
    with pytest.raises(ConfigError) as err:
        layers_to_quantize(recognizer, **options)
    assert err.value.path == path and text in str(err.value)


def test_skipped_layers_get_no_observer(recognizer):
    observed = prepare_ptq(recognizer, skip_layers=["head"], skip_types=["Attention"])
    names = quantized_layer_names(observed)
    assert "head" not in names and not any(".attn." in n for n in names)
    assert "neck.blocks.0.mlp.0" in names and "backbone.stem.0" in names


def test_a_pipeline_rejects_a_wrong_skip_type_before_any_work(digits, trained_cnn, tmp_path):
    before = {k: v.numpy().copy() for k, v in trained_cnn.state_dict().items()}
    pipeline = Pipeline(trained_cnn, digits, stages=[PTQ(skip_types=["Linaer"])], out_dir=tmp_path,
                        train={"progress": False}, verbose=False)
    with pytest.raises(ConfigError) as err:
        pipeline.run()
    assert err.value.path == "stages[0].skip_types[0]" and "did you mean 'Linear'" in str(err.value)
    assert not list(tmp_path.glob("01-*/inference"))
    assert all(np.array_equal(before[k], v.numpy()) for k, v in trained_cnn.state_dict().items())
