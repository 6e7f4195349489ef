"""Pruned weights stay exactly zero through optimizer steps with momentum and weight decay."""

import copy

import numpy as np
import pytest

import slimkit
from slimkit import SparsePruning
from slimkit.sparsity import apply_masks, sparse_prunable_layers, sparsify
from slimkit.strategies.base import Context


def zero_patterns(model):
    return {name: layer.weight.numpy() == 0 for name, layer in sparse_prunable_layers(model).items()}


@pytest.mark.parametrize("optimizer", ["momentum", "adamw"])
def test_masks_reapplied_on_step_keep_zeros_exact(digits, trained_cnn, optimizer):
    engine = slimkit.Engine(digits, {"optimizer": optimizer, "momentum": 0.9, "weight_decay": 5e-3,
                                     "max_steps_per_epoch": 8, "progress": False})
    model = copy.deepcopy(trained_cnn)
    sparsify(model, 0.8)
    before = zero_patterns(model)
    kept = {n: l.weight.numpy().copy() for n, l in sparse_prunable_layers(model).items()}
    engine.train(model, epochs=2, lr=0.05, on_step=lambda step, m: apply_masks(m))
    after = zero_patterns(model)
    for name in before:
        assert (after[name] == before[name]).all(), name  # same zeros, exactly zero
    # training did move the surviving weights
    assert any(not np.array_equal(kept[n][~before[n]], l.weight.numpy()[~before[n]])
               for n, l in sparse_prunable_layers(model).items())


def test_without_reapplying_the_masks_momentum_revives_pruned_weights(digits, trained_cnn):
    # The hazard the on_step callback exists for: a plain optimizer step moves zeros.
    engine = slimkit.Engine(digits, {"max_steps_per_epoch": 5, "progress": False})
    model = copy.deepcopy(trained_cnn)
    sparsify(model, 0.8)
    before = zero_patterns(model)
    engine.train(model, epochs=1, lr=0.05)
    assert not all((zero_patterns(model)[n] == before[n]).all() for n in before)


def test_strategy_training_keeps_its_masks(digits, trained_cnn):
    engine = slimkit.Engine(digits, {"weight_decay": 1e-3, "max_steps_per_epoch": 10, "progress": False})
    model = copy.deepcopy(trained_cnn)
    ctx = Context(data=digits, engine=engine, input_shape=[1, 1, 8, 8], out_dir=None)
    SparsePruning(sparsity=0.9, epochs=2, lr=0.05, strip=False, skip=["features.0"]).apply(model, ctx)
    for name, layer in sparse_prunable_layers(model, skip=["features.0"]).items():
        mask = layer.weight_mask.numpy()
        w = layer.weight.numpy()
        assert int((mask == 0).sum()) == round(0.9 * w.size), name
        assert (w[mask == 0] == 0).all(), name
    assert ctx.metrics["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert "weight_mask" not in model.features[0]._buffers


def test_filter_pruning_cuts_held_masks_with_their_weights(trained_cnn):
    # sparse_pruning (masks kept) then filter_pruning: each mask loses the channels its weight loses.
    from slimkit.pruning import analyze, remove_channels
    from slimkit.sparsity.masks import get_mask

    model = copy.deepcopy(trained_cnn)
    sparsify(model, 0.5)
    old = {name: get_mask(layer) for name, layer in sparse_prunable_layers(model).items()}
    graph = analyze(model, [1, 1, 8, 8])
    remove_channels(model, graph, {"features.3": np.arange(24)})  # keep the first 24 of 32 filters
    layers = sparse_prunable_layers(model)
    np.testing.assert_array_equal(get_mask(layers["features.3"]), old["features.3"][:24])
    np.testing.assert_array_equal(get_mask(layers["features.7"]), old["features.7"][:, :24])
    np.testing.assert_array_equal(get_mask(layers["features.0"]), old["features.0"])
    apply_masks(model)  # the shapes agree: no broadcast error
    assert all(np.all(layer.weight.numpy()[get_mask(layer) == 0] == 0) for layer in layers.values())
