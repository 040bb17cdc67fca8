"""PCR replay in the capture: ``pcr: ...`` lines added to the pcapng comments of frames.

The pipeline builds its parser and framer from here: :class:`ReplayingParser`
is the log parser that also hands every event it returns to a
:class:`~swtpm_extcap.pcr.replay.Replayer` (so the replay sees every record, also
those a capture filter or ``runs=last`` leaves out), and
:class:`AnnotatingFramer` is the framer that appends the replay's lines to
the comment of the frame they are about. Both stay pure.

Comment lines (one per line of the frame comment; hex is lowercase, full
length; ``<n>`` counts the extends of the run from 1; a command that extends
two banks is one extend and writes one line per bank). A change is noted on
the frame of the TPM's *response*: the change happened when it answered
success::

    pcr: extend #<n> PCR <i> <bank> = <hex>
    pcr: extend #<n> PCR <i> <bank> = unknown (<why>)
    pcr: reset PCR <i> <bank> = <hex>
    pcr: unknown PCR <i> <bank> (<why>)
    pcr: startup clear
    pcr: startup state (PCRs 0-15 restored from saved state: unknown)
    pcr: read matches replay (<k> values)
    pcr: read MISMATCH PCR <i> <bank> (replay <hex>, line <N>)
    pcr: read PCR <i> <bank> not known to the replay (<why>); now taken from this read

``<bank>`` is ``sha1``, ``sha256``, ``sha384``, ``sha512``, ``sm3_256``,
``sha3_256`` ... ; ``line <N>`` is the log line of the command that last
changed that PCR in the replay (an extend, a reset, or the Startup). A
PCR_Read response gets either the ``matches`` line (every value it returned
is the replayed one) or one line per value that did not match or was not
known. Display filters: ``frame.comment contains "PCR 7"``,
``frame.comment contains "pcr: extend"``, ``frame.comment contains "MISMATCH"``.
The lines are written only on a frame of the record they are about; a
``pcr: unknown`` line about a command whose response never came sits on that
command's frame when it is written in the same batch, else it is only in the
``pcrs`` command's output.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..pcr.findings import Finding
from ..pcr.policy import PolicyReplay
from ..pcr.replay import Replayer
from ..pcr.types import Check, Outcome, Read, Startup, Step
from ..swtpmlog.parser import Event, LogParser, Record
from .frames import Frame, Framer, annotate


def note_lines(outcomes: Iterable[Outcome]) -> dict[int, list[str]]:
    """The comment lines of ``outcomes``, by the log line of the frame they belong on."""
    notes: dict[int, list[str]] = {}
    for o in outcomes:
        t = type(o)
        if t is Read:
            assert type(o) is Read
            if o.matched == o.values:
                text = f"pcr: read matches replay ({o.values} value{'s' * (o.values != 1)})"
                notes.setdefault(o.answer, []).append(text)
            continue
        if t is Check:
            assert type(o) is Check
            if o.status == "match":
                continue
            where = o.answer
            if o.status == "mismatch":
                assert o.replay is not None
                text = f"pcr: read MISMATCH PCR {o.pcr} {o.bank} (replay {o.replay.hex()}, line {o.since})"
            else:
                text = (
                    f"pcr: read PCR {o.pcr} {o.bank} not known to the replay ({o.why});"
                    " now taken from this read"
                )
        elif t is Step:
            assert type(o) is Step
            where = o.answer or o.line
            if o.what == "extend":
                value = o.value.hex() if o.value is not None else f"unknown ({o.why})"
                text = f"pcr: extend #{o.number} PCR {o.pcr} {o.bank} = {value}"
            elif o.what == "reset":
                text = f"pcr: reset PCR {o.pcr} {o.bank} = {o.value.hex() if o.value else 'unknown'}"
            else:
                text = f"pcr: unknown PCR {o.pcr} {o.bank} ({o.why})"
        else:
            assert type(o) is Startup
            where = o.answer
            text = (
                "pcr: startup clear"
                if o.kind == "clear"
                else "pcr: startup state (PCRs 0-15 restored from saved state: unknown)"
            )
        notes.setdefault(where, []).append(text)
    return notes


class ReplayingParser(LogParser):
    """The log parser; every batch of events it returns is also replayed.

    ``notes`` holds the comment lines of the last batch, by log line, until
    the framer writes those frames (callers frame a batch before they feed the
    next one, so older notes are dropped: memory stays flat). With ``policy``
    the policy replay (:mod:`.policynotes`) drives the PCR replay and adds its
    ``policy:`` lines.
    """

    def __init__(self, *, policy: bool = True) -> None:
        super().__init__()
        self.policy = PolicyReplay() if policy else None
        self.replayer = self.policy.replayer if self.policy is not None else Replayer()
        self.notes: dict[int, list[str]] = {}

    def feed(self, data: bytes) -> list[Event]:
        return self._replay(super().feed(data))

    def feed_lines(self, lines: Iterable[str]) -> list[Event]:
        return self._replay(super().feed_lines(lines))

    def close(self) -> list[Event]:
        return self._replay(super().close())

    def _replay(self, events: list[Event]) -> list[Event]:
        if not events:
            self.notes = {}
            return events
        findings: list[Finding] = []
        if self.policy is None:
            outcomes = self.replayer.feed(events)
        else:
            outcomes, findings = self.policy.feed(events)
        self.notes = note_lines(outcomes) if outcomes else {}
        if findings:
            from .policynotes import add_policy_lines

            add_policy_lines(self.notes, findings)
        return events


class AnnotatingFramer(Framer):
    """The framer; appends the parser's ``pcr:`` lines to the comments of their frames."""

    def __init__(
        self, parser: ReplayingParser, *, start_us: int = 0, ctrl: bool = True,
        line_comments: bool = True,
    ) -> None:
        super().__init__(start_us=start_us, ctrl=ctrl, line_comments=line_comments)
        self._parser = parser

    def frame_events(self, events: list[Event], now_us: int | None = None) -> list[Frame]:
        frames = super().frame_events(events, now_us)
        notes = self._parser.notes
        if notes:
            annotate(frames, events, notes, self.ctrl)
        return frames

    def encode_events(
        self, events: list[Event], now_us: int | None = None, notes: dict[int, list[str]] | None = None
    ) -> tuple[bytes, int]:
        return super().encode_events(events, now_us, self._parser.notes if notes is None else notes)
