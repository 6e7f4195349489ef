"""Named classes resolve one way (slimkit.core.registry): stages, pruning criteria, sparsity criteria, schedules.

A registered name, an alias or `package.module:Class` names a class; a misspelt name gets the
closest registered one; a class that is not a subclass of the kind's base is refused. User
sparsity criteria and prunable layer types plug in as filter criteria do.
"""

import copy
import json

import numpy as np
import paddle
import paddle.nn as nn
import pytest

import slimkit
from slimkit.core.errors import ConfigError
from slimkit.pruning.criteria import CRITERIA, Criterion, get_criterion
from slimkit.sparsity import (PRUNABLE_LAYERS, SPARSITY_CRITERIA, SparsityCriterion, get_sparsity_criterion,
                              register_prunable_layer, sparsify)
from slimkit.sparsity.schedules import SCHEDULES, SparsitySchedule
from slimkit.strategies.base import STRATEGIES, Strategy, strategy_from_config


class LargestFirst(Criterion):
    """Unregistered (no name): reachable only as `test_registries:LargestFirst`; removes the largest filters."""

    def root_scores(self, weight):
        return -np.abs(weight).reshape(weight.shape[0], -1).sum(axis=1)


class EveryOther(SparsityCriterion):
    """Zeroes weights at even flat positions first (a rule the numpy check below can predict)."""

    def scores(self, weight, rng):
        return (np.arange(weight.size) % 2).astype(np.float64)


@pytest.mark.parametrize("registry, base, name, expected", [
    (STRATEGIES, Strategy, "finetune", slimkit.Finetune),
    (CRITERIA, Criterion, "L1NormFilterPruner", CRITERIA["l1"]),  # PaddleSlim's name, any case
    (SCHEDULES, SparsitySchedule, "polynomial_decay", slimkit.sparsity.PolynomialDecay),
    (SPARSITY_CRITERIA, SparsityCriterion, "neuron", SPARSITY_CRITERIA["neuron"]),
    (CRITERIA, Criterion, "test_registries:LargestFirst", LargestFirst),
    (SPARSITY_CRITERIA, SparsityCriterion, "test_registries:EveryOther", EveryOther),
])
def test_every_registry_resolves_names_aliases_and_module_paths(registry, base, name, expected):
    assert registry.find(name, "x", base) is expected


@pytest.mark.parametrize("registry, base", [(STRATEGIES, Strategy), (CRITERIA, Criterion),
                                            (SCHEDULES, SparsitySchedule), (SPARSITY_CRITERIA, SparsityCriterion)])
def test_every_registry_refuses_a_class_of_another_kind(registry, base):
    with pytest.raises(ConfigError, match="is not a subclass") as err:
        registry.find("test_registries:EveryOther" if base is not SparsityCriterion else "test_registries:LargestFirst",
                      "x.type", base)
    assert err.value.path == "x.type"


@pytest.mark.parametrize("build, path", [
    (lambda: get_criterion("fpmg"), "criterion"),
    (lambda: slimkit.FilterPruning(criterion="fgpm", ratios=0.3), "criterion"),
    (lambda: strategy_from_config({"type": "filter_pruning", "target_flops_reduction": 0.5, "criterion": "fpmg"},
                                  "stages[1]"), "stages[1].criterion"),
    (lambda: slimkit.prune(slimkit.build_model("small_cnn", 10, 1, 8), [1, 1, 8, 8], criterion="fpg"), "criterion"),
])
def test_a_misspelt_criterion_gets_the_closest_name_wherever_it_is_given(build, path):
    with pytest.raises(ConfigError, match="did you mean 'fpgm'") as err:
        build()
    assert err.value.path == path


def test_a_misspelt_sparsity_method_and_schedule_type_get_the_closest_name():
    with pytest.raises(ConfigError, match="did you mean 'magnitude'"):
        slimkit.SparsePruning(method="magnitud", sparsity=0.5)
    with pytest.raises(ConfigError, match="did you mean 'constant'") as err:
        SparsitySchedule.from_dict({"type": "constnt"}, "schedule")
    assert err.value.path == "schedule.type"


@pytest.mark.parametrize("criterion", [LargestFirst(), "test_registries:LargestFirst"])
def test_a_user_criterion_instance_or_class_named_in_a_config_drives_the_stage(criterion, digits, trained_cnn,
                                                                                tmp_path):
    stage = strategy_from_config({"type": "filter_pruning", "criterion": criterion,
                                  "ratios": {"features.0": 0.5}}, "stages[0]")
    pipeline = slimkit.Pipeline(copy.deepcopy(trained_cnn), digits, [stage], out_dir=tmp_path, verbose=False,
                                train={"progress": False}, report={"latency_runs": 2})
    pipeline.run()
    l1 = np.abs(trained_cnn.features[0].weight.numpy()).reshape(16, -1).sum(axis=1)
    kept = np.abs(pipeline.model.features[0].weight.numpy()).reshape(8, -1).sum(axis=1)
    np.testing.assert_allclose(np.sort(kept), np.sort(l1)[:8], rtol=1e-6)  # the 8 largest went
    saved = json.loads((tmp_path / "01-filter_pruning" / "stage.json").read_text())
    assert saved["config"]["criterion"].endswith("LargestFirst")  # a resume can tell if it changed


def test_a_user_sparsity_criterion_from_a_config_zeroes_exactly_what_it_scores_lowest():
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    stage = strategy_from_config({"type": "sparse_pruning", "method": "test_registries:EveryOther",
                                  "sparsity": 0.5}, "stages[0]")
    sparsify(model, 0.5, method=stage.method)
    w = model.features[0].weight.numpy().ravel()
    assert (w[0::2] == 0).all() and np.count_nonzero(w[1::2]) == w[1::2].size


class Gain(nn.Layer):
    """A user's layer with its kernel in `weight` ([out, in]), unknown to slimkit until registered."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = self.create_parameter([n_out, n_in])
        self.bias = self.create_parameter([n_out], is_bias=True,
                                          default_initializer=nn.initializer.Constant(0.1))

    def forward(self, x):
        return x @ self.weight.T + self.bias


class GainNet(nn.Layer):
    def __init__(self):
        super().__init__()
        self.gain = Gain(6, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.gain(x))


@pytest.fixture
def gain_registered():
    register_prunable_layer(Gain, out_axis=0, neurons=True)
    yield
    PRUNABLE_LAYERS.pop(Gain)


def test_an_unregistered_layer_type_stays_dense():
    paddle.seed(0)
    model = GainNet()
    before = model.gain.weight.numpy().copy()
    sparsify(model, 0.5)
    np.testing.assert_array_equal(model.gain.weight.numpy(), before)


def test_a_registered_layer_type_prunes_its_weights_and_its_neurons_along_its_own_axis(gain_registered):
    paddle.seed(0)
    model = GainNet()
    w = model.gain.weight.numpy().copy()
    pruned = copy.deepcopy(model)
    sparsify(pruned, 0.5, method="neuron", skip=["fc"])
    norms = np.linalg.norm(w.astype(np.float64), axis=1)  # its outputs are rows ([out, in])
    dead = np.flatnonzero((pruned.gain.weight.numpy() == 0).all(axis=1))
    assert sorted(dead) == sorted(np.argsort(norms, kind="stable")[:4])
    assert (pruned.gain.bias.numpy()[dead] == 0).all() and np.count_nonzero(pruned.gain.bias.numpy()) == 4
    weights = copy.deepcopy(model)
    sparsify(weights, 0.5, skip=["fc"])
    assert int((weights.gain.weight.numpy() == 0).sum()) == 24


def test_neuron_criteria_list_only_layers_that_allow_neurons():
    assert get_sparsity_criterion("neuron").layer_kinds() == (nn.Linear,)
    assert set(get_sparsity_criterion("magnitude").layer_kinds()) == {nn.Conv2D, nn.Linear}
