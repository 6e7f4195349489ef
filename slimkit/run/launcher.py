"""`slimkit run --nproc N`: the same run on N processes of this machine, through paddle.distributed.launch.

The launcher starts N copies of `python -m slimkit run ...` (without `--nproc`), each
with the environment paddle.distributed reads (its rank, the number of processes, the
endpoints). Rank 0 prints the table; its output is followed from its log as it grows. When
a rank fails, paddle's launcher stops the others; this then prints the failing rank's own
error (its `error:` and `hint:` lines) once, adds it to the run's `run.log`, and returns its
exit code, so a failure on any rank ends the command with one message.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FAILED = re.compile(r"Container rank (\d+) status failed .* code (-?\d+)", re.I)
SIGNALLED = "Terminating with signal"  # the launcher's line when a signal (Ctrl-C, kill) stops it
FATAL = ("C++ Traceback", "Error Message Summary", "FatalError:")  # paddle's report of a fatal signal


def command(nproc, argv, log_dir):
    """The launch command line: N copies of `python -P -m slimkit ARGV`, their logs in `log_dir`.

    `-P`: the working folder is not put first on the import path, so a `slimkit/` (or
    `paddle/`) folder there cannot stand in for the packages (`environment` sets the path).
    """
    python = [sys.executable, "-P"]
    return [*python, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
            "--log_dir", str(log_dir), *python, "-m", "slimkit", *argv]


def environment(nproc, env=None):
    """The ranks' environment: this slimkit first on the import path, unbuffered output, the CPU cores shared out.

    The ranks import the slimkit this process runs, then what PYTHONPATH names, then the
    working folder where this process had it on its path (`python -m slimkit`: a user's
    own modules there still import, after the packages). `env`: more entries (the run lock).
    """
    out = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    root = str(Path(__file__).resolve().parents[2])
    cwd = os.getcwd()
    had_cwd = any(os.path.abspath(p or os.curdir) == cwd for p in sys.path)
    parts = [root, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p], *([cwd] if had_cwd else [])]
    out["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    out.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return out


def run_launched(nproc, argv, out_dir=None, echo_all=False, env=None):
    """Run `slimkit ARGV` on `nproc` processes; the exit code (the failing rank's, when one fails).

    Rank 0's output is shown as it comes, up to its error (the cause is printed once, at
    the end); `echo_all` shows all of it (`--debug`). `env`: more environment entries of the ranks.
    """
    log_dir = Path(tempfile.mkdtemp(prefix="slimkit-launch-"))
    try:
        with open(log_dir / "launch.log", "w") as launch_log:
            proc = subprocess.Popen(command(nproc, argv, log_dir), stdout=launch_log, stderr=subprocess.STDOUT,
                                    env=environment(nproc, env))
            follower = _Follower(log_dir / "workerlog.0", echo_all)
            follower.start()
            try:
                code = proc.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the launcher and the ranks too: they stop
                proc.wait()
                code = 130
            follower.stop()
        if code == 130 or SIGNALLED in (log_dir / "launch.log").read_text(errors="replace"):
            print("\ninterrupted: finished stages are saved; rerun with --resume to continue", file=sys.stderr)
            return 130
        if code == 0:
            return 0
        return failure(log_dir, nproc, code, out_dir)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


class _Follower(threading.Thread):
    """Copies the lines of a growing log file to stdout until stopped (then the rest of it).

    Unless `echo_all`, it stops at the rank's error and at paddle's report of a fatal
    signal (a rank stopped by the launcher): the failure is reported once, by `failure`.
    """

    def __init__(self, path, echo_all=False):
        super().__init__(daemon=True)
        self.path, self.done = Path(path), threading.Event()
        self.echo_all, self.silent, self.in_flags = echo_all, False, False

    def echo(self, line):
        stripped = line.strip()
        if not self.echo_all:
            if line.startswith(("error: ", "interrupted: ")) or stripped.startswith(FATAL):
                self.silent = True
            if "Modified FLAGS detected" in stripped:  # paddle's note of the flags the launcher set
                self.in_flags = True
            elif self.in_flags and stripped.startswith("="):
                self.in_flags = False
                return
            if self.silent or self.in_flags or (stripped and set(stripped) == {"-"}):  # dashes: paddle's frame
                return
        sys.stdout.write(line)
        sys.stdout.flush()

    def run(self):
        while not self.path.is_file():
            if self.done.wait(0.1):
                break
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8", errors="replace") as f:
            while True:
                line = f.readline()
                if line:
                    self.echo(line)
                elif self.done.is_set():
                    return
                else:
                    time.sleep(0.1)

    def stop(self):
        self.done.set()
        self.join(timeout=10)


def failure(log_dir, nproc, code, out_dir=None):
    """Print the error of the rank that failed (once) and return its exit code."""
    log_dir = Path(log_dir)
    launch_log = (log_dir / "launch.log").read_text(errors="replace") if (log_dir / "launch.log").is_file() else ""
    found = FAILED.search(launch_log)
    failed, failed_code = (int(found.group(1)), int(found.group(2))) if found else (None, code)
    messages = {r: error_lines(log_dir / f"workerlog.{r}") for r in range(nproc)}
    rank = first_cause(messages, failed)
    if failed is not None and failed_code < 0 and not messages.get(failed):
        text = killed_text(failed, nproc, -failed_code)  # stopped from outside: the others only lost it
    elif rank is not None:
        text = "\n".join(messages[rank])
    else:
        tail = "\n".join(f"    {line}" for line in _tail(log_dir / f"workerlog.{failed or 0}", launch_log))
        text = (f"error: rank {failed if failed is not None else '?'} of {nproc} ended with exit code {failed_code} "
                f"and no message; its last lines:\n{tail}")
    print(text, file=sys.stderr)
    _log_to_run(out_dir, text)
    return failed_code if failed_code > 0 else 1


def killed_text(rank, nproc, signum):
    """The error of a rank a signal ended (kill, the out-of-memory killer): who, which signal, and the way on."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return (f"error: rank {rank} of {nproc} was stopped by {name} (signal {signum}) from outside slimkit, and the "
            f"other ranks with it\n  hint: finished stages are saved: rerun the same command with --resume "
            f"(a SIGKILL nobody sent is often the out-of-memory killer: see `dmesg`)")


def error_lines(path):
    """The last `error: ...` line of a rank's log and the `hint:` (or `  - ` problem) lines after it ([]: none)."""
    if not Path(path).is_file():
        return []
    lines = Path(path).read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    if not starts:
        return []
    out = [lines[starts[-1]]]
    for line in lines[starts[-1] + 1:]:  # its hint, or the list of several problems (ConfigErrors)
        if not line.startswith(("  hint: ", "  - ")) and not (out[-1].startswith("  hint: ")
                                                              and line.startswith("    ")):
            break
        out.append(line)
    return out


def first_cause(messages, failed):
    """The rank whose error is the cause: not a relay of rank 0's error nor a lost peer; the failed rank's first."""
    from ..core.parallel import PEER_LOST

    own = [r for r, lines in messages.items() if lines and "rank 0 failed: " not in lines[0]
           and PEER_LOST not in lines[0]]
    if failed in own:
        return failed
    if own:
        return own[0]
    return failed if messages.get(failed) else None


def _tail(path, fallback, count=15):
    text = Path(path).read_text(errors="replace") if Path(path).is_file() else fallback
    return text.splitlines()[-count:]


def _log_to_run(out_dir, text):
    """Add the failure to the run's `run.log` when the run claimed `out_dir` (rank 0 could not)."""
    if out_dir is None:
        return
    from .rundir import append_log, read_run

    record = read_run(out_dir)
    if record is not None:
        append_log(out_dir, text, record["run"])
