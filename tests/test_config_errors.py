"""Bad configs are rejected before any work, with the path of the bad key and the fix."""

import textwrap

import pytest

from slimkit.core.errors import ConfigError, DataError
from slimkit.run.cli import main
from slimkit.run.config import load_config

GOOD = """
data: {name: digits}
model: {name: small_cnn}
train: {epochs: 1}
stages:
  - {type: finetune, name: train}
"""


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_config_loads(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.train.epochs == 1 and config.stages[0].display_name == "train"


@pytest.mark.parametrize("text, path, hint", [
    (GOOD.replace("train: {epochs: 1}", "train: {epoch: 1}"), "train.epoch", "did you mean 'epochs'"),
    (GOOD.replace("data:", "dataa:"), "dataa", "did you mean 'data'"),
    (GOOD + "  - {type: finetune, name: ft, epocs: 2}\n", "stages[1].epocs", "did you mean 'epochs'"),
    (GOOD + "  - {type: finetuen}\n", "stages[1].type", "did you mean 'finetune'"),
])
def test_typo_is_rejected_with_suggestion(tmp_path, text, path, hint):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.path == path and hint in err.value.hint


@pytest.mark.parametrize("text, path, words", [
    (GOOD.replace("epochs: 1", "epochs: ten"), "train.epochs", "expected an integer"),
    (GOOD.replace("epochs: 1", "epochs: -1"), "train.epochs", "below the minimum"),
    (GOOD.replace("{name: digits}", "{name: digits, val_fraction: 1.5}"), "data.val_fraction", "less than 1"),
    (GOOD.replace("{name: digits}", "{name: imagenet}"), "data.name", "not a valid choice"),
    (GOOD.replace("{epochs: 1}", "{optimizer: adamm}"), "train.optimizer", "not a valid choice"),
    (GOOD.replace("stages:\n  - {type: finetune, name: train}", "stages: []"), "stages", "no stages"),
    (GOOD + "  - {type: finetune, name: train}\n", "stages", "repeat"),
])
def test_bad_value_is_rejected(tmp_path, text, path, words):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.path == path and words in str(err.value)


def test_bad_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid YAML \(line \d+, column \d+\)"):
        load_config(write(tmp_path, "data:\n  name: digits\n  bad: [1, 2\n"))


def test_missing_config_file(tmp_path):
    with pytest.raises(DataError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_python_api_checks_the_same_way():
    from slimkit import Finetune, TrainConfig

    with pytest.raises(ConfigError, match="epochs"):
        Finetune(epochs=-2)
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=0)


def test_cli_exit_code_2_and_one_readable_line(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("train: {epochs: 1}", "train: {epoch: 1}"))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "error: train.epoch: unknown key" in err and "did you mean 'epochs'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists(), "no work may start on a bad config"


def test_cli_missing_data_file_is_exit_2(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("{name: digits}", f"{{name: mnist, root: {tmp_path}}}"))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_cli_debug_shows_traceback(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("train: {epochs: 1}", "train: {epoch: 1}"))
    assert main(["--debug", "check", str(path)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_repeated_stage_names_are_refused_the_same_from_yaml_and_python(tmp_path, digits):
    import slimkit
    from slimkit import Finetune, Pipeline

    text = "data: {name: digits}\nstages:\n  - {type: finetune, name: a}\n  - {type: finetune}\n" \
           "  - {type: finetune, name: a}\n"
    with pytest.raises(ConfigError) as from_yaml:
        load_config(write(tmp_path, text))
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    with pytest.raises(ConfigError) as from_python:
        Pipeline(model, digits, [Finetune(name="a"), Finetune(), Finetune(name="a")], out_dir=tmp_path / "out")
    for caught in (from_yaml, from_python):
        assert caught.value.path == "stages" and caught.value.message.endswith("stage names repeat: a")
        assert "distinct `name`" in caught.value.hint
