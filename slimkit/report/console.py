"""A clean console for `slimkit run` and `check`: native Paddle output goes to the run's log, not the table.

Paddle's C++ core, oneDNN and paddle2onnx write straight to the process's file descriptors
1 and 2 ("New Executor is Running", "PIR not support input out tensor", pass statistics),
so redirecting `sys.stdout` cannot hold them back. `captured_console` points descriptors
1 and 2 at a file for the duration, while slimkit's own output (Python's `sys.stdout` and
`sys.stderr`: the table, progress bars, messages) still reaches the console and is copied
into the log as well. Python warnings of libraries go to the log only. `--debug` leaves
everything on the console.
"""

import contextlib
import io
import os
import sys
import tempfile
import time
import warnings


class _Tee(io.TextIOBase):
    """A text stream writing to the console stream and to the log; the console decides isatty()."""

    def __init__(self, console, log):
        self.console, self.log = console, log

    def write(self, text):
        self.console.write(text)
        if "\r" not in text:  # progress-bar redraws stay off the log
            self.log.write(text)
        return len(text)

    def flush(self):
        self.console.flush()
        self.log.flush()

    def isatty(self):
        return bool(getattr(self.console, "isatty", lambda: False)())

    def fileno(self):
        return self.console.fileno()

    @property
    def encoding(self):
        return getattr(self.console, "encoding", "utf-8")


def _own_console(stream, fd):
    """A stream that keeps reaching the console after `fd` is redirected (a dup of it, when `stream` writes to it)."""
    try:
        if stream.fileno() == fd:
            return io.TextIOWrapper(os.fdopen(os.dup(fd), "wb", buffering=0), encoding=stream.encoding or "utf-8",
                                    errors="replace", line_buffering=True, write_through=True)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return None


@contextlib.contextmanager
def fds_redirected(fileno):
    """Point file descriptors 1 and 2 (native writes included) at `fileno` for the duration.

    Yields False, and redirects nothing, where the descriptors cannot be duplicated.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.flush()
    try:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
    except OSError:
        saved = {}
    for fd in saved:
        os.dup2(fileno, fd)
    try:
        yield bool(saved)
    finally:
        flush_native()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


@contextlib.contextmanager
def captured_console(debug=False, title="slimkit"):
    """Hold native output (fds 1, 2) and library warnings in a log; yields `log()` -> everything logged so far.

    The log holds slimkit's console output too, so it is the whole story of a run.
    With `debug`, nothing is captured (the native lines show where they happen). Inside
    another `captured_console` (a Python run started by `slimkit run`) nothing more is
    done: the outer one holds the log, and `log()` here is empty.
    """
    if debug or _active:
        _active.append(debug)
        try:
            yield lambda: ""
        finally:
            _active.pop()
        return
    _active.append(debug)
    try:
        with _capturing(title) as log:
            yield log
    finally:
        _active.pop()


_active = []  # the captured_console calls the process is inside (the outermost one captures)


@contextlib.contextmanager
def _capturing(title):
    """The capture itself (see `captured_console`)."""
    handle, path = tempfile.mkstemp(prefix="slimkit-", suffix=".log")
    os.close(handle)
    # Append mode: the native writes (through fds 1 and 2) and Python's never overwrite each other.
    sink = open(path, "a", encoding="utf-8", errors="replace", buffering=1)
    kept = []
    sink.write(f"--- {title} ({time.strftime('%Y-%m-%d %H:%M:%S')})\n")
    sink.flush()
    streams = {1: sys.stdout, 2: sys.stderr}
    consoles = {fd: _own_console(stream, fd) for fd, stream in streams.items()}
    showwarning = warnings.showwarning

    def log():
        if kept:
            return kept[0]
        sink.flush()
        flush_native()
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    try:
        with fds_redirected(sink.fileno()):
            sys.stdout = _Tee(consoles[1] or streams[1], sink)
            sys.stderr = _Tee(consoles[2] or streams[2], sink)
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sink.write(
                warnings.formatwarning(message, category, filename, lineno, line))
            try:
                yield log
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                warnings.showwarning = showwarning
                sys.stdout, sys.stderr = streams[1], streams[2]
    finally:
        for console in consoles.values():
            if console is not None:
                console.close()
        kept.append(log())
        sink.close()
        os.unlink(path)


def flush_native():
    # C stdio buffers of the native libraries, so their lines land in the log now.
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
