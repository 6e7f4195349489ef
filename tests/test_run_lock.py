"""One run per output folder, and the ranks of `--nproc` run as the process that started them.

A run waiting inside a stage (in another process) holds its folder: a second run and
`slimkit check` are refused naming that process, and nothing of the first run changes.
A lock left by a killed run is taken over. The ranks import the launcher's slimkit even
when the working folder holds a `slimkit/` folder.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import slimkit
from slimkit import Finetune, Pipeline
from slimkit.core.errors import OutputError
from slimkit.run.cli import main
from slimkit.run.launcher import command, environment
from slimkit.run.lock import ENV, LOCK, RunLock

ROOT = Path(__file__).resolve().parents[1]
TINY = """data: {name: digits}
model: {name: small_cnn}
train: {epochs: 1, batch_size: 64, max_steps_per_epoch: 2, progress: false}
report: {latency_runs: 2, latency_warmup: 0, latency_rounds: 1}
stages:
"""
WAITING = '''
import dataclasses, time
from pathlib import Path
from slimkit import Strategy
from slimkit.core.schema import option


@dataclasses.dataclass
class WaitFor(Strategy):
    """Says it started (`ready`), then waits until the file `go` exists."""

    compresses = False
    ready: str = option("", "")
    go: str = option("", "")

    def apply(self, model, ctx):
        Path(self.ready).write_text("")
        for _ in range(1200):
            if Path(self.go).exists():
                return model
            time.sleep(0.1)
        raise RuntimeError("never told to go on")
'''


def env_with(*paths):
    return {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), "OMP_NUM_THREADS": "1"}


def wait_for(path, proc, seconds=180):
    for _ in range(seconds * 10):
        if path.exists():
            return
        if proc.poll() is not None:
            pytest.fail(f"the first run ended early: {proc.communicate()}")
        time.sleep(0.1)
    pytest.fail("the first run never reached its waiting stage")


def test_a_second_run_on_a_busy_folder_is_refused_naming_the_process(tmp_path, capsys):
    (tmp_path / "waiting.py").write_text(WAITING)
    ready, go, out = tmp_path / "ready", tmp_path / "go", tmp_path / "out"
    first_config = tmp_path / "first.yaml"
    first_config.write_text(TINY + f"  - {{type: 'waiting:WaitFor', ready: '{ready}', go: '{go}'}}\n")
    second_config = tmp_path / "second.yaml"
    second_config.write_text(TINY.replace("epochs: 1", "epochs: 2") + "  - {type: finetune}\n")
    first = subprocess.Popen([sys.executable, "-m", "slimkit", "run", str(first_config), "--out", str(out),
                              "--quiet"], env=env_with(ROOT, tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(ready, first)
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        for argv in (["run", str(second_config), "--out", str(out), "--quiet", "--overwrite"],
                     ["check", str(second_config), "--out", str(out)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"{out} is in use by another slimkit run: process {first.pid}" in err, err
            assert "slimkit run" in err and "another --out" in err
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, "the busy run is untouched"
    finally:
        go.write_text("")
        _, err = first.communicate(timeout=180)
    assert first.returncode == 0, err
    assert not (out / LOCK).exists(), "the lock goes with the run"


def test_a_stale_lock_of_a_killed_run_is_taken_over(tmp_path, digits):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom slimkit.run.lock import RunLock\n"
                               f"RunLock({str(out)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(600)"],
                              env=env_with(ROOT), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(OutputError, match=f"process {holder.pid}"):
        RunLock(out).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (out / LOCK).is_file(), "a killed run leaves its lock file"
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    Pipeline(model, digits, [Finetune(epochs=0)], out_dir=out, verbose=False,
             report={"runtime": "eager", "latency_runs": 1, "latency_warmup": 0}).run()
    assert (out / "01-finetune" / "stage.json").is_file() and not (out / LOCK).exists()


def test_the_ranks_of_a_launch_run_inside_the_launchers_lock(tmp_path, digits, monkeypatch, capsys):
    out = tmp_path / "out"
    config = tmp_path / "c.yaml"
    config.write_text(TINY + "  - {type: finetune}\n")
    seen = {}

    def ranks(nproc, argv, out_dir=None, echo_all=False, env=None):
        seen.update(env=env, holder=RunLock(out_dir).holder())
        return 0

    monkeypatch.setattr("slimkit.run.launcher.run_launched", ranks)
    assert main(["run", str(config), "--out", str(out), "--nproc", "2", "--quiet"]) == 0
    assert seen["holder"]["pid"] == os.getpid() and seen["env"] == {ENV: f"{out.absolute()}:{os.getpid()}"}
    assert not out.exists(), "the launcher's lock leaves no trace"
    # a rank (here: this process, told by the environment) runs inside the lock its launcher holds
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    stages = [Finetune(epochs=0)]
    quick = {"runtime": "eager", "latency_runs": 1, "latency_warmup": 0}
    with RunLock(out) as lock:
        with pytest.raises(OutputError, match="in use by another slimkit run"):
            Pipeline(model, digits, stages, out_dir=out, verbose=False, report=quick).run()
        monkeypatch.setenv(ENV, lock.environment()[ENV])
        Pipeline(model, digits, stages, out_dir=out, verbose=False, report=quick).run()
    assert (out / "01-finetune" / "stage.json").is_file()


def test_the_ranks_import_the_launchers_slimkit_not_a_slimkit_folder_where_they_start(tmp_path):
    (tmp_path / "slimkit").mkdir()
    (tmp_path / "slimkit" / "__init__.py").write_text("raise ImportError('not the slimkit that launched')\n")
    launch = command(2, ["models"], tmp_path / "logs")
    rank = launch[launch.index("--log_dir") + 2:]  # what paddle.distributed.launch starts N times
    result = subprocess.run(rank, cwd=tmp_path, env=environment(2), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "small_cnn" in result.stdout
