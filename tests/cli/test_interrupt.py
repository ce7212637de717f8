"""cli/interrupt.py: the SIGINT handler the REPL holds during an answer."""

from __future__ import annotations

import signal

import pytest

from locallama.cancel import CLIENT_GONE
from locallama.cli.interrupt import ctrl_c_stops


def test_the_first_ctrl_c_raises_and_sets_the_event_a_second_only_sets_it():
    before = signal.getsignal(signal.SIGINT)
    with ctrl_c_stops() as stop:
        assert CLIENT_GONE.get() is stop and not stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert stop.is_set()
        signal.raise_signal(signal.SIGINT)  # while the first one cancels: no second raise
    assert signal.getsignal(signal.SIGINT) is before
    assert CLIENT_GONE.get() is None


def test_ctrl_c_stops_even_where_sigint_was_ignored():
    """A process started with SIGINT ignored (a script's background job) gets no
    KeyboardInterrupt from Python; the answer must stop all the same."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt), ctrl_c_stops():
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # given back as it was
    finally:
        signal.signal(signal.SIGINT, previous)
