"""Files slimkit writes and reads back: atomic writes, checksums, and records that name the damaged file.

A crash leaves the old content or the new one, never a torn file (write to a temporary
name beside the target, then rename); a failed write removes its temporary file and names
the target. `checksums(folder)` is what a stage record keeps of the files slimkit wrote,
`changed_files` what differs from it later (a truncated or bit-flipped checkpoint), and
`read_json` reads a record so that a damaged one is an error naming the file.
"""

import contextlib
import errno
import hashlib
import json
import os
from pathlib import Path

from .errors import CorruptFileError, OutputError

CHUNK = 1 << 20


# --- writing ---------------------------------------------------------------------------------
def atomic_write_text(path, text):
    """Write `text` to `path` through a temporary file and a rename; unchanged content is not rewritten.

    Skipping identical content lets `--resume` of a finished run work in a read-only folder.
    """
    path = Path(path)
    if path.is_file() and _same_text(path, text):
        return path
    return atomic_save(lambda tmp: Path(tmp).write_text(text), path)


def atomic_save(save, path):
    """Call `save(tmp_path)` (e.g. `lambda p: paddle.save(state, p)`), then rename the result to `path`.

    On any failure the temporary file is removed and the error names `path` (OutputError
    for a full disk or a file or folder that cannot be written).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save(str(tmp))
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        with contextlib.suppress(OSError):  # nothing of a failed write stays behind
            tmp.unlink(missing_ok=True)
    return path


def cache_dir(name):
    """slimkit's cache folder `name` (under $SLIMKIT_CACHE, default ~/.cache/slimkit), created if needed.

    Where the home folder is not writable, a folder under the system's temporary directory serves.
    """
    import tempfile

    root = Path(os.environ.get("SLIMKIT_CACHE") or Path.home() / ".cache" / "slimkit").expanduser()
    folder = root / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError:
        folder = Path(tempfile.gettempdir()) / f"slimkit-cache-{os.getuid()}" / name
        folder.mkdir(parents=True, exist_ok=True)
    return folder
def write_error(path, err):
    """The OutputError of an OSError met writing `path`: the disk is full, or the path cannot be written."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"cannot write {path}: the disk is full ({err.strerror})",
                           f"free space on the disk holding {Path(path).parent}, or choose another --out folder; "
                           "then rerun with --resume (finished stages are kept)")
    return OutputError(f"cannot write {path}: {err.strerror or err}",
                       "check that the folder is writable and that the file is not read-only or a folder, or "
                       "choose another --out folder")


def _same_text(path, text):
    try:
        return path.read_text() == text
    except (OSError, UnicodeDecodeError):
        return False


# --- checksums -------------------------------------------------------------------------------
def sha256_file(path):
    """The SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksums(folder, skip=()):
    """`{relative path: sha256}` of every file under `folder` (POSIX paths, sorted), but the names in `skip`."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in skip)
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}


def changed_files(folder, recorded, only=None):
    """`[(path, "missing" | "changed")]` of the files `recorded` (from `checksums`) that differ in `folder` now.

    `only`: the relative paths or folder prefixes (`inference/`) to look at; default: all.
    """
    folder = Path(folder)
    out = []
    for name, digest in sorted(recorded.items()):
        if only is not None and not any(name == o or name.startswith(o.rstrip("/") + "/") for o in only):
            continue
        path = folder / name
        if not path.is_file():
            out.append((path, "missing"))
        elif sha256_file(path) != digest:
            out.append((path, "changed"))
    return out


# --- reading ---------------------------------------------------------------------------------
def read_json(path, fix):
    """The JSON value of `path`; CorruptFileError naming the file (and `fix`) when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"{path} is damaged: not valid JSON ({err.msg}, line {err.lineno})", fix) from None
    except UnicodeDecodeError:
        raise CorruptFileError(f"{path} is damaged: not a text file", fix) from None
