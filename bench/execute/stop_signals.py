"""Stop a run cleanly on Ctrl-C (SIGINT) or SIGTERM, and never lose the signal.

Python raises a signal's exception in whatever code runs when it arrives. If that is a
finalizer (a ``__del__`` method, a weakref callback run by the garbage collector), the
exception is printed as "Exception ignored in ..." and dropped, and the run would go on to
finish with exit code 0 (issue 14, item 12). So the handlers installed here also *record*
the signal, and the runner calls :meth:`StopFlag.check` between groups of cells and before
it marks the run complete: a swallowed signal still stops the run at the next cell.

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
