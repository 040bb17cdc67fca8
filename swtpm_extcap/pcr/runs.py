"""The runs of a log (VM starts), each replayed: what ``pcrs`` reports and diffs.

Runs are named as the capture names them: ``run N`` (1-based; the capture's TCP
client port is 50000+N-1), and ``[id=<epoch>]`` with its UTC time where the log
has that prefix.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..swtpmlog.parser import Event, LogParser, Record, RunStart
from .replay import Replayer
from .types import Outcome, RunState


@dataclass
class RunInfo:
    """A run as the capture names it."""

    run: int
    line: int
    epoch: int | None
    prefix: str | None
    reason: str

    @property
    def name(self) -> str:
        if self.epoch is None:
            return f"run {self.run + 1} (from log line {self.line})"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.epoch))
        return f"run {self.run + 1} ([id={self.epoch}] {stamp}, from log line {self.line})"

    def to_json(self) -> dict[str, object]:
        return {
            "run": self.run + 1,
            "line": self.line,
            "epoch": self.epoch,
            "start": (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.epoch))
                if self.epoch is not None
                else None
            ),
            "prefix": self.prefix,
            "reason": self.reason,
        }


def replay_runs(
    chunks: Iterator[bytes],
) -> Iterator[tuple[RunInfo, list[Outcome], RunState | None, Replayer]]:
    """Replay a log: yields ``(run, outcomes, None, replayer)`` as outcomes come, and
    ``(run, [], final state, replayer)`` once when each run ends."""
    parser = LogParser()
    replayer = Replayer()
    info: RunInfo | None = None
    tail = False
    while True:
        chunk = next(chunks, None)
        if chunk is None:
            events: list[Event] = parser.close()
            tail = True
        else:
            events = parser.feed(chunk)
        start = 0
        for i, ev in enumerate(events):
            if type(ev) is RunStart:
                if i > start and info is not None:
                    yield info, replayer.feed(events[start:i]), None, replayer
                if info is not None and replayer.state is not None:
                    yield info, [], replayer.state, replayer
                info = RunInfo(ev.run, ev.line, ev.epoch, ev.prefix, ev.reason)
                start = i
        if start < len(events) and info is None:
            # no RunStart yet: defects before any record (a line of more than 1 MiB,
            # say) belong to no run; a record without one (not from LogParser) starts one
            first = next((ev for ev in events[start:] if type(ev) is Record), None)
            if first is not None:
                info = RunInfo(first.run, first.line, None, None, "")
        if start < len(events) and info is not None:
            yield info, replayer.feed(events[start:]), None, replayer
        if tail:
            if info is not None and replayer.state is not None:
                yield info, [], replayer.state, replayer
            return


def hex_or_unknown(value: bytes | None, why: str = "") -> str:
    if value is not None:
        return value.hex()
    if why == NOT_ALLOCATED:
        return why
    return f"unknown ({why})" if why else "unknown"


#: the ``why`` of a PCR its bank does not hold: the TPM has not allocated it there
NOT_ALLOCATED = "not allocated"


def final_values(state: RunState, replayer: Replayer) -> dict[int, list[tuple[bytes | None, int, str]]]:
    """Per shown bank: [(value, line of last change, why unknown)] for PCR 0..23;
    a PCR the TPM has not allocated in that bank is ``(None, 0, NOT_ALLOCATED)``.

    Shown: a bank the log says is allocated, else one the run used (extended,
    reset or read); a bank known to have no PCR allocated is not shown
    (:func:`unallocated_banks`)."""
    out = {}
    allocation = replayer.allocation
    for alg, slots in sorted(state.banks.items()):
        allocated = allocation.bank(alg)
        if allocated is False or (allocated is None and alg not in state.seen):
            continue
        off = allocation.off.get(alg, ())
        out[alg] = [
            (None, 0, NOT_ALLOCATED) if pcr in off else (s.value, s.line, s.why)
            for pcr, s in enumerate(slots)
        ]
    return out


def unallocated_banks(state: RunState, replayer: Replayer) -> list[int]:
    """The banks of the run the log says have no PCR allocated."""
    return [alg for alg in sorted(state.banks) if replayer.allocation.bank(alg) is False]
