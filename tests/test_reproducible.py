"""The Python API is seeded as the CLI is: the same script gives the same report, the caller's RNG is kept."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
from report_checks import TIMED_NOTES

import slimkit
from slimkit import FilterPruning, Finetune, Pipeline
from slimkit.run.config import RunConfig, build_pipeline

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"epochs": 1, "batch_size": 32, "progress": False, "max_steps_per_epoch": 5}
TIMED = ("seconds", "latency_ms")  # wall-clock measurements: the only numbers allowed to differ


def measured(report_json):
    stages = json.loads(Path(report_json).read_text())["stages"]
    return [{**{k: v for k, v in s.items() if k not in TIMED and k not in ("extra", "notes")},
             "notes": [n for n in s["notes"] if n.get("kind") not in TIMED_NOTES]} for s in stages]


def readme_snippet():
    text = (ROOT / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_the_readme_snippet_twice_gives_identical_reports(tmp_path):
    # Two fresh processes, as a user runs the script twice; the caller seeds differently each time.
    code = readme_snippet().replace("epochs=8", "epochs=2").replace("epochs=3", "epochs=1")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = []
    for i in range(2):  # side by side: one thread each
        folder = tmp_path / str(i)
        folder.mkdir()
        (folder / "snippet.py").write_text(f"import paddle\npaddle.seed({1000 + i})\n{code}")
        procs.append(subprocess.Popen([sys.executable, "snippet.py"], cwd=folder, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in procs:
        output = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, output
    runs = [measured(tmp_path / str(i) / "runs" / "readme" / "report.json") for i in range(2)]
    assert runs[0] == runs[1]
    assert runs[0][0]["top1"] != runs[0][-1]["top1"]  # it did train


def test_python_and_cli_runs_of_one_config_agree(digits, tmp_path):
    stages = [{"type": "finetune", "name": "train"}]
    cli = build_pipeline(RunConfig.from_dict({"train": QUICK, "stages": stages}), tmp_path / "cli", verbose=False)
    cli.run()
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    python = Pipeline(model, digits, [Finetune(name="train")], train=QUICK, out_dir=tmp_path / "py", verbose=False)
    python.run()
    # (size_bytes aside: paddle saves each tensor's name, numbered per process, in the file)
    same = [[{k: v for k, v in s.items() if k != "size_bytes"} for s in measured(tmp_path / run / "report.json")]
            for run in ("cli", "py")]
    assert same[0] == same[1]


def test_building_and_running_leave_the_callers_random_state(digits, tmp_path):
    paddle.seed(123)
    np.random.seed(123)
    expected_paddle, expected_numpy = paddle.rand([3]).numpy(), np.random.rand(3)
    paddle.seed(123)
    np.random.seed(123)
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    Pipeline(model, digits, [Finetune(epochs=1), FilterPruning(ratios=0.25)], train=QUICK, out_dir=tmp_path,
             verbose=False).run()
    np.testing.assert_array_equal(paddle.rand([3]).numpy(), expected_paddle)
    np.testing.assert_array_equal(np.random.rand(3), expected_numpy)


def test_the_seed_option_changes_the_run(digits, tmp_path):
    def top1(seed):
        model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8, seed=seed)
        return Pipeline(model, digits, [Finetune(epochs=1)], train={**QUICK, "seed": seed},
                        out_dir=tmp_path / str(seed), verbose=False).run()[-1].top1

    assert top1(0) == top1(0) != top1(1)
