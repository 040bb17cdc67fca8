"""The capture engine: a :class:`~swtpm_extcap.sources.base.Source` in, pcapng frames out.

No signals, no argv, no fifo path: :func:`run_capture` gets a source, the
checked settings, a stop Event and a function that opens the output, and
knows the log through :class:`~swtpm_extcap.sources.base.Source` only.

* The *backlog* is what the log held when the capture started
  (:meth:`Source.backlog`). Its records get the log's clock
  (:mod:`swtpm_extcap.pcapng.clock`) and the pace; the source says where it ends
  (:data:`Notice.BACKLOG_DONE`, also before a truncation, rotation or
  re-creation). Records after it get the wall clock of the moment they were
  read. A replay is all backlog.
* "Last run only" drops the backlog's runs before its last one, found by a
  parse-only first pass (:func:`find_last_run`), so memory stays flat.
* The capture filter keeps the TPM commands named and their responses
  (:class:`Selection`, between parser and framer).
* Stop: the loop checks the Event after every chunk and while pacing; the
  source ends its follow within 50 ms of it.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, TypeVar

from .. import __version__
from ..errors import PROG, UserError, printable
from ..pcapng.clock import backlog_start_us, now_us
from ..pcapng.pipeline import Pipeline, Summary
from ..sources.base import Chunk, Gap, Notice, Source
from ..swtpmlog.parser import Event, Kind, LogParser, Record, RunStart
from .options import CaptureSettings

T = TypeVar("T")


def run_capture(
    source: Source,
    settings: CaptureSettings,
    stop: threading.Event,
    open_output: Callable[[], BinaryIO | None],
    *,
    name: str,
    description: str,
    log: logging.Logger,
) -> Summary | None:
    """Check the log, open the output, stream the log into it; None if stopped
    before the output opened. A failure of the source is one :class:`UserError`
    (its ``explain()``); a write error propagates as :class:`OSError`."""
    backlog = source.backlog()
    replay = settings.mode == "replay"
    if backlog.mtime is None and replay:
        raise UserError(
            f"{source.label} does not exist (yet): start the VM, or choose 'Follow' to wait"
            " for its log"
        )
    if backlog.mtime is None or settings.start == "new":
        backlog_bytes, start_us = 0, now_us()
    else:
        backlog_bytes, start_us = backlog.size, backlog_start_us(backlog.mtime, backlog.size)
    out = open_output()
    if out is None:  # stopped before the reader came
        return None
    pipe = Pipeline(
        out, name=name, description=description, start_us=start_us, ctrl=settings.ctrl,
        live=True, comment=printable(section_comment(source.label, settings)),
        line_comments=settings.line_comments,
    )
    first_run = 0
    if settings.runs == "last" and backlog_bytes:
        first_run = find_last_run(source, backlog_bytes, stop)
        log.info("last run only: the backlog's last run is run %d", first_run + 1)
    cap = Capture(pipe, settings, stop, first_run=first_run, log=log)
    if replay:
        chunks: Iterator[Chunk] = iter(source.read(stop))
    else:
        chunks = iter(source.follow(stop, backlog.size if settings.start == "new" else 0))
    try:
        cap.stream(_explained(chunks, source))
        cap.finish(at_end=not stop.is_set())
    except BrokenPipeError:
        log.info("the reader closed the fifo: stopping")
        return pipe.summary
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    for line in pipe.summary.report(name):
        log.info("%s", line)
    return pipe.summary


def _explained(chunks: Iterator[T], source: Source) -> Iterator[T]:
    """The source's chunks; its failure is one :class:`UserError` in its own terms."""
    try:
        yield from chunks
    except OSError as exc:
        raise UserError(source.explain(exc)) from None


def section_comment(label: str, settings: CaptureSettings) -> str:
    """The pcapng section comment: what was captured, and how."""
    parts = [
        f"{PROG} {__version__} capture of {label}",
        f"start={settings.start} runs={settings.runs} mode={settings.mode}"
        f" ctrl={'on' if settings.ctrl else 'off'} pace-ms={settings.pace_ms}"
        f" line-comments={'on' if settings.line_comments else 'off'}",
    ]
    if settings.filter_text:
        parts.append(f"capture filter: {settings.filter_text}")
    if settings.start == "new":
        parts.append("log line and run numbers count from where the capture began")
    return "\n".join(parts)


def find_last_run(source: Source, size: int, stop: threading.Event) -> int:
    """The number of the last run that starts in the first ``size`` bytes of the log.

    "Last run only" reads the backlog twice: this first pass only parses (no
    framing, nothing kept), so memory stays flat however long the run is.
    """
    parser = LogParser()
    last = 0
    for chunk in _explained(iter(source.read(stop, 0, size)), source):
        for ev in parser.feed(chunk):
            if type(ev) is RunStart:
                last = ev.run
    return last


class Capture:
    """One capture: chunks in, frames out through the Pipeline.

    The selection works on parser events, between parser and framer, so this
    uses ``Pipeline.parse`` and ``Pipeline.write`` (framer, writer, summary)
    instead of ``Pipeline.feed(bytes)``.
    """

    def __init__(
        self,
        pipe: Pipeline,
        settings: CaptureSettings,
        stop: threading.Event,
        *,
        first_run: int = 0,
        log: logging.Logger,
    ) -> None:
        self.pipe = pipe
        self.settings = settings
        self.stop = stop
        self.log = log
        self.select = Selection(first_run=first_run, codes=settings.codes)
        self.pace_s = settings.pace_ms / 1000.0
        self.in_backlog = True
        self.backlog_frames = 0

    def stream(self, chunks: Iterable[Chunk]) -> None:
        """Feed every chunk; returns at the end of the input or when ``stop`` is set."""
        feed = self.pipe.parse
        select = self.select
        for chunk in chunks:
            if isinstance(chunk, Gap):  # the source lost sight of the log: a frame says so
                self.log.info("%s", chunk.text)
                self.pipe.notice(chunk.text, now_us())
            elif isinstance(chunk, Notice):
                if chunk is not Notice.BACKLOG_DONE:  # a switch of file ends the backlog too
                    self.log.info("the log was %s", chunk.value)
                self.end_backlog()
            elif self.in_backlog:
                self._write(select.backlog(feed(chunk)), None)
            else:
                self._write(select.live(feed(chunk)), now_us())
            if self.stop.is_set():
                return

    def end_backlog(self) -> None:
        if not self.in_backlog:
            return
        self.in_backlog = False
        self.backlog_frames = self.pipe.summary.frames
        # live from here: what exists now (modules, caches, the replay's state) is
        # never walked again by a full garbage collection, a pause of milliseconds
        # in the lag of a new record
        gc.collect()
        gc.freeze()
        self.log.info(
            "backlog read: %d frames from %d lines%s",
            self.backlog_frames, self.pipe.lines,
            "" if self.settings.mode == "replay" else "; new records get the wall clock",
        )

    def _write(self, events: list[Event], now: int | None) -> None:
        """Frame and write ``events``; in the backlog, wait ``pace`` after each record."""
        if not events:
            return
        pipe = self.pipe
        if not (self.pace_s and self.in_backlog):
            pipe.write(events, now)
            return
        wait = self.stop.wait
        pace = self.pace_s
        for ev in events:
            if pipe.write([ev], now) and type(ev) is Record and wait(pace):
                return

    def finish(self, *, at_end: bool) -> None:
        """End the capture: at the end of a replay, flush what the parser holds back
        and close the TCP conversations; after a stop, only close them (a record
        swtpm is still writing is not cut off)."""
        pipe = self.pipe
        if self.in_backlog:
            if at_end:
                self.end_backlog()
            else:
                self.in_backlog = False
        now = None if self.settings.mode == "replay" else now_us()
        if at_end:
            pipe.write(self.select.live(pipe.parse_end()), now)
        pipe.close_conversations(now)


class Selection:
    """Which parser events reach the framer.

    * ``first_run``: backlog events of runs before this one are dropped
      ("last run only": :func:`find_last_run` finds it in a first pass, so
      nothing has to be held in memory). Events after the backlog all pass.
    * ``codes``: keep only TPM commands with these codes, and the response that
      follows each (TPM traffic is strictly command, response); drop
      control-channel messages.
    """

    def __init__(self, *, first_run: int = 0, codes: frozenset[int] | None = None) -> None:
        self.first_run = first_run
        self.codes = codes
        self._run = -1
        self._want_response = False

    def backlog(self, events: list[Event]) -> list[Event]:
        first = self.first_run
        if first <= 0 or self._run >= first:
            return self._filter(events)
        for i, ev in enumerate(events):
            if type(ev) is RunStart:
                self._run = ev.run
                if ev.run >= first:
                    return self._filter(events[i:])
        return []

    def live(self, events: list[Event]) -> list[Event]:
        return self._filter(events)

    def _filter(self, events: list[Event]) -> list[Event]:
        codes = self.codes
        if codes is None or not events:
            return events
        out: list[Event] = []
        for rec in events:
            if not isinstance(rec, Record):
                out.append(rec)
                continue
            if rec.kind is Kind.TPM_COMMAND:
                data = rec.data
                keep = len(data) >= 10 and int.from_bytes(data[6:10], "big") in codes
                self._want_response = keep
                if keep:
                    out.append(rec)
            elif rec.kind is Kind.TPM_RESPONSE:
                if self._want_response:
                    out.append(rec)
                self._want_response = False
        return out
