"""Ctrl-C that lands where Python cannot raise it, a garbage-collector callback (distributed's GC
diagnosis runs one in every process that hosts a scheduler), still interrupts the command."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import pytest

from kdeconv.cluster import ctrl_c_not_lost


def _sigint_inside_a_gc_callback(seconds: float = 3.0) -> bool:
    """Send this process SIGINT from inside a gc callback, then wait; True if KeyboardInterrupt
    came out of the wait."""
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100_000):  # the handler runs in here, inside the callback
                pass

    gc.callbacks.append(callback)
    try:
        gc.collect()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except KeyboardInterrupt:
        return True
    finally:
        gc.callbacks.remove(callback)
    return False


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_a_gc_callback_still_interrupts():
    signal.signal(signal.SIGINT, signal.default_int_handler)
    hook = sys.unraisablehook
    with ctrl_c_not_lost():
        assert _sigint_inside_a_gc_callback()
    assert sys.unraisablehook is hook


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_without_it_python_swallows_that_ctrl_c(monkeypatch):
    """The fault itself: Python reports the KeyboardInterrupt as "Exception ignored" and carries on."""
    ignored = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: ignored.append(info.exc_type))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    assert not _sigint_inside_a_gc_callback(seconds=0.5)
    assert ignored == [KeyboardInterrupt]


def test_ctrl_c_ignored_stays_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    hook = sys.unraisablehook
    try:
        with ctrl_c_not_lost():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and sys.unraisablehook is hook
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
