"""Each calibration observer's threshold against a plain numpy reference on known data."""

import numpy as np
import paddle
import pytest

from slimkit import ConfigError
from slimkit.quant import calibrate, convert, get_observer, prepare_ptq
from slimkit.quant.observers import OBSERVERS, Observer, activation_methods

RNG = np.random.RandomState(0)
# Four batches of a heavy-tailed activation, the last one with a larger outlier: range growth is exercised.
BATCHES = [RNG.laplace(size=(4, 8, 6, 10)).astype(np.float32) for _ in range(3)]
BATCHES.append(np.concatenate([BATCHES[0][:3], 5 * BATCHES[1][:1]]))
ALL = np.abs(np.concatenate([b.reshape(-1) for b in BATCHES]))


def observed(method, batches=BATCHES, **options):
    observer = get_observer(method, **options)
    for batch in batches:
        observer.observe(batch)
    return observer


def fake_quant(values, threshold, levels=127):
    step = threshold / levels
    return np.clip(np.round(values / step), -levels, levels) * step


def test_abs_max_is_the_largest_value_seen():
    assert observed("abs_max").threshold() == pytest.approx(ALL.max(), rel=1e-6)


def test_avg_is_the_mean_of_the_batch_abs_max():
    expected = np.mean([np.abs(b).max() for b in BATCHES])
    assert observed("avg").threshold() == pytest.approx(expected, rel=1e-6)


def test_moving_average_follows_the_recurrence():
    value = None
    for b in BATCHES:
        batch = np.abs(b).max()
        value = batch if value is None else 0.8 * value + 0.2 * batch
    assert observed("moving_average_abs_max", moving_rate=0.8).threshold() == pytest.approx(value, rel=1e-6)


def test_histogram_after_range_doubling_is_the_histogram_of_all_values():
    observer = observed("hist")
    assert observer.range >= ALL.max() > observer.range / 2  # doubled from the first batch's range
    expected = np.histogram(ALL, bins=observer.bins, range=(0, observer.range))[0]
    # Equal up to values that sit on a bin edge, which float rounding may put either side of it.
    assert observer.counts.sum() == ALL.size and np.abs(observer.counts - expected).sum() <= 4


@pytest.mark.parametrize("percentile", [0.99, 0.999, 0.9999])
def test_hist_is_the_percentile_of_abs_values_within_one_bin(percentile):
    # Dense data (a million values): the quantile is not between two far-apart outliers.
    dense = [RNG.laplace(size=250_000).astype(np.float32) * scale for scale in (1, 1, 1, 3)]
    observer = observed("hist", dense, percentile=percentile)
    reference = np.percentile(np.abs(np.concatenate(dense)), percentile * 100)
    assert abs(observer.threshold() - reference) <= observer.width
    assert observer.threshold() < max(np.abs(d).max() for d in dense)  # outliers clipped


def test_mse_threshold_is_near_the_best_on_the_raw_values():
    observer = observed("mse")
    # The reference: every bin edge as threshold, the squared error on the raw values themselves.
    candidates = (np.arange(observer.bins // 64, observer.bins) + 1) * observer.width
    errors = np.array([np.mean((ALL - fake_quant(ALL, t)) ** 2) for t in candidates])
    chosen = np.mean((ALL - fake_quant(ALL, observer.threshold())) ** 2)
    assert chosen <= errors.min() * 1.02
    assert chosen < np.mean((ALL - fake_quant(ALL, ALL.max())) ** 2)  # better than not clipping


def kl_reference(counts, width, levels=128):
    """TensorRT's entropy calibration written out with loops, bin by bin, from half the largest value."""
    best, best_kl = None, np.inf
    last = max(i for i in range(len(counts)) if counts[i] > 0) + 1
    for stop in range(max(levels, last // 2), last + 1):
        if counts[stop - 1] == 0:
            continue
        p = list(counts[:stop])
        p[-1] += counts[stop:].sum()
        q = [0.0] * stop
        for g in range(levels):
            members = [i for i in range(stop) if i * levels // stop == g]
            total = sum(counts[i] for i in members)
            filled = [i for i in members if counts[i] > 0]
            for i in filled:
                q[i] = total / len(filled)
        p, q = np.array(p) / sum(p), np.array(q) / sum(q)
        kl = np.inf if np.any((p > 0) & (q == 0)) else np.sum(p[p > 0] * np.log(p[p > 0] / q[p > 0]))
        if kl < best_kl:
            best, best_kl = stop, kl
    return best * width


def test_kl_matches_a_loop_reference_on_the_same_histogram():
    observer = observed("kl", bins=256)  # few bins: the loop reference stays quick
    assert observer.threshold() == pytest.approx(kl_reference(observer.counts, observer.width), rel=1e-9)
    assert ALL.max() / 2 - observer.width <= observer.threshold() < ALL.max()


@pytest.mark.parametrize("axis, shape", [(0, (6, 4, 3, 3)), (1, (5, 7))])
def test_channel_wise_weights_get_one_abs_max_per_output_channel(axis, shape):
    weight = RNG.randn(*shape).astype(np.float32)
    weight[(slice(None),) * axis + (0,)] = 0.0  # an all-zero channel still gets a positive scale
    threshold = observed("channel_wise_abs_max", [weight], axis=axis).threshold()
    reference = np.abs(np.moveaxis(weight, axis, 0)).reshape(shape[axis], -1).max(axis=1)
    np.testing.assert_allclose(threshold[1:], reference[1:], rtol=1e-6)
    assert threshold.shape == (shape[axis],) and 0 < threshold[0] < 1e-6


def test_zeros_only_give_a_tiny_positive_threshold():
    for method in activation_methods():
        assert 0 < observed(method, [np.zeros((2, 3))]).threshold() < 1e-6, method


def test_unknown_method_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'mse'"):
        get_observer("mes")


def test_a_registered_observer_is_accepted_by_name():
    class Half(Observer, name="half_abs_max"):
        def __init__(self, bits=8):
            super().__init__(bits)
            self.value = 0.0

        def observe(self, array):
            self.value = max(self.value, float(np.abs(array).max()) / 2)
            self.batches += 1

        def threshold(self):
            return self.value

    try:
        assert observed("half_abs_max").threshold() == pytest.approx(ALL.max() / 2, rel=1e-6)
        assert "half_abs_max" in activation_methods()
    finally:
        del OBSERVERS["half_abs_max"]


class TwoLayers(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(2, 4, 3)
        self.fc = paddle.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(paddle.flatten(paddle.nn.functional.relu(self.conv(x)), 1))


@pytest.mark.parametrize("algo", ["abs_max", "hist", "mse"])
def test_the_converted_model_carries_the_observers_scales(algo):
    paddle.seed(0)
    model = TwoLayers()
    batches = [RNG.randn(3, 2, 6, 6).astype(np.float32) for _ in range(2)]
    model_observed = prepare_ptq(model, algo=algo, percentile=0.999)
    assert calibrate(model_observed, batches, progress=False) == 2  # input batches alone: no labels needed
    conv = model_observed.conv
    reference = observed(algo, batches, percentile=0.999).threshold()
    assert conv.activation_quanter.scales().numpy() == pytest.approx(reference, rel=1e-6)
    weight = conv.weight_quanter.scales().numpy()
    np.testing.assert_allclose(weight, np.abs(model.conv.weight.numpy()).reshape(4, -1).max(1), rtol=1e-6)
    fc_weight = model_observed.fc.weight_quanter.scales().numpy()
    np.testing.assert_allclose(fc_weight, np.abs(model.fc.weight.numpy()).max(0), rtol=1e-6)  # Linear: [in, out]
    converted = convert(model_observed)
    x = paddle.to_tensor(batches[0])
    assert np.abs(converted(x).numpy() - model(x).numpy()).max() < 0.05 * np.abs(model(x).numpy()).max()


@pytest.mark.parametrize("algo", activation_methods())
def test_every_method_keeps_a_trained_classifier_within_two_points(algo, digits, trained_cnn):
    import slimkit

    engine = slimkit.Engine(digits, {"progress": False})
    fp32 = engine.evaluate(trained_cnn)["top1"]
    model_observed = prepare_ptq(trained_cnn, algo=algo, input_shape=[1, 1, 8, 8])
    calibrate(model_observed, [digits.train.images[i:i + 64] for i in range(0, 256, 64)], progress=False)
    assert abs(engine.evaluate(convert(model_observed))["top1"] - fp32) <= 0.02, algo
