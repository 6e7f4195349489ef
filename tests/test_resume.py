"""A rerun with resume restores finished stages instead of running them, and reports the same."""

import dataclasses

import pytest
from report_checks import untimed

import slimkit
from slimkit import Finetune, Pipeline, Strategy
from slimkit.core.errors import ResumeError

CALLS = []


@dataclasses.dataclass
class CountingFinetune(Finetune, type_name="counting_finetune_for_tests"):
    def apply(self, model, ctx):
        CALLS.append(ctx.stage_name)
        return super().apply(model, ctx)


def make(digits, out, stages, **train):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    return Pipeline(model, digits, stages=stages, out_dir=out, train={"progress": False, **train},
                    report={"latency_runs": 3}, verbose=False)


def stages():
    return [CountingFinetune(epochs=1, name="a"), CountingFinetune(epochs=1, name="b", lr=0.01)]


def test_resume_skips_finished_stages_and_gives_the_same_report(digits, tmp_path):
    CALLS.clear()
    first = make(digits, tmp_path, stages()).run()
    assert CALLS == ["a", "b"]
    # An interrupted second stage: its folder exists but was never marked done.
    (tmp_path / "02-b" / "stage.json").unlink()
    CALLS.clear()
    second = make(digits, tmp_path, stages()).run(resume=True)
    assert CALLS == ["b"]
    assert [r.top1 for r in second] == [r.top1 for r in first]
    assert untimed(second[1]) == untimed(first[1])
    CALLS.clear()
    third = make(digits, tmp_path, stages()).run(resume=True)
    assert CALLS == [] and [untimed(r) for r in third] == [untimed(r) for r in second]


def test_changed_stage_config_reruns_from_there(digits, tmp_path):
    CALLS.clear()
    make(digits, tmp_path, stages()).run()
    changed = [CountingFinetune(epochs=1, name="a"), CountingFinetune(epochs=2, name="b", lr=0.01)]
    CALLS.clear()
    make(digits, tmp_path, changed).run(resume=True)
    assert CALLS == ["b"]


def test_resume_refuses_a_different_run(digits, tmp_path):
    make(digits, tmp_path, stages()).run()
    with pytest.raises(ResumeError, match="train"):
        make(digits, tmp_path, stages(), lr=0.2).run(resume=True)


def test_without_resume_everything_runs_again(digits, tmp_path):
    make(digits, tmp_path, stages()).run()
    CALLS.clear()
    make(digits, tmp_path, stages()).run()
    assert CALLS == ["a", "b"]


def test_strategy_base_requires_apply():
    with pytest.raises(NotImplementedError):
        Strategy().apply(None, None)


@dataclasses.dataclass
class InterruptOnce(Finetune, type_name="interrupt_once_for_tests"):
    def apply(self, model, ctx):
        CALLS.append(ctx.stage_name)
        if CALLS.count(ctx.stage_name) == 1:
            raise KeyboardInterrupt
        return super().apply(model, ctx)


def test_interrupted_stage_runs_again_on_resume(digits, tmp_path):
    CALLS.clear()
    run = [CountingFinetune(epochs=1, name="a"), InterruptOnce(epochs=1, name="b")]
    with pytest.raises(KeyboardInterrupt):
        make(digits, tmp_path, run).run()
    assert (tmp_path / "01-a" / "stage.json").is_file() and not (tmp_path / "02-b" / "stage.json").exists()
    reports = make(digits, tmp_path, run).run(resume=True)
    assert CALLS == ["a", "b", "b"] and [r.stage for r in reports] == ["baseline", "a", "b"]
