"""Log bytes -> parser -> framer -> pcapng, shared by ``convert`` and the extcap capture."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from .. import __version__
from ..swtpmlog.parser import Defect, DefectKind, Event, Kind, LogParser, Record, RunStart
from .frames import Framer
from .writer import PcapngWriter

APPLICATION = f"swtpm-extcap {__version__}"
_IS_RECORD = Record.__instancecheck__
_KIND: Callable[[Record], Kind] = operator.itemgetter(0)
_DEFECTS: Callable[[Record], tuple[Defect, ...]] = operator.itemgetter(5)
#: defects a summary keeps to show (all are counted, by kind)
KEEP_DEFECTS = 100
#: events framed and written at once: the pcapng of a hostile megabyte (a run per
#: record: 7 frames each) stays a few megabytes in memory
WRITE_BATCH = 4096


@dataclass
class Summary:
    """What a conversion or capture saw; printed at its end.

    ``defects`` holds the first :data:`KEEP_DEFECTS` defects in log order;
    ``defect_count`` and ``defects_by_kind`` count all of them, so memory
    stays flat on a log that is nothing but damage.
    """

    records: Counter[Kind] = field(default_factory=Counter)
    runs: int = 0
    frames: int = 0
    lines: int = 0
    skipped_lines: int = 0
    defects: list[Defect] = field(default_factory=list)
    defect_count: int = 0
    defects_by_kind: Counter[str] = field(default_factory=Counter)

    @property
    def tpm_records(self) -> int:
        return self.records[Kind.TPM_COMMAND] + self.records[Kind.TPM_RESPONSE]

    @property
    def ctrl_records(self) -> int:
        return sum(n for kind, n in self.records.items() if kind.is_ctrl)

    def add_defects(self, defects: Iterable[Defect]) -> None:
        """Count defects (an ``omitted`` one counts those it stands for); keep the first few."""
        for d in defects:
            self.defect_count += d.count
            self.defects_by_kind[d.kind.value] += d.count
            if len(self.defects) < KEEP_DEFECTS:
                self.defects.append(d)

    def report(self, name: str, max_defects: int = 20) -> list[str]:
        """Human-readable lines: one summary line, then defects by kind and line."""
        commands, responses = self.records[Kind.TPM_COMMAND], self.records[Kind.TPM_RESPONSE]
        stray = self.records[Kind.STRAY]
        out = [
            f"{name}: {_count(self.tpm_records, 'TPM record')}"
            f" ({_count(commands, 'command')}, {_count(responses, 'response')})"
            f" in {_count(self.runs, 'run')}, {_count(self.ctrl_records, 'control message')},"
            + (f" {_count(stray, 'stray hex block')}," if stray else "")
            + f" {_count(self.frames, 'frame')}, {_count(self.defect_count, 'defect')}"
            f" ({_count(self.lines, 'line')} read, {self.skipped_lines} other skipped)"
        ]
        if self.defect_count:
            by_kind = sorted(self.defects_by_kind.items())
            out.append("  defects by kind: " + ", ".join(f"{k} {n}" for k, n in by_kind))
            shown = [d for d in self.defects[:max_defects] if d.kind is not DefectKind.OMITTED]
            out += [f"  {d}" for d in shown]
            if self.defect_count > len(shown):
                out.append(f"  ... {self.defect_count - len(shown)} more")
        return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class Pipeline:
    """Feeds log bytes through parser and framer into a pcapng writer."""

    def __init__(
        self,
        out: BinaryIO,
        *,
        name: str,
        description: str,
        start_us: int = 0,
        ctrl: bool = True,
        live: bool = False,
        comment: str = "",
        line_comments: bool = True,
        pcr_notes: bool = True,
        policy_notes: bool = True,
    ) -> None:
        self._parser: LogParser
        self._framer: Framer
        if pcr_notes:
            # the PCR and policy replays (notes.py) see every parser event, also those a
            # capture filter drops, and add `pcr: ...`, `policy: ...` lines to the comments
            from .notes import AnnotatingFramer, ReplayingParser

            self._parser = parser = ReplayingParser(policy=policy_notes)
            self._framer = AnnotatingFramer(
                parser, start_us=start_us, ctrl=ctrl, line_comments=line_comments
            )
        else:  # the plain parser and framer (what the notes cost: bench/bench_pcrs.py)
            self._parser = LogParser()
            self._framer = Framer(start_us=start_us, ctrl=ctrl, line_comments=line_comments)
        self._writer = PcapngWriter(
            out,
            name=name,
            description=description,
            application=APPLICATION,
            comment=comment,
            live=live,
        )
        self.summary = Summary()

    @property
    def lines(self) -> int:
        """Complete log lines parsed so far."""
        return self._parser.lines

    def parse(self, data: bytes) -> list[Event]:
        """Parse a chunk; the events are written by :meth:`write` (a caller may select
        among them first, as the capture does)."""
        return self._parser.feed(data)

    def parse_end(self) -> list[Event]:
        """End of input: the events of a held-back line or record."""
        events = self._parser.close()
        self.summary.lines = self._parser.lines  # also when the input held no event at all
        self.summary.skipped_lines = self._parser.skipped_lines
        return events

    def feed(self, data: bytes, now_us: int | None = None) -> int:
        """Parse a chunk and write its frames; returns the number of frames written."""
        return self.write(self._parser.feed(data), now_us)

    def close(self, now_us: int | None = None) -> Summary:
        """End of input: flush a held-back line or record, close the TCP conversations."""
        self.write(self.parse_end(), now_us)
        return self.close_conversations(now_us)

    def close_conversations(self, now_us: int | None = None) -> Summary:
        """Close the open TCP conversations (FIN exchange) and flush the output."""
        frames = self._framer.close(now_us, self._parser.lines)
        self._writer.write_many(frames)
        self.summary.frames += len(frames)
        self._writer.flush()
        return self.summary

    def notice(self, text: str, now_us: int) -> None:
        """A frame of its own that tells ``text`` (an SSH link down or back: notice.py)."""
        from .notice import notice_frame

        self._writer.write(now_us, notice_frame(text), text)
        self._writer.flush()
        self.summary.frames += 1

    def write(self, events: list[Event], now_us: int | None) -> int:
        """Count, frame and write parser events (a caller may filter them first)."""
        if not events:
            return 0
        summary = self.summary
        if all(map(_IS_RECORD, events)):  # the usual batch: records only, counted in C
            batch = cast("list[Record]", events)
            summary.records.update(map(_KIND, batch))
            if any(map(_DEFECTS, batch)):
                for record in batch:
                    if record.defects:
                        summary.add_defects(record.defects)
        else:
            records = summary.records
            for event in events:
                if type(event) is Record:
                    records[event.kind] += 1
                    if event.defects:
                        summary.add_defects(event.defects)
                elif type(event) is RunStart:
                    summary.runs += 1
                else:
                    summary.add_defects([event])  # type: ignore[list-item]
        frames = 0
        for at in range(0, len(events), WRITE_BATCH):  # the pcapng of a batch, a bounded piece at a time
            blocks, count = self._framer.encode_events(events[at : at + WRITE_BATCH], now_us)
            self._writer.write_blocks(blocks)
            frames += count
        summary.frames += frames
        summary.lines = self._parser.lines
        summary.skipped_lines = self._parser.skipped_lines
        return frames
