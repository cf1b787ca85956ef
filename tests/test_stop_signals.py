"""Stop signals are recorded, so one whose exception is swallowed still stops a run."""

from __future__ import annotations

import contextlib
import signal

import pytest

from gradprobe.bench.execute.stop_signals import Terminated, catch_stop_signals


def test_a_swallowed_signal_is_raised_again_by_check():
    with catch_stop_signals() as stop:
        stop.check()  # nothing arrived yet
        with contextlib.suppress(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            stop.check()


def test_sigterm_raises_terminated_and_handlers_are_restored():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with catch_stop_signals() as stop, pytest.raises(Terminated):
        signal.raise_signal(signal.SIGTERM)
    assert stop.signum == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in before} == before


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with catch_stop_signals() as stop:
            signal.raise_signal(signal.SIGINT)
            stop.check()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_signal_inside_a_kernel_loader_is_recorded_not_raised():
    """Bug (test_resume, exit -11): Ctrl-C landed in llvmlite's object-cache callback while
    a Numba kernel loaded; ctypes dropped the KeyboardInterrupt and LLVM segfaulted. Inside
    numba/llvmlite code the signal is only recorded; the runner's next check raises it."""
    loader = {"__name__": "llvmlite.binding.executionengine", "signal": signal}
    exec("def load():\n    signal.raise_signal(signal.SIGINT)\n    return 'loaded'", loader)
    with catch_stop_signals() as stop:
        assert loader["load"]() == "loaded"  # not interrupted halfway
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            stop.check()
        with pytest.raises(KeyboardInterrupt):  # anywhere else it is raised at once
            signal.raise_signal(signal.SIGINT)
