"""Per-epoch loss, train top-1 and learning rate of every training stage, a curves PNG, one line per epoch."""

import json

import numpy as np
import pytest

import slimkit
from slimkit import FilterPruning, Finetune, Pipeline
from slimkit.report.curves import CURVES

TRAIN = {"epochs": 2, "batch_size": 32, "lr": 0.05, "schedule": "cosine", "max_steps_per_epoch": 5}


@pytest.fixture(scope="module")
def run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("history")
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    stages = [Finetune(name="train"), FilterPruning(ratios=0.25), Finetune(name="recover", epochs=1, lr=0.01)]
    pipeline = Pipeline(model, digits, stages, train={**TRAIN, "progress": False}, out_dir=out, verbose=False)
    pipeline.run()
    return pipeline, out


def test_report_json_holds_every_epoch_of_every_training_stage(run):
    pipeline, out = run
    stages = {s["stage"]: s for s in json.loads((out / "report.json").read_text())["stages"]}
    train, recover = stages["train"]["extra"]["history"], stages["recover"]["extra"]["history"]
    assert [e["epoch"] for e in train] == [1, 2] and [e["epoch"] for e in recover] == [1]
    # cosine over 2 x 5 steps from 0.05: the second epoch starts half-way down
    assert train[0]["lr"] == pytest.approx(0.05) and train[1]["lr"] == pytest.approx(0.025)
    assert recover[0]["lr"] == pytest.approx(0.01)
    assert all(0 < e["loss"] and 0 <= e["train_top1"] <= 1 for e in train + recover)
    assert train[1]["loss"] < train[0]["loss"]
    assert stages["train"]["extra"]["train_loss"] == round(train[-1]["loss"], 5)  # the same numbers
    assert not stages["filter_pruning"]["extra"]["history"] and "history" not in stages["baseline"]["extra"]


def test_the_run_folder_has_a_png_with_a_curve_per_training_stage(run):
    from matplotlib.image import imread

    _, out = run
    image = imread(str(out / CURVES))[..., :3]
    assert image.shape[:2] == (340, 1000)  # three panels, figsize (10, 3.4) at 100 dpi
    # matplotlib's first two line colours: the two training stages (train, recover), in every panel.
    for colour in ((0.122, 0.467, 0.706), (1.0, 0.498, 0.055)):
        drawn = np.abs(image - np.array(colour)).max(axis=-1) < 0.05
        columns = np.flatnonzero(drawn.any(axis=0))
        assert [(columns // 333 == panel).any() for panel in range(3)] == [True, True, True], colour


def test_not_a_terminal_prints_one_line_per_epoch(digits, capsys):
    engine = slimkit.Engine(digits, {**TRAIN, "progress": None})  # pytest's output is not a terminal
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    history = engine.train(model, desc="train")
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines == [f"  train epoch {e['epoch']}/2: loss {e['loss']:.4f}, train top-1 {e['train_top1']:.2%}, "
                     f"lr {e['lr']:.4g}" for e in history]
    assert "\r" not in captured.err + captured.out  # no bar frames
    assert engine.take_history() == [{"run": "train", **e} for e in history] and engine.take_history() == []


def test_progress_false_prints_nothing(digits, capsys):
    engine = slimkit.Engine(digits, {**TRAIN, "epochs": 1, "progress": False})
    engine.train(slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8))
    assert capsys.readouterr().out == ""
