"""Keep solver banners off standard output, and HiGHS's shared thread pool consistent.

Solvers written in C/C++ print to file descriptor 1 directly, below Python's ``sys.stdout``:
HiGHS prints its "Running HiGHS ..." banner when the first ``Highs()`` object is created,
whatever ``output_flag`` says afterwards. A command whose standard output is machine-readable
(``--json``, a VNN-COMP result) therefore runs its work inside :func:`stdout_to_stderr`, and
every place that creates a HiGHS object uses :func:`new_highs`.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading

log = logging.getLogger(__name__)


def _flush_c_stdio() -> None:
    """Flush C's buffered ``stdout`` (and every other stream): text a library wrote with
    ``printf`` or ``std::cout`` must reach the descriptor it was written for."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - no libc symbol table (Windows)
        pass


@contextlib.contextmanager
def stdout_to_stderr():
    """While active, file descriptor 1 and ``sys.stdout`` both write to standard error.

    Nests safely; on exit C's buffers are flushed (to stderr) before descriptor 1 is given
    back, so nothing written during the block reaches standard output later.
    """
    try:
        out_fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
    except (OSError, ValueError):  # pragma: no cover - no real descriptor
        out_fd = 1
    sys.stdout.flush()
    _flush_c_stdio()
    saved = os.dup(out_fd)
    old = sys.stdout
    try:
        os.dup2(sys.stderr.fileno() if _has_fd(sys.stderr) else 2, out_fd)
        sys.stdout = sys.stderr
        yield
    finally:
        try:
            sys.stdout.flush()
        finally:
            _flush_c_stdio()
            os.dup2(saved, out_fd)
            os.close(saved)
            sys.stdout = old


def _has_fd(stream) -> bool:
    try:
        stream.fileno()
        return True
    except (OSError, ValueError, AttributeError):
        return False


def new_highs(verbose: bool = False):
    """A ``highspy.Highs`` object with logging off (``output_flag``) unless ``verbose``;
    its construction banner goes to standard error."""
    import highspy

    with stdout_to_stderr():
        h = highspy.Highs()
    h.setOptionValue("output_flag", bool(verbose))
    if verbose:
        h.setOptionValue("log_to_console", True)
    return h


class _HighsPool:
    """HiGHS runs all instances of a process on one global thread pool, sized at the first
    solve; an instance asking for another explicit thread count then fails ("Not Set").
    We resize the pool (resetGlobalScheduler) when no HiGHS solve of this process is running,
    and otherwise fall back to the current pool with a warning."""

    lock = threading.Lock()
    threads: int | None = None   # the explicit size the pool was last built with
    started = False
    active = 0

    @classmethod
    def enter(cls, h, want: int | None) -> None:
        with cls.lock:
            if want is not None and want != cls.threads:
                if cls.active == 0:
                    if cls.started:
                        type(h).resetGlobalScheduler(True)
                    cls.threads = want
                else:
                    log.warning("HiGHS threads=%s ignored: another HiGHS solve in this process uses the "
                                "shared thread pool", want)
                    want = None
            h.setOptionValue("threads", int(want) if want is not None else 0)
            cls.active += 1
            cls.started = True

    @classmethod
    def leave(cls) -> None:
        with cls.lock:
            cls.active -= 1


def run_highs(h, threads: int | None = None):
    """``h.run()`` on HiGHS's process-wide thread pool, resized to ``threads`` when no other
    solve is running (None: whatever pool there is). Every HiGHS run of mipcert goes
    through here: a run outside it could size the pool behind its back, and the next
    instance asking for an explicit size would then not run at all. Returns run()'s status."""
    _HighsPool.enter(h, threads)
    try:
        return h.run()
    finally:
        _HighsPool.leave()
