"""SIGTERM and SIGHUP while a command holds the embedded server: always an unwinding exit."""

from __future__ import annotations

import signal
import sys
import time
import weakref

import pytest

from aijobs.cli.app import exit_on_terminate


class _Held:
    pass


def _signalled_inside_a_callback() -> None:
    """Handle SIGTERM while Python runs a weakref callback (as imports do), then wait."""
    with exit_on_terminate():
        held = _Held()
        ref = weakref.ref(held, lambda _: signal.raise_signal(signal.SIGTERM))
        del held  # the callback runs here; the handler raises inside it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.01)
        del ref


def test_a_signal_handled_inside_a_callback_is_raised_again_where_it_unwinds() -> None:
    """Raised inside the callback, the exit has nothing to unwind and Python drops it: the
    signal must not be lost with it."""
    with pytest.raises(SystemExit) as exc:
        _signalled_inside_a_callback()
    assert exc.value.code == 128 + signal.SIGTERM


def test_the_handlers_and_hook_are_given_back() -> None:
    hook = sys.unraisablehook
    before = signal.getsignal(signal.SIGTERM)
    with exit_on_terminate():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
    assert sys.unraisablehook is hook
