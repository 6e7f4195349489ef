"""Damaged files, full disks and foreign files in a run folder: caught, named, and nothing is lost.

One finished run is made once; each test damages a copy of it the way a crash, a full
disk or a careless copy would, and checks the exit code, that the message names the file
and the fix, and that the fix works.
"""

import errno
import json
import os
import shutil

import pytest

import slimkit
from slimkit.core.errors import CorruptFileError
from slimkit.run.cli import main

TINY = """data: {name: digits}
model: {name: small_cnn}
train: {epochs: 1, batch_size: 64, max_steps_per_epoch: 3, progress: false}
report: {latency_runs: 2, latency_warmup: 0, latency_rounds: 1}
stages:
  - {type: finetune, name: train}
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finished")
    (tmp / "tiny.yaml").write_text(TINY)
    assert main(["run", str(tmp / "tiny.yaml"), "--out", str(tmp / "run"), "--quiet"]) == 0
    return tmp


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run folder, and its config: (config, folder)."""
    shutil.copy(finished / "tiny.yaml", tmp_path / "tiny.yaml")
    shutil.copytree(finished / "run", tmp_path / "run")
    return tmp_path / "tiny.yaml", tmp_path / "run"


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) - 20] ^= 0x01  # inside the last tensor's values: the file still loads, with other weights
    path.write_bytes(bytes(data))


# --- 3. every file slimkit wrote is checked against its recorded checksum -------------------------
@pytest.mark.parametrize("damage", [truncate, flip_a_bit])
@pytest.mark.parametrize("name", ["model.pdparams", "inference/model.pdiparams"])
def test_a_damaged_stage_file_stops_resume_load_and_export(run, capsys, tmp_path, damage, name):
    config, out = run
    damaged = out / "01-train" / name
    damage(damaged)
    code, err = cli(capsys, "run", config, "--out", out, "--resume", "--quiet")
    assert code == 2 and str(damaged) in err and "--resume" in err and "--overwrite" in err
    with pytest.raises(CorruptFileError, match=str(damaged)):
        slimkit.load_model(out / "01-train")
    code, err = cli(capsys, "export", out, "--to", tmp_path / "ship")
    if name.startswith("inference/"):
        assert code == 2 and str(damaged) in err and not (tmp_path / "ship").exists(), "nothing broken is shipped"


def test_a_damaged_export_stops_bench(run, capsys):
    config, out = run
    flip_a_bit(out / "00-baseline" / "inference" / "model.pdiparams")
    report_before = (out / "report.json").read_bytes()
    code, err = cli(capsys, "bench", out, "--runs", "2", "--warmup", "0", "--rounds", "1")
    assert code == 2 and "00-baseline/inference/model.pdiparams does not match the checksum" in err
    assert (out / "report.json").read_bytes() == report_before


def test_the_fix_the_message_names_works(run, capsys):
    config, out = run
    truncate(out / "01-train" / "model.pdparams")
    code, err = cli(capsys, "run", config, "--out", out, "--resume", "--quiet")
    assert code == 2 and f"delete {out / '01-train'} and rerun the run with --resume" in err
    shutil.rmtree(out / "01-train")
    assert cli(capsys, "run", config, "--out", out, "--resume", "--quiet")[0] == 0
    record = json.loads((out / "01-train" / "stage.json").read_text())
    assert set(record["files"]) >= {"model.pdparams", "architecture.json", "inference/model.pdiparams"}
    assert slimkit.load_model(out / "01-train") is not None


# --- 7. damaged records are named, never a raw JSONDecodeError or EOFError ------------------------
@pytest.mark.parametrize("name, command", [
    ("01-train/stage.json", "resume"), ("01-train/architecture.json", "load"), ("report.json", "report"),
])
def test_a_garbled_record_is_named(run, capsys, name, command):
    config, out = run
    path = out / name
    path.write_text(path.read_text()[:40])
    if command == "load":
        with pytest.raises(CorruptFileError, match=f"{path}"):
            slimkit.load_model(out / "01-train")
        return
    argv = ["run", config, "--out", out, "--resume", "--quiet"] if command == "resume" else ["report", out]
    code, err = cli(capsys, *argv)
    assert code == 2 and f"{path} is damaged: not valid JSON" in err and "hint" in err
    assert "JSONDecodeError" not in err


def test_a_truncated_checkpoint_is_named(run):
    _, out = run
    weights = out / "01-train" / "model.pdparams"
    shutil.copy(weights, out / "mine.pdparams")
    truncate(out / "mine.pdparams")
    with pytest.raises(CorruptFileError, match=f"{out / 'mine.pdparams'} cannot be read as Paddle weights"):
        slimkit.build_model("small_cnn", checkpoint=str(out / "mine.pdparams"))


def test_a_garbled_run_record_is_cleared_by_overwrite_only(run, capsys):
    config, out = run
    (out / "pipeline.json").write_text('{"run": "abc", "data"')
    for flags in ([], ["--resume"]):
        code, err = cli(capsys, "run", config, "--out", out, "--quiet", *flags)
        assert code == 2 and f"{out / 'pipeline.json'} is damaged" in err and "--overwrite" in err
        assert "00-baseline" not in err
    assert cli(capsys, "run", config, "--out", out, "--quiet", "--overwrite")[0] == 0
    assert json.loads((out / "pipeline.json").read_text())["stages"][0]["name"] == "train"


def test_a_users_own_pipeline_json_is_never_replaced(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY)
    out = tmp_path / "project"
    out.mkdir()
    (out / "pipeline.json").write_text('{"steps": ["mine"]}')
    code, err = cli(capsys, "run", tmp_path / "tiny.yaml", "--out", out, "--quiet", "--overwrite")
    assert code == 2 and "pipeline.json" in err and "not slimkit's" in err
    assert (out / "pipeline.json").read_text() == '{"steps": ["mine"]}'


# --- 25a. files slimkit did not write are never replaced ---------------------------------------
@pytest.mark.parametrize("name", ["report.md", "report.json", "run.log", "training_curves.png"])
def test_a_users_file_named_like_a_run_file_is_kept(tmp_path, capsys, name):
    (tmp_path / "tiny.yaml").write_text(TINY)
    out = tmp_path / "project"
    out.mkdir()
    (out / name).write_bytes(b"my own notes")
    code, err = cli(capsys, "run", tmp_path / "tiny.yaml", "--out", out, "--quiet", "--overwrite")
    assert code == 2 and f"{out / name} was not written by slimkit" in err and "move or rename it" in err
    assert (out / name).read_bytes() == b"my own notes"
    assert sorted(p.name for p in out.iterdir()) == [name], "the refused run wrote nothing"


# --- 7. a full disk and a file that cannot be replaced name the file ---------------------------------
def test_a_full_disk_names_the_file_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY)
    import paddle

    real_save = paddle.save

    def disk_full(obj, path, *args, **kwargs):  # half written, then the disk is full (no file name, like write())
        real_save(obj, path, *args, **kwargs)
        truncate(type(tmp_path)(path))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("slimkit.models.checkpoint.paddle.save", disk_full)
    out = tmp_path / "out"
    code, err = cli(capsys, "run", tmp_path / "tiny.yaml", "--out", out, "--quiet")
    assert code == 2 and f"cannot write {out / '00-baseline' / 'model.pdparams'}: the disk is full" in err
    assert "free space" in err and "--resume" in err and "a file" not in err
    assert not list(out.rglob("*.tmp")), "the half-written temporary file is removed"


def test_a_report_that_cannot_be_replaced_names_it_not_its_temporary_file(run, capsys, monkeypatch):
    config, out = run
    real_replace = os.replace

    def read_only(src, dst):
        if str(dst).endswith("report.json"):
            raise PermissionError(errno.EACCES, "Permission denied", str(src), None, str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr("slimkit.core.files.os.replace", read_only)
    shutil.rmtree(out / "01-train")  # the resumed run reruns it and writes its report
    code, err = cli(capsys, "run", config, "--out", out, "--resume", "--quiet")
    assert code == 2 and f"cannot write {out / 'report.json'}: Permission denied" in err
    assert ".tmp" not in err and not list(out.rglob("*.tmp"))


# --- 8. a resumed run writes the bytes the uninterrupted run wrote ------------------------------------
def test_a_resumed_run_writes_the_same_files_as_the_uninterrupted_one(tmp_path, capsys):
    config = tmp_path / "two.yaml"
    config.write_text(TINY + "  - {type: finetune, name: again, lr: 0.01}\n")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli(capsys, "run", config, "--out", whole, "--quiet")[0] == 0
    assert cli(capsys, "run", config, "--out", cut, "--quiet")[0] == 0
    shutil.rmtree(cut / "02-again")  # interrupted before its stage finished
    slimkit.build_model("resnet20")  # the resuming process built other layers first (other unique names)
    assert cli(capsys, "run", config, "--out", cut, "--quiet", "--resume")[0] == 0

    def files(folder):
        return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
                if p.is_file() and p.name not in ("stage.json", ".slimkit-stage")}

    for stage in ("01-train", "02-again"):
        assert files(whole / stage) == files(cut / stage), stage
        recorded = [json.loads((run_dir / stage / "stage.json").read_text())["files"] for run_dir in (whole, cut)]
        assert recorded[0] == recorded[1]


def test_a_run_cut_during_its_final_re_timing_is_finished_by_resume(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY)
    out = tmp_path / "out"

    def cut(self, clock=None):
        raise KeyboardInterrupt  # as Ctrl-C (or a kill) after the last stage, before its end

    with monkeypatch.context() as patch:
        patch.setattr("slimkit.run.pipeline.Pipeline.retime", cut)
        assert cli(capsys, "run", tmp_path / "tiny.yaml", "--out", out, "--quiet")[0] == 130
    assert cli(capsys, "run", tmp_path / "tiny.yaml", "--out", out, "--quiet", "--resume")[0] == 0
    report = json.loads((out / "report.json").read_text())
    assert all("interleaved" in row["latency_method"] for row in report["stages"]), "the re-timing was done"
    assert report["complete"] is True
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "run.log"}
    assert cli(capsys, "run", tmp_path / "tiny.yaml", "--out", out, "--quiet", "--resume")[0] == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "run.log"} == before, \
        "a finished run is left as it is"
