"""Configs that try to escape `--out`, run code, pass non-finite numbers or exhaust the machine.

Each is refused before any work with exit 2 and a message naming the key; nothing is
written, nothing is run. Timings are not asserted: the bounds are counted, not timed
(a refusal happens on the count, whatever the machine's speed).
"""

import math
import sys

import pytest
import yaml

from slimkit import Finetune, Pipeline
from slimkit.core.errors import ConfigError
from slimkit.run import yamlfile
from slimkit.run.cli import main
from slimkit.run.config import MAX_STAGES, load_config_all
from slimkit.train.engine import TrainConfig

HEAD = """data: {name: digits}
model: {name: small_cnn}
train: {epochs: 1, batch_size: 64, max_steps_per_epoch: 2, progress: false}
report: {latency_runs: 2, latency_warmup: 0}
"""


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def run_cli(capsys, *argv):
    code = main(list(map(str, argv)))
    return code, capsys.readouterr().err


# --- 1. a stage name is one folder name inside --out ----------------------------------------
@pytest.mark.parametrize("name", ["../../../ESCAPED_STAGE", "a/b", "/tmp/abs", "a\\b", "nul\0byte", "", " ", "..",
                                  "x" * 101])
def test_a_stage_name_that_is_not_one_folder_name_is_refused_before_any_work(tmp_path, capsys, name):
    work = tmp_path / "work"
    work.mkdir()
    path = write(work, HEAD + "stages:\n  - " + yaml.safe_dump({"type": "finetune", "name": name},
                                                              default_flow_style=True).strip() + "\n")
    code, err = run_cli(capsys, "run", path, "--out", work / "out", "--quiet")
    assert code == 2 and "stages[0].name" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["run.yaml", "work"], "nothing was written anywhere"


def test_a_python_stage_renamed_after_construction_is_refused_too(digits, tmp_path):
    import slimkit

    stage = Finetune(epochs=1)
    stage.name = "../escaped"
    with pytest.raises(ConfigError, match=r"stages\[0\]\.name: '\.\./escaped' holds '/'"):
        Pipeline(slimkit.build_model("small_cnn"), digits, [stage], out_dir=tmp_path / "out")
    with pytest.raises(ConfigError, match="name"):
        Finetune(name="a/b")


# --- 2. a config names only the user's own classes and functions -----------------------------
@pytest.mark.parametrize("model", [
    '{name: "os:system", args: {command: "touch PWNED"}}',
    '{name: "subprocess:run", args: {args: "touch PWNED", shell: true}}',
    '{name: "builtins:exec", args: {source: "open(\'PWNED\', \'w\')"}}',
    '{name: "pwn_helpers:system", args: {command: "touch PWNED"}}',     # os.system re-exported by a user module
    '{name: "pwn_helpers:run", args: {args: "touch PWNED", shell: true}}',
])
def test_a_config_cannot_run_commands_through_model_names(tmp_path, capsys, monkeypatch, model):
    (tmp_path / "pwn_helpers.py").write_text("from os import system\nfrom subprocess import run\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, HEAD.replace("{name: small_cnn}", model) + "stages:\n  - {type: finetune}\n")
    code, err = run_cli(capsys, "check", path)
    assert code == 2 and ("standard library" in err or "not a class or a function defined in Python" in err)
    assert not (tmp_path / "PWNED").exists(), "the command did not run"


def test_naming_a_standard_module_imports_nothing(tmp_path, capsys):
    sys.modules.pop("this", None)
    path = write(tmp_path, HEAD + "stages:\n  - {type: 'this:s'}\n")
    code, err = run_cli(capsys, "check", path)
    out = capsys.readouterr().out
    assert code == 2 and "stages[0].type: 'this:s' names the Python standard library" in err
    assert "this" not in sys.modules and "Beautiful is better" not in out + err


def test_a_data_factory_is_held_to_the_same_rule(tmp_path, capsys, monkeypatch):
    (tmp_path / "pwn_data.py").write_text("from subprocess import run\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    head = HEAD.replace("{name: digits}", '{factory: "pwn_data:run", args: {args: "touch PWNED", shell: true}}')
    code, err = run_cli(capsys, "check", write(tmp_path, head + "stages:\n  - {type: finetune}\n"))
    assert code == 2 and "data.factory" in err and "subprocess.run of the Python standard library" in err
    assert not (tmp_path / "PWNED").exists()


def test_the_users_own_factory_still_builds(tmp_path, capsys, monkeypatch):
    (tmp_path / "own_models.py").write_text(
        "import slimkit\n\ndef net(num_classes=10, in_channels=1, input_size=8):\n"
        "    return slimkit.build_model('small_cnn', num_classes=num_classes, in_channels=in_channels, "
        "input_size=input_size)\n\ndef not_a_layer(num_classes=10):\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    good = write(tmp_path, HEAD.replace("{name: small_cnn}", '{name: "own_models:net"}')
                 + "stages:\n  - {type: finetune}\n")
    assert run_cli(capsys, "check", good)[0] == 0
    bad = write(tmp_path, HEAD.replace("{name: small_cnn}", '{name: "own_models:not_a_layer"}')
                + "stages:\n  - {type: finetune}\n", "bad.yaml")
    code, err = run_cli(capsys, "check", bad)
    assert code == 2 and "returned int, not a paddle.nn.Layer" in err


# --- 5. every float option is finite -----------------------------------------------------------
@pytest.mark.parametrize("key, value", [("train.lr", ".nan"), ("train.lr", ".inf"), ("train.momentum", "-.inf"),
                                        ("stages[1].target_flops_reduction", ".nan"),
                                        ("stages[1].ratios", "{features.0: .nan}")])
def test_nan_and_infinity_are_refused_by_check(tmp_path, capsys, key, value):
    path = write(tmp_path, HEAD + "stages:\n  - {type: finetune}\n  - {type: filter_pruning, ratios: 0.3}\n")
    if key == "stages[1].target_flops_reduction":
        path = write(tmp_path, HEAD + "stages:\n  - {type: finetune}\n"
                                      "  - {type: filter_pruning, target_flops_reduction: 0.3}\n")
    code, err = run_cli(capsys, "check", path, "--set", f"{key}={value}")
    assert code == 2 and "is not a finite number" in err and key.split("=")[0].split(".")[-1] in err


def test_python_options_refuse_nan_and_infinity():
    for value in (math.nan, math.inf, -math.inf, 10 ** 400):
        with pytest.raises(ConfigError, match="lr: .* is not a finite number"):
            TrainConfig(lr=value)
    assert TrainConfig(lr=1).lr == 1.0


# --- 6. configs that would exhaust the machine --------------------------------------------------
def billion_laughs():
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return HEAD + "\n".join(lines) + "\nstages:\n  - {type: finetune, name: *a9}\n"


@pytest.mark.parametrize("text, words", [
    (billion_laughs(), "expands to more than"),
    (HEAD + "stages: " + "[" * 5000 + "]" * 5000 + "\n", "nest deeper than"),
    (HEAD + "stages: " + "[{a: " * 2000 + "1" + "}]" * 2000 + "\n", "nest deeper than"),
    (HEAD + "stages:\n" + "  - {type: finetune}\n" * (MAX_STAGES + 1), f"more than {MAX_STAGES}"),
    (HEAD + "# " + "x" * yamlfile.MAX_BYTES + "\nstages: []\n", "more than a run config can be"),
])
def test_configs_that_exhaust_the_machine_are_refused_on_a_count(tmp_path, capsys, monkeypatch, text, words):
    built = []
    monkeypatch.setattr("slimkit.run.config.strategy_from_config", lambda *a: built.append(a))
    code, err = run_cli(capsys, "check", write(tmp_path, text))
    assert code == 2 and words in err and "RecursionError" not in err
    assert built == [], "refused before any stage was built"


def test_the_expansion_count_follows_aliases_without_expanding_them():
    with pytest.raises(ConfigError, match="expands to more than 20,000 values"):
        yamlfile.load_yaml(billion_laughs(), "c.yaml")
    assert yamlfile.load_yaml("a: &x [1, 2]\nb: *x\n", "c.yaml") == {"a": [1, 2], "b": [1, 2]}


def test_a_set_value_is_bounded_too(tmp_path, capsys):
    path = write(tmp_path, HEAD + "stages:\n  - {type: finetune}\n")
    code, err = run_cli(capsys, "check", path, "--set", "train.lr=" + "[" * 100 + "]" * 100)
    assert code == 2 and "--set train.lr" in err and "nest deeper" in err


# --- 25b: check and run check the same, and report everything at once -------------------------
NINE_MISTAKES = """data: {name: digits}
model: {name: small_cnn}
train: {epoch: 1, lr: -1, batch_size: 0, progress: false}
report: {latency_run: 2, latency_warmup: -1}
stages:
  - {type: finetune, lr: -1, epochs: -1}
  - {type: prune, ratios: 0.3}
  - {type: filter_pruning, ratios: {features.33: 0.5}, skip: [classifer.3]}
"""


def test_nine_mistakes_are_reported_in_one_round(tmp_path, capsys):
    code, err = run_cli(capsys, "check", write(tmp_path, NINE_MISTAKES))
    assert code == 2 and "10 problems" in err
    for where in ("train.epoch:", "train.lr:", "train.batch_size:", "report.latency_run:", "report.latency_warmup:",
                  "stages[0].lr:", "stages[0].epochs:", "stages[1].type:", "'classifer.3'", "'features.33'"):
        assert where in err, where
    with pytest.raises(ConfigError) as raised:
        load_config_all(tmp_path / "run.yaml")
    assert len(raised.value.errors) == 10


def test_a_model_name_typo_is_reported_with_the_other_config_mistakes(tmp_path, capsys):
    text = HEAD.replace("small_cnn", "small_cnnn").replace("epochs: 1", "epochs: -1")
    code, err = run_cli(capsys, "check", write(tmp_path, text + "stages:\n  - {type: finetune}\n"))
    assert code == 2 and "2 problems" in err and "model.name: unknown model 'small_cnnn'" in err
    assert "train.epochs" in err


def test_data_without_a_channel_axis_is_the_same_exit_2_from_check_and_run(tmp_path, capsys, monkeypatch):
    (tmp_path / "flat_data.py").write_text(
        "import numpy as np\n\ndef make():\n    rng = np.random.RandomState(0)\n"
        "    return rng.randn(120, 8, 8).astype('float32'), rng.randint(0, 10, 120)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, HEAD.replace("{name: digits}", '{factory: "flat_data:make"}')
                 + "stages:\n  - {type: finetune}\n")
    checked = run_cli(capsys, "check", path)
    ran = run_cli(capsys, "run", path, "--out", tmp_path / "out", "--quiet")
    assert checked[0] == ran[0] == 2
    assert "cannot run on input_shape [1, 8, 8]" in checked[1] and "cannot run on input_shape [1, 8, 8]" in ran[1]
    assert not (tmp_path / "out").exists()
