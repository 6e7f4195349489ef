"""Nested option types keep their own error paths, also when they sit inside a Union (Optional)."""

import pytest

import slimkit
from slimkit.core.errors import ConfigError
from slimkit.sparsity.schedules import PolynomialDecay
from slimkit.strategies.base import strategy_from_config
from slimkit.strategies.filter_pruning import SensitivityConfig


@pytest.mark.parametrize("entry, path", [
    ({"type": "filter_pruning", "target_flops_reduction": 0.5, "sensitivity": {"ratios": [0.2, 1.5]}},
     "stages[1].sensitivity.ratios[1]"),
    ({"type": "filter_pruning", "target_flops_reduction": 0.5, "sensitivity": {"eval_batchs": 2}},
     "stages[1].sensitivity.eval_batchs"),
    ({"type": "filter_pruning", "ratios": {"features.0": "half"}}, "stages[1].ratios.features.0"),
    ({"type": "sparse_pruning", "schedule": {"type": "constant", "target": 2.0}}, "stages[1].schedule.target"),
])
def test_an_error_inside_a_nested_option_names_its_own_key(entry, path):
    with pytest.raises(ConfigError) as err:
        strategy_from_config(entry, "stages[1]")
    assert err.value.path == path


def test_nested_options_are_their_types_and_round_trip():
    stage = slimkit.FilterPruning(target_flops_reduction=0.5, sensitivity={"ratios": [0.3, 0.6]})
    assert isinstance(stage.sensitivity, SensitivityConfig) and stage.sensitivity.ratios == [0.3, 0.6]
    again = strategy_from_config(stage.to_config(), "stages[0]")
    assert again.sensitivity == stage.sensitivity and again.to_config() == stage.to_config()
    sparse = slimkit.SparsePruning(schedule={"type": "polynomial_decay", "final_sparsity": 0.8, "end_step": 10})
    assert isinstance(sparse.schedule, PolynomialDecay)
    assert strategy_from_config(sparse.to_config(), "s").schedule == sparse.schedule


def test_a_value_of_the_wrong_shape_still_gets_the_union_message():
    with pytest.raises(ConfigError) as err:
        slimkit.FilterPruning(target_flops_reduction=0.5, sensitivity=[0.3])
    assert err.value.path == "sensitivity" and "expected mapping or null" in err.value.message
