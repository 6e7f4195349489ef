"""Layer-name options take the names users know a layer's parameters by, as PaddleSlim's tutorials write them.

`conv2d_22.w_0` (Paddle's name of a conv weight) and `features.3.weight` (its state-dict
key) both name layer `features.3` in filter pruning's `ratios` and `skip`; a name that is
no parameter of a conv/linear layer is still an error with the closest layer name.
"""

import pytest

import slimkit
from slimkit import FilterPruning, Pipeline
from slimkit.core.errors import ModelError
from slimkit.run.cli import main

SHAPE = [1, 1, 8, 8]


def small():
    return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)


def test_paddle_parameter_names_and_state_dict_keys_name_their_layer():
    model = small()
    paddle_name = model.features[3].weight.name  # e.g. conv2d_22.w_0: how many layers the process built before
    assert paddle_name.startswith("conv2d_") and paddle_name.endswith(".w_0")
    slimkit.prune(model, SHAPE, ratios={paddle_name: 0.5, "features.7.bias": 0.25})
    assert model.features[3].weight.shape[0] == 16 and model.features[7].weight.shape[0] == 48
    assert model.features[0].weight.shape[0] == 16, "only the named layers"


def test_a_parameter_name_in_skip_keeps_its_layer_whole(digits, tmp_path):
    model = small()
    skipped = model.features[0].weight.name
    stage = FilterPruning(ratios=0.5, skip=[skipped, model.features[0].bias.name])
    pipeline = Pipeline(model, digits, [stage], out_dir=tmp_path, verbose=False,
                        report={"runtime": "eager", "latency_runs": 1, "latency_warmup": 0})
    pipeline.run()  # the pipeline prunes a copy of the model: the copy's names differ, the user's still work
    assert pipeline.model.features[0].weight.shape[0] == 16
    assert pipeline.model.features[3].weight.shape[0] == 16


def test_a_parameter_of_a_layer_that_is_not_prunable_says_whose_it_is():
    model = small()
    graph = slimkit.pruning.analyze(model, SHAPE)
    bn = model.features[1].weight.name
    with pytest.raises(ModelError, match=f"parameter '{bn}' belongs to layer 'features.1': no conv/linear layer"):
        graph.group(bn)
    with pytest.raises(ModelError, match="did you mean 'features.3'"):
        graph.group("features.33")


def test_check_accepts_parameter_names_in_a_config(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("data: {name: digits}\nmodel: {name: small_cnn}\nstages:\n"
                      "  - {type: filter_pruning, ratios: {features.3.weight: 0.5}, skip: [features.0.bias]}\n")
    assert main(["check", str(config)]) == 0, capsys.readouterr().err
