"""Criteria see whole groups, register by name, and every prune goes through one path."""

import copy
from pathlib import Path
import dataclasses

import numpy as np
import paddle
import pytest

import slimkit
from slimkit.pruning import criteria as crit
from slimkit.pruning.api import prune
from slimkit.pruning import analyze

SHAPE = [1, 1, 8, 8]


def test_group_data_holds_roots_consumers_and_batchnorm(trained_cnn):
    graph = analyze(trained_cnn, SHAPE)
    data = crit.group_data(trained_cnn, graph.group("features.7"))
    np.testing.assert_array_equal(data.weights[0], trained_cnn.features[7].weight.numpy())
    (gamma,) = data.select(role="channel", layer_type="BatchNorm", tensor="weight")
    np.testing.assert_array_equal(gamma.values[:, 0], trained_cnn.features[8].weight.numpy())
    (consumer,) = data.select(role="in")
    # Flattened 64 x 2 x 2 features: channel c owns rows 4c..4c+3 of the linear weight.
    fc = trained_cnn.classifier[1].weight.numpy()
    assert consumer.layer == "classifier.1" and consumer.values.shape == (64, 4 * 128)
    np.testing.assert_array_equal(consumer.values[5], fc[20:24].ravel())


def test_bn_scale_is_the_absolute_batchnorm_gamma(trained_cnn):
    graph = analyze(trained_cnn, SHAPE)
    scores = crit.score_groups(trained_cnn, graph.prunable(), "bn_scale")
    np.testing.assert_allclose(scores["features.3"], np.abs(trained_cnn.features[4].weight.numpy()), rtol=1e-7)
    # A group without BatchNorm falls back to the L1 norm of its root weights.
    fc = trained_cnn.classifier[1].weight.numpy()
    np.testing.assert_allclose(scores["classifier.1"], np.abs(fc).sum(axis=0), rtol=1e-6)


@dataclasses.dataclass
class ConsumerL1(crit.Criterion, name="consumer_l1_test"):
    """A criterion of its own: L1 norm of the next layer's input weights (a user's, registered by name)."""

    def group_scores(self, group):
        return group.per_channel(group.select(role="in"), lambda w: np.abs(w).sum(axis=1))


@pytest.fixture
def registered():
    yield "consumer_l1_test"
    assert crit.CRITERIA.pop("consumer_l1_test") is ConsumerL1


def test_a_registered_criterion_is_a_config_choice_and_drives_the_stage(registered, digits, trained_cnn, tmp_path):
    from slimkit.strategies.base import strategy_from_config

    assert isinstance(crit.get_criterion(registered), ConsumerL1)
    stage = strategy_from_config({"type": "filter_pruning", "criterion": registered,
                                  "ratios": {"features.0": 0.5}}, "stages[1]")
    pipeline = slimkit.Pipeline(copy.deepcopy(trained_cnn), digits, [stage], out_dir=tmp_path, verbose=False,
                                train={"progress": False}, report={"latency_runs": 2})
    pipeline.run()
    consumer = np.abs(trained_cnn.features[3].weight.numpy()).sum(axis=(0, 2, 3))  # per input channel
    best = np.sort(np.argsort(-consumer, kind="stable")[:8])
    np.testing.assert_array_equal(pipeline.model.features[0].weight.numpy(),
                                  trained_cnn.features[0].weight.numpy()[best])


def test_the_strategy_page_describes_every_built_in_criterion():
    # The registry fills the option's doc by itself; the hand-written page's table must keep up.
    page = (Path(__file__).resolve().parents[1] / "docs" / "strategies" / "filter_pruning.md").read_text()
    built_in = [name for name, cls in crit.CRITERIA.items() if cls.__module__.startswith("slimkit.")]
    assert len(built_in) >= 6
    missing = [name for name in built_in if f"| `{name}` |" not in page]
    assert missing == [], f"docs/strategies/filter_pruning.md has no row for {missing}"


@pytest.mark.parametrize("criterion", ["fpgm", "bn_scale"])
def test_the_stage_and_prune_remove_the_same_channels(digits, trained_cnn, tmp_path, criterion):
    engine = slimkit.Engine(digits)
    by_call = copy.deepcopy(trained_cnn)
    # The stage compensates by default, on the engine's first 8 training batches: the call is given the same.
    prune(by_call, SHAPE, criterion=criterion, ratios=0.4, skip=["classifier.3"], compensate=True,
          batches=list(engine.batches("train", max_batches=8)))
    stage = slimkit.FilterPruning(criterion=criterion, ratios=0.4, skip=["classifier.3"])
    ctx = slimkit.Context(data=digits, engine=engine, input_shape=SHAPE, out_dir=tmp_path)
    by_stage = stage.apply(copy.deepcopy(trained_cnn), ctx)
    ours, theirs = by_call.state_dict(), by_stage.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(ours[key].numpy(), theirs[key].numpy())


def test_prune_takes_batches_for_a_data_criterion(digits, trained_cnn):
    engine = slimkit.Engine(digits, {"progress": False})
    batches = list(engine.batches("train", 32, shuffle=True, seed=0, max_batches=2))
    graph = analyze(trained_cnn, SHAPE)
    scores = crit.score_groups(trained_cnn, [graph.group("features.0")], "taylor", batches=batches)["features.0"]
    model = copy.deepcopy(trained_cnn)
    result = prune(model, SHAPE, criterion="taylor", ratios={"features.0": 0.5}, batches=batches)
    np.testing.assert_array_equal(result.keep["features.0"], np.sort(np.argsort(-scores, kind="stable")[:8]))
    assert model.features[0].weight.shape[0] == 8 and paddle.in_dynamic_mode()
