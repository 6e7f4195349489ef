"""Files written so that a crash leaves the old content or the new one, never a torn file."""

import os
from pathlib import Path


def atomic_write_text(path, text):
    """Write `text` to `path` through a temporary file and a rename; unchanged content is not rewritten.

    Skipping identical content lets `--resume` of a finished run work in a read-only folder.
    """
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return path
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def atomic_save(save, path):
    """Call `save(tmp_path)` (e.g. `lambda p: paddle.save(state, p)`), then rename the result to `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save(str(tmp))
    os.replace(tmp, path)
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
