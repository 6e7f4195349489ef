"""`--out` ownership: slimkit removes only what it wrote, refuses folders it cannot use, writes atomically.

One test per probe: the exit code, a message naming the problem, and the user's files unchanged byte for byte.
"""

import os
from pathlib import Path

import pytest

from slimkit.core import files
from slimkit.core.errors import OutputError
from slimkit.run import rundir
from slimkit.run.cli import main

TINY = """data: {name: digits}
model: {name: small_cnn}
train: {epochs: 1, batch_size: 64, max_steps_per_epoch: 3, progress: false}
report: {latency_runs: 2, latency_warmup: 0}
stages:
  - {type: finetune, name: train}
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def other_config(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(TINY.replace("epochs: 1", "epochs: 2"))
    return path


def snapshot(folder, log=True):
    """Every file under `folder` with its bytes, for 'nothing changed' assertions (`log=False`: but run.log)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and (log or p.name != "run.log")}


def test_a_user_folder_named_like_a_stage_is_never_deleted(config, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "01-raw-data").mkdir(parents=True)
    (out / "01-raw-data" / "important.csv").write_text("a\n")
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert (out / "01-raw-data" / "important.csv").read_bytes() == b"a\n"
    assert (out / "01-train" / "stage.json").is_file()
    # a rerun of the same config replaces its own stage folders and still leaves the user's alone
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert (out / "01-raw-data" / "important.csv").read_bytes() == b"a\n"


def test_a_folder_holding_another_run_is_refused_then_overwritten_on_request(config, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    capsys.readouterr()
    assert main(["run", str(other_config(tmp_path)), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds another run" in err and str(out) in err
    assert "--resume" in err and "--overwrite" in err and "another --out" in err
    assert snapshot(out) == before, "a refused run changes nothing"
    assert main(["run", str(other_config(tmp_path)), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert '"epochs": 2' in (out / "pipeline.json").read_text()


def test_a_file_named_like_a_stage_folder_is_exit_2_and_kept(config, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "01-train").write_bytes(b"user data")
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "01-train" in err and "in the way" in err and "Traceback" not in err
    assert (out / "01-train").read_bytes() == b"user data"


def test_out_that_is_a_file_is_exit_2(config, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_bytes(b"not a folder")
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{out} is a file" in err and "hint" in err
    assert out.read_bytes() == b"not a folder"


def test_unwritable_out_is_exit_2_naming_the_path(config, tmp_path, capsys):
    if os.geteuid() != 0:
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o500)
    else:  # root writes anywhere chmod allows; /sys is mounted read-only for everyone
        out = Path("/sys/slimkit-out")
        if out.exists():
            pytest.skip("no unwritable path on this machine")
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"cannot write to {out}" in err and "hint" in err


def test_resume_of_a_finished_run_writes_nothing(config, tmp_path):
    """So it works in a read-only folder: no file is replaced (same inode, same bytes; run.log is only appended
    to, when it can be)."""
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    inodes = {p: p.stat().st_ino for p in out.rglob("*") if p.is_file()}
    before = snapshot(out, log=False)
    assert main(["run", str(config), "--out", str(out), "--quiet", "--resume"]) == 0
    assert snapshot(out, log=False) == before
    assert {p: p.stat().st_ino for p in out.rglob("*") if p.is_file()} == inodes


def test_os_errors_during_a_run_are_exit_2_with_the_path(config, tmp_path, capsys, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "report.json"))

    monkeypatch.setattr("slimkit.report.rows.atomic_write_text", disk_full)
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "report.json" in err and "No space left on device" in err and "hint" in err


def test_only_marked_folders_of_the_run_are_replaced(tmp_path):
    run_id = rundir.claim(tmp_path, {"a": 1}, ["00-baseline"])
    rundir.new_stage_folder(tmp_path / "00-baseline", run_id)
    (tmp_path / "00-baseline" / "model.pdparams").write_text("old")
    rundir.new_stage_folder(tmp_path / "00-baseline", run_id)
    assert not (tmp_path / "00-baseline" / "model.pdparams").exists()
    (tmp_path / "02-foreign").mkdir()
    (tmp_path / "02-foreign" / rundir.MARKER).write_text("another-run")
    with pytest.raises(OutputError, match="02-foreign"):
        rundir.new_stage_folder(tmp_path / "02-foreign", run_id)
    assert rundir.own_stage_folders(tmp_path, run_id) == [tmp_path / "00-baseline"]


def test_atomic_write_leaves_old_or_new_never_a_torn_file(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old")

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OutputError, match=f"cannot write {target}: the disk is full"):
        files.atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"], \
        "the temporary file of the failed write is removed"
    monkeypatch.undo()
    files.atomic_write_text(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_stage_folders_are_named_by_row_baseline_first(tmp_path):
    assert rundir.BASELINE_DIR == "00-baseline"
    assert rundir.folder_names(["prune", "recover"]) == ["00-baseline", "01-prune", "02-recover"]
    for name in ("00-baseline", "01-prune", "not-a-stage"):
        (tmp_path / name).mkdir()
        (tmp_path / name / rundir.DONE).write_text("{}")
    assert rundir.finished_stages(tmp_path) == [tmp_path / "00-baseline", tmp_path / "01-prune"]
