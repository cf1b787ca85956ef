"""Stop a run cleanly on Ctrl-C (SIGINT) or SIGTERM, and never lose the signal.

Python raises a signal's exception in whatever code runs when it arrives. If that is a
finalizer (a ``__del__`` method, a weakref callback run by the garbage collector), the
exception is printed as "Exception ignored in ..." and dropped, and the run would go on to
finish with exit code 0 (issue 14, item 12). So the handlers installed here also *record*
the signal, and the runner calls :meth:`StopFlag.check` between groups of cells and before
it marks the run complete: a swallowed signal still stops the run at the next cell.

A signal that arrives while the main thread is inside Numba or llvmlite (loading or
compiling a kernel: the engine's kernels load on first use) is recorded but not raised
there: raised inside llvmlite's object-cache callback, ctypes drops the exception, LLVM is
handed a half-made buffer and the process dies of a segmentation fault (exit -11, seen in
``tests/test_resume.py``). The runner checks the flag after every chunk, so the run still
stops within one chunk.

SIGTERM (``kill``, a batch scheduler's time limit) raises :class:`Terminated`, a
``KeyboardInterrupt``, so it takes the Ctrl-C path: the manifest says ``interrupted``. A
signal that was ignored when gradprobe started (``SIG_IGN``, e.g. SIGINT in a background job
of a non-interactive shell) stays ignored, as POSIX programs are expected to do.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same cleanup runs; ``signum`` gives the exit code."""

    signum = signal.SIGTERM


def _exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


UNSAFE_TO_INTERRUPT = ("numba", "llvmlite")  # top-level packages (module docstring)


def inside_kernel_loader(frame) -> bool:
    """Whether ``frame`` or one of its callers runs code of :data:`UNSAFE_TO_INTERRUPT`."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).partition(".")[0] in UNSAFE_TO_INTERRUPT:
            return True
        frame = frame.f_back
    return False


@dataclass
class StopFlag:
    """The first stop signal received while :func:`catch_stop_signals` is active, if any."""

    signum: int | None = None

    def check(self) -> None:
        """Raise the signal's exception (again) if one arrived."""
        if self.signum is not None:
            raise _exception(self.signum)


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[StopFlag]:
    """Install recording handlers for SIGINT and SIGTERM (main thread only: Python allows
    handlers nowhere else); restore the previous ones on leaving."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame) -> None:
        if flag.signum is None:
            flag.signum = signum
        if not inside_kernel_loader(frame):
            raise _exception(signum)

    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
