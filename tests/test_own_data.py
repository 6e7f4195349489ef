"""A user's own data: numpy arrays, paddle Datasets, dicts of splits and YAML factories, used as given."""

import json
import sys

import numpy as np
import paddle
import pytest

import slimkit
from slimkit import ConfigError, DataError, Finetune, Pipeline, to_bundle
from slimkit.run.config import RunConfig, build_pipeline

QUICK = {"epochs": 1, "batch_size": 32, "progress": False, "max_steps_per_epoch": 3}


class LabelledImages(paddle.io.Dataset):
    """A user's Dataset: numpy image and a (1,)-shaped label per sample, as paddle.vision's datasets give."""

    def __init__(self, images, labels):
        super().__init__()
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], np.array([self.labels[i]])


@pytest.fixture(scope="module")
def arrays(digits):
    return digits.train.images * 3.0 + 1.0, digits.train.labels  # deliberately not normalised


def small_model():
    return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)


def test_arrays_are_split_seeded_and_used_exactly_as_given(arrays, tmp_path):
    X, y = arrays
    pipeline = Pipeline(small_model(), (X, y), [Finetune(epochs=1)], train=QUICK, out_dir=tmp_path, verbose=False)
    data = pipeline.data
    assert (len(data.train), len(data.val), len(data.test)) == (len(y) - 129 - 259, 129, 259)
    assert data.num_classes == 10 and data.input_shape == (1, 8, 8) and pipeline.input_shape == [1, 1, 8, 8]
    # every sample lands in exactly one split, unchanged (no normalisation behind the user's back)
    together = np.concatenate([data.train.images, data.val.images, data.test.images])
    assert sorted(map(bytes, together)) == sorted(map(bytes, X.astype(np.float32)))
    assert to_bundle((X, y)).test.images.tobytes() == data.test.images.tobytes(), "the split is seeded"
    pipeline.run()
    used = json.loads((tmp_path / "report.json").read_text())["config"]["data"]
    assert used["source"] == "arrays" and used["normalisation"] == "none (used as given)"
    assert {s: v["samples"] for s, v in used["splits"].items()} == {"train": len(data.train), "val": 129, "test": 259}


def test_a_dict_of_splits_keeps_the_given_test_split(arrays):
    X, y = arrays
    data = to_bundle({"train": (X[:1000], y[:1000]), "test": (X[1000:], y[1000:])}, num_classes=10)
    assert data.test.images.tobytes() == X[1000:].astype(np.float32).tobytes()
    assert len(data.val) == 100 and len(data.train) == 900
    assert data.description["splits"]["test"]["from"] == "given"


def test_paddle_datasets_one_pool_or_per_split(arrays, tmp_path):
    X, y = arrays
    pool = to_bundle(LabelledImages(X, y), test_fraction=0.25, val_fraction=0.05)
    assert (len(pool.test), len(pool.val)) == (round(0.25 * len(y)), round(0.05 * len(y)))
    assert pool.num_classes == 10 and pool.input_shape == (1, 8, 8)
    engine = slimkit.Engine(pool, QUICK)
    images, labels = next(engine.batches("test", 16))
    assert images.shape == [16, 1, 8, 8] and labels.shape == [16]  # the (1,) labels come out flat
    splits = {"train": LabelledImages(X[:900], y[:900]), "val": LabelledImages(X[900:1000], y[900:1000]),
              "test": LabelledImages(X[1000:], y[1000:])}
    pipeline = Pipeline(small_model(), splits, [Finetune(epochs=1)], train=QUICK, out_dir=tmp_path, verbose=False)
    reports = pipeline.run()
    assert reports[-1].extra["history"] and 0 <= reports[-1].top1 <= 1
    assert pipeline.describe()["data"]["source"] == "LabelledImages"


def test_no_data_is_an_error_not_digits(tmp_path):
    class OwnLoop:  # an own engine with no data attribute
        def train(self, model, **kwargs):
            return []

        def evaluate(self, model, split="test", max_batches=None):
            return {"top1": 0.0, "top5": None}

    with pytest.raises(ConfigError, match="data: no data given"):
        Pipeline(small_model(), stages=[Finetune(epochs=1)])
    with pytest.raises(ConfigError, match="data: no data given"):
        Pipeline(small_model(), engine=OwnLoop(), out_dir=tmp_path)
    with pytest.raises(ConfigError, match="the engine has no data"):
        slimkit.Engine(None)


def test_report_records_the_own_engine_not_a_default_train_block(digits, tmp_path):
    class OwnLoop:
        def __init__(self, data):
            self.data, self.inner = data, slimkit.Engine(data, QUICK)

        def train(self, model, **kwargs):
            return self.inner.train(model, **kwargs)

        def evaluate(self, model, split="test", max_batches=None):
            return self.inner.evaluate(model, split, max_batches)

        def batches(self, split="train", batch_size=None, shuffle=False, seed=0, max_batches=None):
            return self.inner.batches(split, batch_size, shuffle, seed, max_batches=max_batches)

        def steps_per_epoch(self):
            return self.inner.steps_per_epoch()

    pipeline = Pipeline(small_model(), engine=OwnLoop(digits), stages=[Finetune(epochs=1)], out_dir=tmp_path,
                        verbose=False)
    pipeline.run()
    used = json.loads((tmp_path / "report.json").read_text())["config"]
    assert used["train"] is None and used["engine"].endswith("OwnLoop")
    assert used["data"]["name"] == "digits" and used["data"]["splits"]["test"] == len(digits.test)


def test_yaml_data_factory(tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(
        "import numpy as np\n"
        "def make(n=300, side=8):\n"
        "    rng = np.random.RandomState(0)\n"
        "    y = rng.randint(0, 3, n)\n"
        "    return rng.randn(n, 1, side, side).astype('float32') + y[:, None, None, None], y\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = RunConfig.from_dict({"data": {"factory": "mydata:make", "args": {"n": 200}},
                                  "train": QUICK, "stages": [{"type": "finetune"}]})
    pipeline = build_pipeline(config, tmp_path / "run", verbose=False)
    assert pipeline.data.num_classes == 3 and len(pipeline.data.test) == 40
    assert pipeline.describe()["data"]["factory"] == "mydata:make"
    assert pipeline.model_spec["num_classes"] == 3
    bad = RunConfig.from_dict({"data": {"factory": "mydata:nope"}, "stages": [{"type": "finetune"}]})
    with pytest.raises(slimkit.ModelError, match="has no 'nope'"):
        build_pipeline(bad, tmp_path / "bad")
    sys.modules.pop("mydata", None)


def test_bad_arrays_name_the_fix(arrays):
    X, y = arrays
    with pytest.raises(DataError, match="1797 inputs but 10 labels|inputs but 10 labels"):
        to_bundle((X, y[:10]))
    with pytest.raises(DataError, match="the labels are floats, and the classification task.loss and task.metric "
                                        "takes integer class indices"):
        Pipeline(small_model(), (X, y.astype("float32")), [Finetune(epochs=1)], verbose=False)
    with pytest.raises(ConfigError, match="expected \\(X, y\\) arrays, inputs X, or a paddle.io.Dataset"):
        to_bundle([X])


def test_resuming_with_other_data_is_refused(arrays, tmp_path):
    X, y = arrays
    stages = [Finetune(epochs=1)]
    Pipeline(small_model(), (X, y), stages, train=QUICK, out_dir=tmp_path, verbose=False).run()
    again = Pipeline(small_model(), (X, y), stages, train=QUICK, out_dir=tmp_path, verbose=False).run(resume=True)
    assert again[-1].extra["history"], "the same data resumes: the finished stage is restored with its history"
    other = Pipeline(small_model(), (X[::-1], y[::-1]), stages, train=QUICK, out_dir=tmp_path, verbose=False)
    with pytest.raises(slimkit.ResumeError, match="different data"):
        other.run(resume=True)
