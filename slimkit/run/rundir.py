"""What slimkit owns in an output folder, and how it writes there without losing anything.

A run folder (`--out`) holds `pipeline.json` (which run lives here: its id and configuration),
the reports, a log, and one folder per stage. Every stage folder slimkit creates carries a
marker naming the run it belongs to, and only folders carrying the marker of the run that
owns `--out` are ever removed or replaced. Anything else in the folder belongs to the user
and is left alone; a user entry in the way of a stage folder stops the run before any work.

Files a crash could leave half-written (reports, stage records, checkpoints) are written to
a temporary name beside the target and renamed over it, so a reader sees the old file or the
new one, never a torn one.
"""

import json
import os
import shutil
import uuid
from pathlib import Path

from ..core.errors import CorruptFileError, OutputError, ResumeError
from ..core.files import atomic_write_text, changed_files, checksums, read_json
from ..report.curves import CURVES

RUN = "pipeline.json"
MARKER = ".slimkit-stage"
DONE = "stage.json"  # a finished stage's record, written last
BASELINE = "baseline"  # the first folder's stage name: the input model, measured
STAGE_FOLDERS = "[0-9][0-9]-*"  # the glob of stage folder names
OWN_FILES = (RUN, "report.json", "report.md", "run.log", CURVES)  # the run's own files beside its stages


def stage_folder_name(index, name):
    """The folder of the run's row `index` (0: the baseline) named `name`: `00-baseline`, `01-<stage>`, ..."""
    return f"{index:02d}-{name}"


BASELINE_DIR = stage_folder_name(0, BASELINE)


def folder_names(stage_names):
    """The run's folders of the stages named `stage_names`, the baseline first: `00-baseline`, `01-<stage>`, ..."""
    return [BASELINE_DIR, *(stage_folder_name(i, name) for i, name in enumerate(stage_names, 1))]


# --- ownership -----------------------------------------------------------------------------
def read_run(out_dir, strict=False):
    """The `pipeline.json` record of `out_dir` ({"run": id, **configuration}), or None when there is none.

    A file that is not a run record (damaged, or not slimkit's) is None, or with `strict`
    a CorruptFileError naming it.
    """
    path = Path(out_dir) / RUN
    if not path.is_file():
        return None
    fix = (f"rerun with --overwrite to start the run in {out_dir} over (its stage folders are replaced), "
           "or choose another --out folder")
    try:
        record = read_json(path, fix)
    except (OSError, CorruptFileError):
        if strict:
            raise
        return None
    if not (isinstance(record, dict) and isinstance(record.get("run"), str)):
        if strict:
            raise CorruptFileError(f"{path} is not a slimkit run record", fix)
        return None
    return record


def owner_of(folder):
    """The run id a stage folder is marked with, or None for a folder slimkit did not create."""
    marker = Path(folder) / MARKER
    if not Path(folder).is_dir() or not marker.is_file():
        return None
    return marker.read_text().strip() or None


def own_stage_folders(out_dir, run_id):
    """The stage folders in `out_dir` that carry the marker of run `run_id`."""
    out_dir = Path(out_dir)
    if run_id is None or not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if owner_of(p) == run_id)


def new_stage_folder(folder, run_id):
    """Create `folder` empty and marked as run `run_id`'s, replacing it only if that run owns it."""
    folder = Path(folder)
    if folder.exists() or folder.is_symlink():
        if owner_of(folder) != run_id:
            raise foreign_in_the_way(folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(run_id)
    return folder


def foreign_in_the_way(path):
    return OutputError(f"{path} is in the way of a stage folder and was not written by this run",
                       "move or rename it, or choose another --out folder; slimkit never deletes what it "
                       "did not write")


# --- taking a folder for a run -------------------------------------------------------------
def claim(out_dir, config, stage_folders, resume=False, overwrite=False):
    """Make `out_dir` this run's folder before any work; returns the run id its stage folders get.

    `config` describes the run (data, model, training, stages); `stage_folders` are the
    folder names it will create. Refuses (OutputError, nothing changed) a path that is a
    file, an unwritable folder, a folder holding a different run unless `resume` or
    `overwrite`, and user entries where a stage folder must go. `resume` needs the same
    run apart from its stages (a changed stage reruns from there).
    """
    out_dir = Path(out_dir)
    ensure_writable_folder(out_dir)
    config = json.loads(json.dumps(config))
    previous, changed, run_id = inspect(out_dir, config, stage_folders, resume, overwrite)
    if not resume:
        # A fresh start: the stage folders this run wrote earlier go (only those).
        for folder in own_stage_folders(out_dir, run_id):
            shutil.rmtree(folder)
    if previous is None or changed:
        atomic_write_text(out_dir / RUN, json.dumps({"run": run_id, **config}, indent=2))
    return run_id


def inspect(out_dir, config, stage_folders, resume=False, overwrite=False):
    """What `claim` would find, without writing: `(previous record, changed keys, run id)`; raises its errors."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} is a file, not a folder", "choose a folder for --out (it is created if missing)")
    config = json.loads(json.dumps(config))
    previous = _previous_run(out_dir, resume, overwrite)
    if previous is None:
        _refuse_foreign_files(out_dir)
    changed = _differences(previous, config)
    different = [k for k in changed if k != "stages"]
    if resume and previous is not None and different:
        raise ResumeError(f"{out_dir} holds a run with a different {', '.join(different)}",
                          "run without --resume and with --overwrite (starts over), or choose another --out folder")
    if previous is not None and changed and not resume and not overwrite:
        raise OutputError(f"{out_dir} holds another run (its {', '.join(changed)} differ)",
                          "add --resume to continue it, --overwrite to replace its stage folders (nothing "
                          "else in the folder is touched), or choose another --out folder")
    run_id = previous["run"] if previous is not None else uuid.uuid4().hex[:12]
    for name in stage_folders:
        path = out_dir / name
        if (path.exists() or path.is_symlink()) and owner_of(path) != run_id:
            raise foreign_in_the_way(path)
    return previous, changed, run_id


def _previous_run(out_dir, resume, overwrite):
    """The run record of `out_dir` (None: none); a damaged one is refused unless `overwrite` may replace it.

    With `overwrite`, a damaged `pipeline.json` is slimkit's when stage folders of one run
    vouch for it: that run's record then stands in (its id, nothing else), so its folders
    are replaced. A `pipeline.json` nothing of slimkit's vouches for is the user's.
    """
    try:
        return read_run(out_dir, strict=True)
    except CorruptFileError as err:
        owners = {owner_of(p) for p in Path(out_dir).iterdir()} - {None}
        if len(owners) != 1:
            raise OutputError(f"{err.message}, and no stage folder of a slimkit run is in {out_dir}: it is not "
                              "slimkit's", f"move or rename {Path(out_dir) / RUN}, or choose another --out folder; "
                                           "slimkit never replaces what it did not write") from None
        if resume or not overwrite:
            raise
        return {"run": owners.pop()}


def _refuse_foreign_files(out_dir):
    """OutputError when a folder holding no slimkit run has files under the names slimkit's run files take."""
    for name in OWN_FILES:
        path = Path(out_dir) / name
        if path.exists() or path.is_symlink():
            raise OutputError(f"{path} was not written by slimkit ({out_dir} holds no slimkit run)",
                              "move or rename it, or choose another --out folder; slimkit never replaces what "
                              "it did not write")


def writable_without_writing(out_dir):
    """OutputError unless `out_dir` (or the nearest folder above it that exists) can be written."""
    out_dir = Path(out_dir)
    existing = next((p for p in [out_dir, *out_dir.absolute().parents] if p.exists()), None)
    if existing is not None and existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {out_dir}: {existing} is not writable",
                          "choose a folder you can write to for --out, or fix its permissions")


def _differences(previous, config):
    """The top-level keys in which the recorded run differs from `config`."""
    if previous is None:
        return []
    saved = {k: v for k, v in previous.items() if k != "run"}
    return sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))


def ensure_writable_folder(out_dir):
    """Create `out_dir` if needed and prove it can be written; OutputError naming the path otherwise."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} is a file, not a folder", "choose a folder for --out (it is created if missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".slimkit-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise OutputError(f"cannot write to {out_dir}: {err.strerror or err}",
                          "choose a folder you can write to for --out, or fix its permissions") from None
    return out_dir


def missing_stages(out_dir, finished):
    """The stage names the run in `out_dir` declares but `finished` (names in its report) lacks, in order."""
    record = read_run(out_dir)
    if record is None:
        return []
    declared = [s.get("name") or s.get("type") for s in record.get("stages") or [] if isinstance(s, dict)]
    return [name for name in declared if name not in set(finished)]


def append_log(out_dir, text, run_id):
    """Add a run's console and native output to `run.log` if run `run_id` owns `out_dir`; False if not."""
    record = read_run(out_dir)
    if not text or run_id is None or record is None or record["run"] != run_id:
        return False  # a refused run never claimed the folder: nothing is written there
    try:
        with open(Path(out_dir) / "run.log", "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    except OSError:
        return False  # a read-only folder resumed: the run itself needed no write
    return True


# --- stage records: what a finished stage wrote, with a checksum of every file ------------
def stage_fix(folder):
    """How to replace a damaged stage folder: its stage (and the later ones) run again."""
    folder = Path(folder)
    return (f"delete {folder} and rerun the run with --resume ({folder.name} and the stages after it run again), "
            "or rerun it with --overwrite")


def write_stage_record(folder, config, report):
    """Write `stage.json` last: the stage's config, its report and the SHA-256 of every file in `folder`."""
    folder = Path(folder)
    files = checksums(folder, skip=(DONE, MARKER))
    atomic_write_text(folder / DONE, json.dumps({"config": config, "report": report, "files": files}, indent=2))


def read_stage_record(folder):
    """The `stage.json` record of a finished stage folder, or None when it has none; CorruptFileError if damaged."""
    path = Path(folder) / DONE
    if not path.is_file():
        return None
    record = read_json(path, stage_fix(folder))
    if not (isinstance(record, dict) and isinstance(record.get("report"), dict) and "config" in record):
        raise CorruptFileError(f"{path} is damaged: not a slimkit stage record", stage_fix(folder))
    return record


def verify_stage(folder, record=None, only=None):
    """CorruptFileError naming the first file of the stage that is missing or differs from its recorded checksum.

    `only`: the files or folders (`inference/`) to verify; default: all the record lists.
    A record written before checksums were kept has none to verify.
    """
    record = read_stage_record(folder) if record is None else record
    bad = changed_files(folder, (record or {}).get("files") or {}, only)
    if bad:
        path, how = bad[0]
        what = "is missing" if how == "missing" else \
            "does not match the checksum its stage recorded (damaged or changed)"
        more = f" (and {len(bad) - 1} more file(s))" if len(bad) > 1 else ""
        raise CorruptFileError(f"{path} {what}{more}", stage_fix(folder))
    return record


def finished_stages(run_dir):
    """The stage folders of `run_dir` that hold a `stage.json` (baseline first)."""
    return sorted(p for p in Path(run_dir).glob(STAGE_FOLDERS) if (p / DONE).is_file())


def verify_run(run_dir, only=None):
    """`verify_stage` for every finished stage folder of `run_dir`."""
    for folder in finished_stages(run_dir):
        verify_stage(folder, only=only)
