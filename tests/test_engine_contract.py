"""Every built-in strategy runs with a user engine that implements only EngineProtocol (its own loop)."""

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import slimkit
from slimkit.core.errors import ConfigError
from slimkit.run.config import build_pipeline, load_config
from slimkit.train.engine import OPTIONAL, REQUIRED, EngineProtocol, check_engine


class ArrayLoopEngine:
    """A user's engine: plain SGD over the bundle's numpy arrays; no slimkit.Engine, no `config`."""

    def __init__(self, data, batch_size=64):
        self._data, self._batch_size = data, batch_size
        self.calls = []

    def batches(self, split, batch_size=None, shuffle=False, seed=0, max_batches=None):
        self.calls.append(("batches", split))
        dataset = getattr(self._data, split)
        order = np.random.RandomState(seed).permutation(len(dataset)) if shuffle else np.arange(len(dataset))
        size = batch_size or self._batch_size
        for i, start in enumerate(range(0, len(order), size)):
            if max_batches is not None and i >= max_batches:
                return
            idx = order[start:start + size]
            yield paddle.to_tensor(dataset.images[idx]), paddle.to_tensor(dataset.labels[idx])

    def steps_per_epoch(self):
        return -(-len(self._data.train) // self._batch_size)

    def train(self, model, epochs=None, lr=None, loss_fn=None, on_step=None, desc="train"):
        self.calls.append(("train", epochs, lr))
        params = [p for p in model.parameters() if not p.stop_gradient]
        optimizer = paddle.optimizer.SGD(learning_rate=lr, parameters=params)
        model.train()
        history, step = [], 0
        for epoch in range(epochs):
            losses = []
            for images, labels in self.batches("train", shuffle=True, seed=epoch):
                loss = loss_fn(model, images, labels)[0] if loss_fn else F.cross_entropy(model(images), labels)
                loss.backward()
                optimizer.step()
                optimizer.clear_grad()
                step += 1
                if on_step is not None:
                    on_step(step, model)
                losses.append(float(loss))
            history.append({"epoch": epoch + 1, "loss": float(np.mean(losses))})
        model.eval()
        return history

    @paddle.no_grad()
    def evaluate(self, model, split="test", max_batches=None):
        model.eval()
        hits = total = 0
        for images, labels in self.batches(split, max_batches=max_batches):
            hits += int((model(images).argmax(axis=1) == labels).astype("int64").sum())
            total += int(labels.shape[0])
        return {"top1": hits / max(total, 1), "top5": None}


TRAIN = {"epochs": 1, "lr": 0.05, "batch_size": 64}
REPORT = {"latency_runs": 2, "latency_warmup": 0}


def _model():
    paddle.seed(0)
    return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)


class Recording:
    """The user's engine as slimkit sees it, every attribute slimkit reads from it recorded."""

    def __init__(self, engine):
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "read", set())

    def __getattr__(self, name):
        self.read.add(name)
        return getattr(self._engine, name)


def test_the_user_engine_implements_only_the_protocol(digits):
    engine = ArrayLoopEngine(digits)
    assert isinstance(engine, EngineProtocol)
    assert not isinstance(engine, slimkit.Engine) and not hasattr(engine, "config")
    assert check_engine(engine) is engine  # slimkit's own check of the contract accepts it
    assert set(REQUIRED) == {name for name in dir(EngineProtocol) if not name.startswith("_")}


def test_stages_and_every_export_format_read_only_the_declared_contract(digits, tmp_path):
    from slimkit import PTQ, FilterPruning, Finetune

    engine = Recording(ArrayLoopEngine(digits))
    stages = [Finetune(name="train", epochs=1), FilterPruning(criterion="taylor", ratios=0.3), PTQ(runtime="cpu")]
    reports = slimkit.Pipeline(_model(), digits, stages, train=TRAIN, engine=engine, report=REPORT,
                               export={"formats": ["paddle", "onnx"]}, out_dir=tmp_path, verbose=False).run()
    for report in reports:
        record = report.extra["export"]
        assert record["paddle"] and record["onnx"]["ok"], (report.stage, record["onnx"])
    assert reports[-1].extra["export"]["onnx"]["int8"]
    assert engine.read <= set(REQUIRED) | set(OPTIONAL), engine.read - set(REQUIRED) - set(OPTIONAL)
    assert {"train", "evaluate", "batches"} <= engine.read


def test_an_engine_slimkit_cannot_call_is_refused_up_front(digits):
    class NoMaxBatches(ArrayLoopEngine):
        def batches(self, split, batch_size=None, shuffle=False, seed=0):
            return super().batches(split, batch_size, shuffle, seed)

    with pytest.raises(ConfigError, match=r"engine: NoMaxBatches.batches cannot be called as slimkit calls it") as err:
        slimkit.Pipeline(_model(), digits, [slimkit.Finetune()], engine=NoMaxBatches(digits), verbose=False)
    assert "batches(split, batch_size=None, shuffle=False, seed=0, max_batches=None)" in err.value.hint


def test_every_built_in_strategy_runs_with_a_user_engine(digits, tmp_path):
    from slimkit import QAT, Distillation, FilterPruning, Finetune, SparsePruning

    engine = ArrayLoopEngine(digits)
    stages = [Finetune(name="train", epochs=2),
              FilterPruning(criterion="taylor", target_flops_reduction=0.3,
                            sensitivity={"ratios": [0.3, 0.6], "eval_batches": 1}),
              SparsePruning(schedule={"type": "polynomial_decay", "final_sparsity": 0.5, "end_step": 20},
                            strip=False),
              Distillation(epochs=1),
              QAT(epochs=1, runtime="cpu")]
    reports = slimkit.Pipeline(_model(), digits, stages, train=TRAIN, engine=engine, report=REPORT,
                               out_dir=tmp_path / "a", verbose=False).run()
    by_stage = {r.stage: r for r in reports}
    assert reports[0].top1 < by_stage["train"].top1  # the user loop trained the model
    assert by_stage["filter_pruning"].extra["flops_reduction"] >= 0.3
    assert by_stage["sparse_pruning"].extra["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert "train_loss" in by_stage["distill"].extra
    assert any(key.startswith("distill_") for key in by_stage["distill"].extra)  # steps_per_epoch was asked
    assert by_stage["qat"].extra["cpu_execution"] in ("int8 kernels", "simulated")
    # Defaults come from the pipeline's `train` block through the Context, not from the engine.
    trains = [c for c in engine.calls if c[0] == "train"]
    assert trains[0] == ("train", 2, 0.05)                       # finetune: its own epochs, train.lr
    assert ("train", 1, pytest.approx(0.005)) in trains          # qat: a tenth of train.lr
    assert ("batches", "val") in engine.calls                    # the sensitivity scan evaluated on val


def test_ptq_calibrates_with_the_user_engines_batches(digits, tmp_path):
    from slimkit import PTQ

    engine = ArrayLoopEngine(digits)
    reports = slimkit.Pipeline(_model(), digits, [PTQ(calibration_batches=2, runtime="cpu")], train=TRAIN,
                               engine=engine, report=REPORT, out_dir=tmp_path, verbose=False).run()
    assert reports[1].extra["calibration_batches"] == 2
    assert engine.calls.count(("batches", "train")) == 1


def test_an_engine_missing_a_method_is_refused_up_front(digits):
    class TrainOnly:
        def train(self, model, **kwargs):
            return []

    with pytest.raises(ConfigError) as err:
        slimkit.Pipeline(_model(), digits, [slimkit.Finetune()], engine=TrainOnly(), verbose=False)
    assert err.value.path == "engine"
    assert "evaluate, batches, steps_per_epoch" in err.value.message


USER_STRATEGY = '''
import dataclasses

import paddle

import slimkit
from slimkit.schema import option


@dataclasses.dataclass
class ScaleLastLayer(slimkit.Strategy):
    factor: float = option(1.0, "multiplier", gt=0)

    def apply(self, model, ctx):
        last = [layer for layer in model.sublayers() if isinstance(layer, paddle.nn.Linear)][-1]
        last.weight.set_value(last.weight * self.factor)
        ctx.note(f"scaled by {self.factor}")
        return model
'''


def test_a_user_strategy_class_is_reachable_from_yaml(tmp_path, monkeypatch):
    (tmp_path / "my_strategies.py").write_text(USER_STRATEGY)
    monkeypatch.syspath_prepend(str(tmp_path))
    config_file = tmp_path / "run.yaml"
    config_file.write_text("data: {name: digits}\nmodel: {name: small_cnn}\nreport: {latency_runs: 2}\n"
                           "stages:\n  - {type: 'my_strategies:ScaleLastLayer', factor: 2.0}\n")
    pipeline = build_pipeline(load_config(config_file), tmp_path / "run", verbose=False)
    weight = [p for n, p in pipeline.input_model.named_parameters() if n.endswith("weight")][-1].numpy()
    reports = pipeline.run()
    scaled = [p for n, p in pipeline.model.named_parameters() if n.endswith("weight")][-1].numpy()
    np.testing.assert_allclose(scaled, 2.0 * weight, rtol=1e-6)
    # (a "slower" note may join it: a timing on a shared machine, not the strategy's)
    assert reports[1].stage == "ScaleLastLayer"
    assert [n for n in reports[1].notes if n.kind != "slower"] == ["scaled by 2.0"]
    assert pipeline.stages[0].to_config() == {"type": "my_strategies:ScaleLastLayer", "name": None, "factor": 2.0}
    # A resumed run rebuilds the same class from the recorded type.
    assert build_pipeline(load_config(config_file), tmp_path / "run", verbose=False).run(resume=True)[1].top1 \
        == reports[1].top1


@pytest.mark.parametrize("kind, message", [("my_missing_module:X", "cannot import 'my_missing_module'"),
                                           ("slimkit.engine:TrainConfig", "is not a subclass of slimkit.Strategy")])
def test_a_bad_strategy_reference_names_the_stage(kind, message):
    from slimkit.strategies.base import strategy_from_config

    with pytest.raises(ConfigError) as err:
        strategy_from_config({"type": kind}, "stages[0]")
    assert err.value.path == "stages[0].type" and message in err.value.message
