"""Exact zero counts: per layer round(s * n), globally round(s * N) with one numpy-checked threshold."""

import copy

import numpy as np
import paddle
import pytest

import slimkit
from slimkit.sparsity import sparse_prunable_layers, sparsify


def fresh_cnn(seed=0):
    """An untrained small CNN whose biases are non-zero too (paddle initialises them to 0)."""
    paddle.seed(seed)
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    for layer in sparse_prunable_layers(model).values():
        layer.bias.set_value(np.full(layer.bias.shape, 0.1, dtype="float32"))
    return model


def zeros(array):
    return int(array.size - np.count_nonzero(array))


@pytest.mark.parametrize("sparsity", [0.3, 0.55, 0.9])
@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_every_layer_has_exactly_round_s_n_zeros(sparsity, method):
    model = fresh_cnn()
    sparsify(model, sparsity, method=method)
    for name, layer in sparse_prunable_layers(model).items():
        w = layer.weight.numpy()
        assert zeros(w) == round(sparsity * w.size), name


def test_magnitude_prunes_the_smallest_weights_of_each_layer():
    model = fresh_cnn()
    before = {n: l.weight.numpy().copy() for n, l in sparse_prunable_layers(model).items()}
    sparsify(model, 0.6)
    for name, layer in sparse_prunable_layers(model).items():
        w, old = layer.weight.numpy(), np.abs(before[name])
        pruned = w == 0
        assert old[pruned].max() <= old[~pruned].min(), name
        np.testing.assert_array_equal(w[~pruned], before[name][~pruned])


def test_ties_are_broken_by_position_and_counts_stay_exact():
    model = fresh_cnn()
    layer = model.classifier[3]
    layer.weight.set_value(np.ones(layer.weight.shape, dtype="float32"))  # 1280 equal weights
    sparsify(model, 0.25, skip=["features"])
    flat = layer.weight.numpy().ravel()
    assert zeros(flat) == 320
    assert (flat[:320] == 0).all() and (flat[320:] == 1).all()


def test_global_scope_uses_one_numpy_threshold_and_an_exact_total():
    model = fresh_cnn(3)
    weights = {n: l.weight.numpy().copy() for n, l in sparse_prunable_layers(model, skip=["features.0"]).items()}
    stats = sparsify(model, 0.7, scope="global", skip=["features.0"])
    flat = np.abs(np.concatenate([w.ravel() for w in weights.values()]))
    k = round(0.7 * flat.size)
    reference = np.sort(flat)[k - 1]
    assert stats["threshold"] == pytest.approx(float(reference), abs=0)
    layers = sparse_prunable_layers(model, skip=["features.0"])
    assert sum(zeros(l.weight.numpy()) for l in layers.values()) == k
    for name, layer in layers.items():
        w, old = layer.weight.numpy(), np.abs(weights[name])
        assert (w[old < reference] == 0).all() and (w[old > reference] != 0).all()
    # one threshold, so layers end up with different sparsities
    assert len(set(stats["layers"].values())) > 1
    # the skipped first conv, every bias and BN stay dense
    assert zeros(model.features[0].weight.numpy()) == 0
    assert all(zeros(l.bias.numpy()) == 0 for l in layers.values())
    assert zeros(model.features[1].weight.numpy()) == 0


def test_random_is_seeded():
    a, b, c = fresh_cnn(), fresh_cnn(), fresh_cnn()
    sparsify(a, 0.5, method="random", seed=1)
    sparsify(b, 0.5, method="random", seed=1)
    sparsify(c, 0.5, method="random", seed=2)
    wa, wb, wc = (m.features[3].weight.numpy() == 0 for m in (a, b, c))
    assert (wa == wb).all() and (wa != wc).any()


def test_neuron_pruning_zeroes_whole_columns_and_their_bias():
    model = fresh_cnn()
    layer = model.classifier[1]  # Linear weight [256, 128]: a neuron is a column
    norms = np.linalg.norm(layer.weight.numpy().astype(np.float64), axis=0)
    conv_before = model.features[3].weight.numpy().copy()
    sparsify(model, 0.4, method="neuron", skip=["classifier.3"])
    w, b = layer.weight.numpy(), layer.bias.numpy()
    dead = np.flatnonzero((w == 0).all(axis=0))
    assert len(dead) == round(0.4 * 128)
    assert sorted(dead) == sorted(np.argsort(norms, kind="stable")[:len(dead)])
    assert (b[dead] == 0).all() and np.count_nonzero(b) == 128 - len(dead)
    assert np.count_nonzero(w[:, np.setdiff1d(np.arange(128), dead)] == 0) == 0  # live columns untouched
    np.testing.assert_array_equal(model.features[3].weight.numpy(), conv_before)  # convs are not neurons
    assert zeros(model.classifier[3].weight.numpy()) == 0


def test_neuron_global_count_is_exact_over_linear_layers():
    model = fresh_cnn()
    sparsify(model, 0.5, method="neuron", scope="global")
    dead = sum(int((l.weight.numpy() == 0).all(axis=0).sum()) for l in (model.classifier[1], model.classifier[3]))
    assert dead == round(0.5 * (128 + 10))


def test_existing_masks_grow_and_are_never_revived():
    model = fresh_cnn()
    sparsify(model, 0.5, method="random", seed=4)
    first = model.features[7].weight.numpy() == 0
    sparsify(model, 0.8)  # magnitude after random: the random zeros rank first
    second = model.features[7].weight.numpy() == 0
    assert (second[first]).all() and second.sum() == round(0.8 * second.size)


def test_copy_is_independent():
    model = fresh_cnn()
    clone = copy.deepcopy(model)
    sparsify(clone, 0.5)
    assert zeros(model.features[3].weight.numpy()) == 0
    assert "weight_mask" not in model.features[3]._buffers
