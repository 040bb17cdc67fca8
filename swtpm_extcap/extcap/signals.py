"""What stops a capture: SIGTERM and SIGINT (Wireshark's stop button), and Wireshark's death.

All of them set one Event, which the capture checks after every chunk and
while it waits (the follow wakes at least every 50 ms).

* Signals: installed first thing for a capture (before the heavy imports), so
  that a stop in the first milliseconds ends the capture with exit 0 like any
  other. Should the capture then still be stuck in a blocking write to the
  fifo (a reader that keeps it open but no longer reads), a one-shot timer
  raises :class:`Stopped` :data:`GRACE_S` after the stop, which interrupts
  the write. (Windows: Wireshark ends an extcap with TerminateProcess; no
  handler runs.)
* Wireshark's death (:meth:`StopSignals.watch`): a killed Wireshark sends no
  signal, and dumpcap, which reads the fifo, lives on as long as the fifo
  does; on a quiet log nothing would ever be written, so no write would fail.
  A watch thread looks every :data:`WATCH_S`: a parent process that is gone
  (we were re-parented: ``getppid()`` changed) or a fifo whose reader is gone
  stops the capture like a signal, within a second whatever the log does.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from ..errors import Stopped

__all__ = ["GRACE_S", "WATCH_S", "StopSignals", "Stopped"]

#: after a stop, the capture has this long to end by itself
GRACE_S = 0.3
#: how often the watch looks for Wireshark (its death ends a capture within ~0.3 s)
WATCH_S = 0.2


class StopSignals:
    """The stop Event and what sets it; :meth:`restore` undoes the handlers and the watch."""

    def __init__(self) -> None:
        self.event = threading.Event()
        #: the process that started us (Wireshark): when it dies, we are re-parented
        self.parent = os.getppid() if hasattr(os, "getppid") else 0
        self._restore: Callable[[], None] = lambda: None
        self._installed = False
        self._quit = threading.Event()

    def install(self) -> StopSignals:
        """Set the handlers (main thread only; elsewhere, e.g. in tests, do nothing)."""
        if threading.current_thread() is not threading.main_thread():
            return self

        def on_stop(signum: int, frame: object) -> None:
            self.stop()

        def on_grace(signum: int, frame: object) -> None:
            raise Stopped

        saved = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        if hasattr(signal, "SIGALRM"):
            saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, on_grace)
        self._installed = True

        def restore() -> None:
            self._installed = False
            if sys.platform != "win32":  # no setitimer there (mypy --platform win32)
                signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, old in saved.items():
                signal.signal(sig, old)

        self._restore = restore
        return self

    def stop(self) -> None:
        """Stop the capture: set the Event and, once, arm the grace timer."""
        if self.event.is_set():
            return
        self.event.set()
        if self._installed and sys.platform != "win32":  # no setitimer there
            signal.setitimer(signal.ITIMER_REAL, GRACE_S)

    def watch(self, reader_gone: Callable[[], bool], log: logging.Logger) -> None:
        """Stop when Wireshark is gone: our parent process, or the fifo's reader
        (``reader_gone``); a daemon thread, ended by :meth:`restore`."""
        thread = threading.Thread(
            target=self._watch, args=(reader_gone, log), name="wireshark-watch", daemon=True
        )
        thread.start()

    def _watch(self, reader_gone: Callable[[], bool], log: logging.Logger) -> None:
        while not self._quit.wait(WATCH_S):
            if self.event.is_set():
                return
            if self.parent > 1 and os.getppid() != self.parent:
                log.info("the parent process %d (Wireshark) is gone: stopping", self.parent)
            elif reader_gone():
                log.info("the fifo's reader is gone: stopping")
            else:
                continue
            self.stop()
            return

    def restore(self) -> None:
        """End the watch, disarm the grace timer and put the previous handlers back."""
        self._quit.set()
        restore, self._restore = self._restore, lambda: None
        restore()
