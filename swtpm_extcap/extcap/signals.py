"""Stop signals: SIGTERM and SIGINT (Wireshark's stop button) set one Event.

Installed first thing for a capture (before the heavy imports), so that a
stop in the first milliseconds ends the capture with exit 0 like any other.
Should the capture then still be stuck in a blocking write to the fifo (a
reader that keeps it open but no longer reads), a one-shot timer raises
:class:`Stopped` :data:`GRACE_S` after the signal, which interrupts the write.
(Windows: Wireshark ends an extcap with TerminateProcess; no handler runs.)
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

from ..errors import Stopped

__all__ = ["GRACE_S", "StopSignals", "Stopped"]

#: after a stop signal, the capture has this long to end by itself
GRACE_S = 0.3


class StopSignals:
    """The stop Event and the handlers that set it; :meth:`restore` undoes them."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._restore: Callable[[], None] = lambda: None

    def install(self) -> StopSignals:
        """Set the handlers (main thread only; elsewhere, e.g. in tests, do nothing)."""
        if threading.current_thread() is not threading.main_thread():
            return self
        stop = self.event

        def on_stop(signum: int, frame: object) -> None:
            if not stop.is_set():
                stop.set()
                if sys.platform != "win32":  # no setitimer there (mypy --platform win32)
                    signal.setitimer(signal.ITIMER_REAL, GRACE_S)

        def on_grace(signum: int, frame: object) -> None:
            raise Stopped

        saved = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        if hasattr(signal, "SIGALRM"):
            saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, on_grace)

        def restore() -> None:
            if sys.platform != "win32":
                signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, old in saved.items():
                signal.signal(sig, old)

        self._restore = restore
        return self

    def restore(self) -> None:
        """Disarm the grace timer and put the previous handlers back."""
        restore, self._restore = self._restore, lambda: None
        restore()
