"""The PCR history the policy explanations search: every value each PCR had, with the
log line and the change that gave it, kept from the PCR replay's outcomes.

Fed by :class:`~.policy.PolicyReplay` with the Replayer's outcomes (extends, resets,
unknowns, values learned or corrected by a PCR_Read) and a snapshot of the banks after
each Startup (whose initial values the Replayer does not list one by one). Memory is
bounded: each PCR of each bank keeps its last :data:`KEEP` changes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .types import Check, Outcome, RunState, Startup, Step

#: changes kept per PCR and bank (older ones are forgotten)
KEEP = 512
#: Startup snapshots kept
KEEP_STARTUPS = 256


@dataclass(frozen=True, slots=True)
class Change:
    """A PCR took ``value`` (None: unknown) at ``line`` (the answer's log line) of ``run``.

    ``what``: ``startup``, ``extend``, ``reset``, ``read`` (a PCR_Read told the replay),
    ``unknown``; ``number``, ``digest``, ``command`` and ``command_line`` describe an
    extend (its number in the run, the digest extended, the command and its line).
    """

    run: int
    line: int
    value: bytes | None
    what: str
    number: int = 0
    digest: bytes | None = None
    command: str = ""
    command_line: int = 0
    why: str = ""

    def describe(self) -> str:
        if self.what == "extend":
            digest = f", digest {self.digest.hex()}" if self.digest is not None else ""
            return f"extend #{self.number} at line {self.command_line} ({self.command}{digest})"
        if self.what == "startup":
            return f"Startup at line {self.command_line or self.line}"
        if self.what == "read":
            return f"the PCR_Read answered at line {self.line}"
        if self.what == "reset":
            return f"reset at line {self.command_line or self.line}"
        return f"line {self.line} ({self.why})"


Key = tuple[int, int]  # (bank, PCR)


def _change(o: Step | Check) -> Change:
    """The change an outcome of the replay made (a Check: a value the TPM read out)."""
    if type(o) is Step:
        return Change(o.run, o.answer or o.line, o.value, o.what, o.number, o.digest, o.command,
                      o.line, o.why)
    assert type(o) is Check
    return Change(o.run, o.answer, o.read, "read", command_line=o.line)


class PcrHistory:
    """Every value of every PCR the replay saw, by (bank, PCR), oldest first.

    The outcomes are kept as the replay gave them, and made :class:`Change` objects only
    when an explanation asks (seldom): the replay of every extend stays cheap."""

    def __init__(self) -> None:
        self._changes: dict[Key, deque[Step | Check]] = {}
        #: per Startup: (run, line, {bank: values})
        self._startups: deque[tuple[int, int, int, dict[int, tuple[bytes | None, ...]]]] = deque(
            maxlen=KEEP_STARTUPS)

    def add(self, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            if type(o) is Step or (type(o) is Check and o.status != "match"):
                self._add((o.alg, o.pcr), o)

    def startup(self, startup: Startup, state: RunState) -> None:
        """The banks right after a Startup (``state``: the Replayer's, at that moment)."""
        banks = {alg: tuple(slot.value for slot in slots) for alg, slots in state.banks.items()}
        self._startups.append((startup.run, startup.answer, startup.line, banks))

    def _add(self, key: Key, outcome: Step | Check) -> None:
        changes = self._changes.get(key)
        if changes is None:
            changes = self._changes[key] = deque(maxlen=KEEP)
        changes.append(outcome)

    def timeline(self, keys: list[Key], run: int, until: int) -> list[tuple[Change, ...]]:
        """The states of ``keys`` in ``run`` up to line ``until``, oldest first: each a
        tuple of the change that gave each PCR its value (as many as ``keys``)."""
        starts = [s for s in self._startups if s[0] == run and s[1] <= until]
        current: list[Change | None] = [None] * len(keys)
        begin = 0
        if starts:
            _, line, cmd_line, banks = starts[-1]
            begin = line
            for i, (alg, pcr) in enumerate(keys):
                values = banks.get(alg)
                value = values[pcr] if values is not None and pcr < len(values) else None
                current[i] = Change(run, line, value, "startup", command_line=cmd_line,
                                    why="" if value is not None else "not known at Startup")
        events = sorted(
            (c.line, i, c)
            for i, key in enumerate(keys)
            for c in map(_change, self._changes.get(key, ()))
            if c.run == run and begin < c.line <= until
        )
        out: list[tuple[Change, ...]] = []
        if all(c is not None for c in current):
            out.append(tuple(c for c in current if c is not None))
        for _, i, change in events:
            current[i] = change
            if all(c is not None for c in current):
                out.append(tuple(c for c in current if c is not None))
        return out

    def changes_between(self, run: int, since: int, until: int) -> list[tuple[int, int, Change]]:
        """The changes of ``run`` answered after line ``since`` and before ``until``:
        (bank, PCR, change), in log order."""
        found = [(c.line, alg, pcr, c) for (alg, pcr), changes in self._changes.items()
                 for c in map(_change, changes)
                 if c.run == run and since < c.line < until and c.what != "read"]
        return [(alg, pcr, c) for _, alg, pcr, c in sorted(found, key=lambda f: (f[0], f[1], f[2]))]

    def runs(self) -> list[int]:
        """The runs the history knows, newest first."""
        seen = {s[0] for s in self._startups} | {c.run for d in self._changes.values() for c in d}
        return sorted(seen, reverse=True)

    def states(self, keys: list[Key], run: int, until: int) -> Iterator[tuple[int, int, tuple[Change, ...]]]:
        """Every state of ``keys``: this run's up to ``until`` newest first, then older
        runs' newest first; yields (run, index in that run's timeline, state)."""
        for r in self.runs():
            if r > run:
                continue
            line = until if r == run else 1 << 62
            timeline = self.timeline(keys, r, line)
            for index in range(len(timeline) - 1, -1, -1):
                yield r, index, timeline[index]
