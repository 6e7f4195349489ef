"""`--set KEY=VALUE` changes one value of a config for `run` and `check`, validated like the file."""

from pathlib import Path

import pytest

from slimkit.core.errors import ConfigError
from slimkit.run.cli import main
from slimkit.run.config import load_config
from slimkit.run.overrides import apply_overrides, parse_key

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def test_key_paths():
    assert parse_key("train.epochs") == ["train", "epochs"]
    assert parse_key("stages[1].sensitivity.ratios[0]") == ["stages", 1, "sensitivity", "ratios", 0]
    for bad in ("train..epochs", "[1].x", "train.ep-ochs", ""):
        with pytest.raises(ConfigError, match="not a key path"):
            parse_key(bad)


def test_values_are_yaml_and_the_file_is_left_alone():
    raw = {"train": {"epochs": 8}, "stages": [{"type": "finetune"}, {"type": "qat"}]}
    out = apply_overrides(raw, ["train.epochs=1", "stages[-1].lr=1e-3", "report={latency_runs: 5}",
                                "stages[0].name=warm up", "train.progress=false"])
    assert out == {"train": {"epochs": 1, "progress": False}, "report": {"latency_runs": 5},
                   "stages": [{"type": "finetune", "name": "warm up"}, {"type": "qat", "lr": 0.001}]}
    assert raw == {"train": {"epochs": 8}, "stages": [{"type": "finetune"}, {"type": "qat"}]}


def test_overrides_are_validated_like_the_file():
    config = load_config(QUICKSTART, ["train.epochs=1", "stages[1].target_flops_reduction=0.4"])
    assert config.train.epochs == 1 and config.stages[1].target_flops_reduction == 0.4
    with pytest.raises(ConfigError, match=r"(?s)train\.epocs.*did you mean 'epochs'"):
        load_config(QUICKSTART, ["train.epocs=1"])
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_config(QUICKSTART, ["train.epochs=-1"])
    with pytest.raises(ConfigError, match="index 9 is out of range: the list has 4 entries"):
        load_config(QUICKSTART, ["stages[9].lr=0.1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(QUICKSTART, ["train.epochs"])


def test_check_and_run_take_set(tmp_path, capsys):
    assert main(["check", str(QUICKSTART), "--set", "stages[0].name=warmup"]) == 0
    assert "warmup, filter_pruning" in capsys.readouterr().out
    assert main(["check", str(QUICKSTART), "--set", "stages[1].criterion=l3"]) == 2
    assert "stages[1].criterion" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(["run", str(QUICKSTART), "--out", str(out), "--quiet", "--set", "stages=[{type: finetune}]",
                 "--set", "train.epochs=1", "--set", "train.max_steps_per_epoch=2"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["00-baseline", "01-finetune"]
