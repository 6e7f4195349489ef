"""`check` verifies everything `run` verifies before work, and `run` rejects it before any training.

One test per probe: exit code 2, a message naming the problem (and the closest valid name),
and nothing lost: the user's files are still there byte for byte, no stage folder was written.
"""

import dataclasses

import numpy as np
import pytest

import slimkit
from slimkit import FilterPruning, Finetune, Pipeline, SparsePruning
from slimkit.core.errors import ConfigError, ConfigErrors
from slimkit.core.schema import option
from slimkit.run.cli import main
from slimkit.sparsity import sparse_prunable_layers

HEAD = """data: {name: digits}
model: {name: small_cnn}
train: {epochs: 1, batch_size: 64, max_steps_per_epoch: 2, progress: false}
report: {latency_runs: 2, latency_warmup: 0}
"""


def config(tmp_path, stages, head=HEAD, name="run.yaml"):
    path = tmp_path / name
    path.write_text(head + "stages:\n" + "".join(f"  - {s}\n" for s in stages))
    return path


def check(capsys, *paths):
    code = main(["check", *map(str, paths)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("model, expected", [
    ("{name: small_cnnn}", "did you mean 'small_cnn'"),
    ("{name: 'nosuch_pkg.models:build'}", "cannot import 'nosuch_pkg.models'"),
    ("{name: 'numpy:no_such_function'}", "has no 'no_such_function'"),
    ("{name: 'json:loads'}", "names the Python standard library"),
    ("{name: small_cnn, args: {widht: 4}}", "unexpected keyword argument 'widht'"),
])
def test_check_builds_the_model(tmp_path, capsys, model, expected):
    path = config(tmp_path, ["{type: finetune}"], HEAD.replace("{name: small_cnn}", model))
    code, out, err = check(capsys, path)
    assert code == 2 and expected in err and "ok" not in out


def test_check_runs_one_forward_at_the_input_shape(tmp_path, capsys):
    path = config(tmp_path, ["{type: finetune}"], HEAD + "input_shape: [1, 3, 8, 8]\n")
    code, _, err = check(capsys, path)
    assert code == 2 and "cannot run on input_shape [1, 3, 8, 8]" in err


def test_check_finds_missing_data_files(tmp_path, capsys):
    head = HEAD.replace("{name: digits}", f"{{name: fashion_mnist, root: {tmp_path}}}")
    code, _, err = check(capsys, config(tmp_path, ["{type: finetune}"], head))
    assert code == 2 and "missing file" in err and "train-images" in err


def test_check_rejects_distill_without_a_teacher(tmp_path, capsys):
    code, _, err = check(capsys, config(tmp_path, ["{type: distill}"]))
    assert code == 2 and "stages[0].teacher" in err and "no teacher" in err


def test_check_rejects_pruning_after_quantization(tmp_path, capsys):
    code, _, err = check(capsys, config(tmp_path, ["{type: qat, epochs: 1}", "{type: filter_pruning, ratios: 0.3}"]))
    assert code == 2 and "stages[1]" in err and "after the quantization stage qat" in err
    assert "move filter_pruning before qat" in err


def test_check_rejects_an_unreachable_flops_target(tmp_path, capsys):
    stage = "{type: filter_pruning, target_flops_reduction: 0.95, max_ratio: 0.5}"
    code, _, err = check(capsys, config(tmp_path, [stage]))
    assert code == 2 and "stages[0].target_flops_reduction" in err and "cannot be reached: at most" in err


def test_check_rejects_a_stage_that_undoes_sparsity(tmp_path, capsys):
    code, _, err = check(capsys, config(tmp_path, ["{type: sparse_pruning, sparsity: 0.5, epochs: 0}",
                                                   "{type: finetune}"]))
    assert code == 2 and "stages[0].strip" in err and "fill in again" in err and "strip: false" in err


@pytest.mark.parametrize("stage, closest", [
    ("{type: sparse_pruning, sparsity: 0.5, epochs: 0, skip: [classifer.3]}", "did you mean 'classifier.3'"),
    ("{type: qat, epochs: 1, skip_layers: [classifer.3]}", "did you mean 'classifier.3'"),
    ("{type: filter_pruning, ratios: {features.33: 0.5}}", "did you mean 'features.3'"),
    ("{type: filter_pruning, target_flops_reduction: 0.3, skip: [feature.0]}", "did you mean 'features.0'"),
])
def test_layer_names_are_checked_against_the_model(tmp_path, capsys, stage, closest):
    code, _, err = check(capsys, config(tmp_path, ["{type: finetune}", stage]))
    assert code == 2 and "stages[1]" in err and closest in err


def test_all_config_errors_in_one_pass(tmp_path, capsys):
    head = HEAD.replace("epochs: 1,", "epoch: 1,").replace("latency_runs", "latency_run")
    code, _, err = check(capsys, config(tmp_path, ["{type: finetune, lr: -1}"], head))
    assert code == 2 and "3 problems" in err
    assert "train.epoch" in err and "report.latency_run" in err and "stages[0].lr" in err


def test_check_takes_several_files(tmp_path, capsys):
    good = config(tmp_path, ["{type: finetune}"], name="good.yaml")
    bad = config(tmp_path, ["{type: distill}"], name="bad.yaml")
    code, out, err = check(capsys, good, bad)
    assert code == 2
    assert f"{good}: ok" in out and f"{bad}: error" in err


def test_run_rejects_before_any_training_and_loses_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_bytes(b"keep me")
    path = config(tmp_path, ["{type: finetune}", "{type: qat, epochs: 1}", "{type: filter_pruning, ratios: 0.3}"])
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    assert "after the quantization stage" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"], "no stage ran, nothing was written"
    assert (out / "mine.txt").read_bytes() == b"keep me"


def test_check_verifies_the_output_folder(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("a file")
    code = main(["check", str(config(tmp_path, ["{type: finetune}"])), "--out", str(out)])
    assert code == 2 and f"{out} is a file" in capsys.readouterr().err


def prunable_zeros(model):
    return {n: float(np.mean(layer.weight.numpy() == 0)) for n, layer in sparse_prunable_layers(model).items()}


def test_masks_kept_through_later_training_when_not_stripped(digits, tmp_path):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    stages = [SparsePruning(sparsity=0.7, epochs=0, strip=False), Finetune(epochs=1, name="after")]
    pipeline = Pipeline(model, digits, stages, out_dir=tmp_path, train={"progress": False, "max_steps_per_epoch": 5},
                        report={"latency_runs": 2, "latency_warmup": 0}, verbose=False)
    pipeline.run()
    zeros = prunable_zeros(pipeline.model)
    assert all(z == pytest.approx(0.7, abs=0.01) for z in zeros.values()), zeros


@dataclasses.dataclass
class FailsLate(Finetune, type_name="fails_late_for_tests"):
    def apply(self, model, ctx):
        raise ConfigError("lr", "too high for this model", "lower it")


def test_an_error_after_a_finished_stage_says_resume_continues(digits, tmp_path):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    stages = [Finetune(epochs=1, name="a"), FailsLate(name="b")]
    pipeline = Pipeline(model, digits, stages, out_dir=tmp_path, train={"progress": False, "max_steps_per_epoch": 2},
                        report={"latency_runs": 2, "latency_warmup": 0}, verbose=False)
    with pytest.raises(ConfigError) as caught:
        pipeline.run()
    assert "lower it" in caught.value.hint and "--resume" in caught.value.hint and "from b" in caught.value.hint
    assert (tmp_path / "01-a" / "stage.json").is_file()


def test_python_api_runs_the_same_checks(digits, tmp_path):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    stages = [SparsePruning(sparsity=0.5, epochs=0, skip=["classifer.3"]), Finetune(epochs=1)]
    with pytest.raises(ConfigErrors) as caught:
        Pipeline(model, digits, stages, out_dir=tmp_path / "out", verbose=False).run()
    assert len(caught.value.errors) == 2 and "classifier.3" in str(caught.value)
    assert not (tmp_path / "out").exists()


# --- a user's own strategy gets the same checks by declaring what it does (slimkit.Strategy) -----
@dataclasses.dataclass
class OwnQuantizer(slimkit.Strategy):
    quantizes = True
    traces = True

    def apply(self, model, ctx):
        raise AssertionError("no work may start before the checks")


@dataclasses.dataclass
class OwnLayerCheck(slimkit.Strategy):
    compresses = False
    layer: str = option("features.0", "the layer this stage reads")

    def preflight(self, model, input_shape, as_built=True):
        if self.layer in dict(model.named_sublayers()):
            return []
        return [ConfigError("layer", f"the model has no layer {self.layer!r}", "name one of its layers")]

    def apply(self, model, ctx):
        raise AssertionError("no work may start before the checks")


def test_a_users_quantizing_strategy_is_refused_before_a_pruning_after_it(digits, tmp_path):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    stages = [OwnQuantizer(name="mine"), FilterPruning(ratios=0.3)]
    with pytest.raises(ConfigError) as caught:
        Pipeline(model, digits, stages, out_dir=tmp_path / "out", verbose=False).run()
    assert caught.value.path == "stages[1]" and "after the quantization stage mine" in caught.value.message
    assert not (tmp_path / "out").exists()


def test_a_users_preflight_hook_is_reported_with_the_other_mistakes(digits, tmp_path):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    stages = [OwnLayerCheck(layer="feature.0"), SparsePruning(sparsity=0.5, epochs=0, skip=["classifer.3"])]
    with pytest.raises(ConfigErrors) as caught:
        Pipeline(model, digits, stages, out_dir=tmp_path / "out", verbose=False).run()
    paths = sorted(err.path for err in caught.value.errors)
    assert paths == ["stages[0].layer", "stages[1]"], paths
    assert "no layer 'feature.0'" in str(caught.value) and "classifier.3" in str(caught.value)
    assert not (tmp_path / "out").exists()
