"""One run per output folder: an exclusive lock on `--out` held for the whole run.

The lock is the file `--out/.slimkit-lock`, locked with `flock`: the operating system
releases it when its process ends, however it ends, so a lock left by a killed run is
free and simply taken over (the file then names the new holder). The file says who
holds it (process id, host, command, start time), so a second run is refused naming that
process. It is removed when the run ends; a folder the lock created is removed too if the
run left nothing in it (a refused run leaves no trace).

`slimkit run --nproc N` takes the lock in the process that starts the ranks and tells them
so (`SLIMKIT_RUN_LOCK`): every rank of the run is inside the one lock. Where locks cannot be
taken (a read-only folder, which no run can write to; a platform without `flock`) the run
goes on without one.
"""

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..core.errors import OutputError

LOCK = ".slimkit-lock"
ENV = "SLIMKIT_RUN_LOCK"  # "<folder>:<pid>": the launching process holds the lock of <folder> for these ranks


def _flock(fd):
    """Take the exclusive lock of `fd` without waiting: True, False when another process holds it, None: no locks."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks
        return None
    return True


class RunLock:
    """`with RunLock(out_dir):` holds `out_dir`'s lock (OutputError naming the holder when another run has it)."""

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK
        self.fd = None
        self.created = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def acquire(self):
        if self._held_by_launcher() or (self.out_dir.exists() and not self.out_dir.is_dir()):
            return self  # the launcher holds it / not a folder: the run's own checks say so
        try:
            self.created = not self.out_dir.exists()
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            return self  # cannot be created: the run's own checks name the reason
        while self.fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                self._refuse_if_held()  # a read-only folder: nothing can be written, but a holder is named
                return self
            taken = _flock(fd)
            if taken is False:
                os.close(fd)
                self._refuse(self.holder_text())
            if not self._still_there(fd):  # its holder removed it as we opened it: open the new one
                os.close(fd)
                continue
            self.fd = fd
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps(_me()).encode())
        return self

    def release(self):
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None
        if self.created:
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()  # only if the run left it empty
            self.created = False

    def holder(self):
        """What the lock file says of its holder ({} when it says nothing readable)."""
        try:
            found = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def holder_text(self):
        info = self.holder()
        if not info:
            return "another process"
        return (f"process {info.get('pid', '?')} on {info.get('host', '?')} ({info.get('command', 'slimkit')}, "
                f"since {info.get('started', '?')})")

    def check_free(self):
        """OutputError when another process holds the lock now (nothing is written: `slimkit check`)."""
        if self.fd is not None or self._held_by_launcher() or not self.path.is_file():
            return
        if self.holder().get("pid") == os.getpid():
            return
        self._refuse_if_held()

    def _refuse_if_held(self):
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            free = _flock(fd) is not False
        finally:
            os.close(fd)  # closing drops a lock taken just to look
        if not free:
            self._refuse(self.holder_text())

    def _refuse(self, holder):
        self.release()
        raise OutputError(f"{self.out_dir} is in use by another slimkit run: {holder}",
                          "wait for that run to end (or stop it), or choose another --out folder; two runs "
                          "in one folder would mix their files")

    def _still_there(self, fd):
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def _held_by_launcher(self):
        """True in a rank started by `slimkit run --nproc` whose launching process holds this folder's lock."""
        folder, _, pid = os.environ.get(ENV, "").rpartition(":")
        if not folder or Path(folder) != self.out_dir.absolute():
            return False
        return str(self.holder().get("pid")) == pid and _pid_alive(int(pid))

    def environment(self):
        """The environment entry that tells the ranks this process holds the lock."""
        return {ENV: f"{self.out_dir.absolute()}:{os.getpid()}"}


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _me():
    command = " ".join(["slimkit", *sys.argv[1:]]) if sys.argv and "slimkit" in sys.argv[0] else " ".join(sys.argv)
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command[:200],
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
