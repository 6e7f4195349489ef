"""Filter importance criteria equal hand-computed numpy references on tiny layers."""


import numpy as np
import paddle
import paddle.nn as nn
import pytest

import slimkit
from slimkit.pruning.criteria import (FPGM, L1Norm, L2Norm, Random, Taylor, collect_taylor_data, get_criterion,
                                      score_groups)

W = np.random.RandomState(3).randn(5, 2, 3, 3).astype("float32")  # 5 filters of a tiny conv


def test_l1_l2_are_per_filter_norms():
    l1 = [sum(abs(float(v)) for v in W[i].ravel()) for i in range(5)]
    l2 = [float(np.sqrt(sum(float(v) ** 2 for v in W[i].ravel()))) for i in range(5)]
    np.testing.assert_allclose(L1Norm().scores([W]), l1, rtol=1e-6)
    np.testing.assert_allclose(L2Norm().scores([W]), l2, rtol=1e-6)


def test_fpgm_is_the_sum_of_distances_to_the_other_filters():
    ref = [sum(np.linalg.norm(W[i].astype(np.float64) - W[j]) for j in range(5) if j != i) for i in range(5)]
    np.testing.assert_allclose(FPGM().scores([W]), ref, rtol=1e-6)
    # A filter equal to the mean of the others is the geometric-median-like one: least important.
    w = W.copy()
    w[2] = np.delete(w, 2, axis=0).mean(axis=0)
    assert int(np.argmin(FPGM().scores([w]))) == 2


def test_several_roots_are_summed_after_normalising_each():
    other = 10.0 * np.random.RandomState(4).randn(5, 7).astype("float32")  # a wider, larger layer
    a = np.abs(W.reshape(5, -1)).sum(1)
    b = np.abs(other).sum(1)
    ref = a / np.linalg.norm(a) + b / np.linalg.norm(b)
    np.testing.assert_allclose(L1Norm().scores([W, other]), ref, rtol=1e-6)


class Tiny(nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(1, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x):
        return self.fc(paddle.flatten(paddle.nn.functional.relu(self.conv(x)), 1))


def test_taylor_on_a_fixed_batch_equals_activation_times_gradient():
    paddle.seed(1)
    model = Tiny()
    rng = np.random.RandomState(0)
    x = paddle.to_tensor(rng.randn(6, 1, 4, 4).astype("float32"))
    y = paddle.to_tensor(rng.randint(0, 4, size=6).astype("int64"))
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    data = collect_taylor_data(model, ["conv"], [(x, y)])
    act, grad = data["conv"]

    # Reference: the conv output and dLoss/d(output) from paddle.grad, then the formula by hand.
    a = model.conv(x)
    logits = model.fc(paddle.flatten(paddle.nn.functional.relu(a), 1))
    g = paddle.grad(paddle.nn.functional.cross_entropy(logits, y), a)[0]
    a, g = a.numpy().astype(np.float64), g.numpy().astype(np.float64)
    np.testing.assert_allclose(act, a, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad, g, rtol=1e-4, atol=1e-8)
    per_example = np.array([[abs(np.mean(a[n, c] * g[n, c])) for c in range(3)] for n in range(6)])
    ref = per_example.mean(0)
    ref /= np.linalg.norm(ref)
    np.testing.assert_allclose(Taylor().scores([model.conv.weight.numpy()], [grad], [act]), ref, rtol=1e-4)
    # Collecting left the weights and gradients alone.
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    assert all(p.grad is None for p in model.parameters())


def test_taylor_without_data_says_what_it_needs():
    with pytest.raises(slimkit.ModelError, match="activations and gradients"):
        Taylor().scores([W])


def test_score_groups_uses_root_weights_and_engine_batches(digits, trained_cnn):
    from slimkit.pruning import analyze

    graph = analyze(trained_cnn, [1, 1, 8, 8])
    first = graph.group("features.0")
    l1 = score_groups(trained_cnn, [first], "l1")[first.name]
    np.testing.assert_allclose(l1, np.abs(trained_cnn.features[0].weight.numpy()).reshape(16, -1).sum(1), rtol=1e-6)
    engine = slimkit.Engine(digits, {"progress": False, "eval_batch_size": 64})
    taylor = score_groups(trained_cnn, graph.prunable(), Taylor(batches=2), engine)
    assert set(taylor) == {g.name for g in graph.prunable()}
    for g in graph.prunable():
        assert taylor[g.name].shape == (g.channels,) and np.all(taylor[g.name] >= 0)
    with pytest.raises(slimkit.ModelError, match="needs training batches"):
        score_groups(trained_cnn, [first], "taylor")


def test_random_is_seeded():
    assert np.array_equal(Random(5).scores([W]), Random(5).scores([W]))
    assert not np.array_equal(Random(5).scores([W]), Random(6).scores([W]))


def test_get_criterion_accepts_names_aliases_and_objects():
    assert isinstance(get_criterion("fpgm"), FPGM)
    assert isinstance(get_criterion("L1NormFilterPruner"), L1Norm)
    assert isinstance(get_criterion("geometry_median"), FPGM)

    class Mine:
        def scores(self, weights, grads=None, activations=None):
            return -np.abs(weights[0]).sum(axis=(1, 2, 3))

    mine = Mine()
    assert get_criterion(mine) is mine
    with pytest.raises(slimkit.ConfigError, match="scores"):
        get_criterion(42)
