"""``swtpm-extcap pcrs --diff A B``: two runs (VM boots) compared PCR by PCR, naming
for each PCR that differs the first extend where the two boots part."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from ..errors import UsageError, UserError
from .runs import NOT_ALLOCATED, RunInfo, final_values, replay_runs, unallocated_banks
from .types import PCR_COUNT, Outcome, Startup, Step, bank_name


@dataclass(frozen=True)
class Change:
    """One change of one PCR in one run, all banks together (one command)."""

    what: str  # startup-clear, startup-state, extend, reset, unknown
    line: int
    number: int
    command: str
    digests: tuple[tuple[str, str], ...]  # (bank, digest or value hex), sorted

    def key(self, banks: Collection[str]) -> tuple[str, tuple[tuple[str, str], ...]]:
        """What the change did to ``banks`` (its digests in the others do not count)."""
        return (self.what, tuple(d for d in self.digests if d[0] in banks))

    def describe(self, banks: Collection[str]) -> str:
        if self.what == "extend":
            parts = ", ".join(f"{bank} {digest}" for bank, digest in self.digests if bank in banks)
            return f"extend #{self.number} at line {self.line} ({self.command}): {parts or 'no digest for ' + '/'.join(banks)}"
        if self.what.startswith("startup"):
            return f"Startup({self.what[8:].upper()}) at line {self.line}"
        if self.what == "reset":
            return f"reset at line {self.line}"
        return f"unknown from line {self.line}"


@dataclass
class RunHistory:
    info: RunInfo
    changes: list[list[Change]] = field(default_factory=lambda: [[] for _ in range(PCR_COUNT)])
    #: per shown bank, the final value of each PCR: hex, None (unknown) or NOT_ALLOCATED
    final: dict[str, list[str | None]] = field(default_factory=dict)
    #: banks the log says have no PCR allocated
    unallocated: list[str] = field(default_factory=list)

    def value(self, bank: str, pcr: int) -> str | None:
        values = self.final.get(bank)
        return values[pcr] if values else None

    def add(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            if type(o) is Startup:
                for pcr in range(PCR_COUNT):
                    self.changes[pcr].append(Change(f"startup-{o.kind}", o.line, 0, "Startup", ()))
            elif type(o) is Step:
                changes = self.changes[o.pcr]
                shown = o.digest if o.what == "extend" else o.value
                entry = (o.bank, shown.hex() if shown is not None else o.why)
                last = changes[-1] if changes else None
                if last is not None and last.line == o.line and last.what == o.what:
                    changes[-1] = Change(o.what, o.line, o.number, o.command,
                                         tuple(sorted((*last.digests, entry))))
                else:
                    changes.append(Change(o.what, o.line, o.number, o.command, (entry,)))


def _pick(ref: str, runs: list[RunInfo]) -> RunInfo | None:
    n = int(ref)
    for info in runs:
        if info.epoch == n or info.run + 1 == n:
            return info
    return None


#: a run reference: a run number or an [id=] epoch, ASCII digits (an epoch has at most 12)
_RUN_REF = re.compile(r"[0-9]{1,12}")


def run_ref(text: str) -> str:
    if _RUN_REF.fullmatch(text) is None or int(text) == 0:
        shown = text if len(text) <= 20 else text[:17] + "..."
        raise UsageError(
            f"--diff takes two runs, by number (1, 2, ...) or [id=] epoch; {shown!r} is neither"
        )
    return text


def write_diff(chunks: Iterator[bytes], out: TextIO, refs: tuple[str, str], log: str, as_json: bool) -> None:
    runs: list[RunInfo] = []
    histories: dict[int, RunHistory] = {}
    wanted = {int(r) for r in refs}
    for info, outcomes, final, replayer in replay_runs(chunks):
        if not runs or runs[-1].run != info.run:
            runs.append(info)
        if info.run + 1 not in wanted and info.epoch not in wanted:
            continue
        history = histories.setdefault(info.run, RunHistory(info))
        if final is None:
            history.add(outcomes)
        else:
            history.final = {
                bank_name(alg): [
                    NOT_ALLOCATED if why == NOT_ALLOCATED else v.hex() if v is not None else None
                    for v, _, why in slots
                ]
                for alg, slots in final_values(final, replayer).items()
            }
            history.unallocated = [bank_name(alg) for alg in unallocated_banks(final, replayer)]
    picked = []
    for ref in refs:
        chosen = _pick(ref, runs)
        if chosen is None:
            names = "; ".join(r.name for r in runs) or "none"
            raise UserError(f"{log} has no run {ref} (its runs: {names})")
        picked.append(histories[chosen.run])
    a, b = picked
    common = [bank for bank in a.final if bank in b.final]
    found = [d for pcr in range(PCR_COUNT) if (d := _diff_pcr(pcr, a, b, common)) is not None]
    unknown = _not_compared(a, b, common)
    only = {"a": [bank for bank in a.final if bank not in b.final],
            "b": [bank for bank in b.final if bank not in a.final]}
    if as_json:
        doc = {"log": log, "a": a.info.to_json(), "b": b.info.to_json(), "banks": common,
               "only_in_a": only["a"], "only_in_b": only["b"],
               "differences": [dataclasses.asdict(d) for d in found],
               "not_compared": [{"pcr": pcr, "bank": bank, "unknown_in": where}
                                for pcr, bank, where in unknown]}
        json.dump(doc, out, indent=1)
        out.write("\n")
        return
    out.write(f"A = {a.info.name}\nB = {b.info.name}\n")
    out.write(f"banks compared: {', '.join(common) or 'none'}\n")
    for side, other in (("a", "B"), ("b", "A")):
        for bank in only[side]:
            why = "not allocated" if bank in (b if side == "a" else a).unallocated else "not replayed"
            out.write(f"  {bank} only in {side.upper()} ({other}: {why}): not compared\n")
    if not found:
        out.write("no PCR differs\n")
    for d in found:
        out.write(f"PCR {d.pcr} differs ({', '.join(d.banks)}): {d.summary}\n")
        out.write(f"  A: {d.a or 'nothing more'}\n  B: {d.b or 'nothing more'}\n")
        for bank, (va, vb) in d.final.items():
            out.write(f"  final {bank}: A {va or 'unknown'}, B {vb or 'unknown'}\n")
    if unknown:
        groups: dict[tuple[str, str], list[int]] = {}
        for pcr, bank, where in unknown:
            groups.setdefault((bank, where), []).append(pcr)
        parts = [f"{bank} PCR {_ranges(pcrs)} (unknown in {where})" for (bank, where), pcrs in groups.items()]
        out.write(f"not compared, a value the replay does not know: {'; '.join(parts)}\n")


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2, 5``."""
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


@dataclass(frozen=True)
class PcrDiff:
    """Where one PCR parts between two runs: the first change that differs."""

    pcr: int
    #: the banks (of those both runs hold) whose final values differ
    banks: list[str]
    summary: str
    a: str | None = None
    b: str | None = None
    a_line: int | None = None
    b_line: int | None = None
    #: the final values of the differing banks: {bank: [A, B]} (None: unknown)
    final: dict[str, list[str | None]] = dataclasses.field(default_factory=dict)


def _not_compared(a: RunHistory, b: RunHistory, banks: list[str]) -> list[tuple[int, str, str]]:
    """(PCR, bank, "A"/"B"/"A and B") where a run's final value is unknown."""
    out = []
    for bank in banks:
        for pcr in range(PCR_COUNT):
            where = [side for side, h in (("A", a), ("B", b)) if h.value(bank, pcr) is None]
            if where:
                out.append((pcr, bank, " and ".join(where)))
    return out


def _diff_pcr(pcr: int, a: RunHistory, b: RunHistory, banks: list[str]) -> PcrDiff | None:
    """How PCR ``pcr`` differs between two runs, bank by bank (only banks both runs
    hold, only values both know); None when it does not."""
    differing = [
        bank for bank in banks
        if (va := a.value(bank, pcr)) is not None and (vb := b.value(bank, pcr)) is not None and va != vb
    ]
    if not differing:
        return None
    final = {bank: [a.value(bank, pcr), b.value(bank, pcr)] for bank in differing}
    ca, cb = a.changes[pcr], b.changes[pcr]
    for k in range(max(len(ca), len(cb))):
        xa = ca[k] if k < len(ca) else None
        xb = cb[k] if k < len(cb) else None
        if xa is None or xb is None or xa.key(differing) != xb.key(differing):
            same = sum(1 for c in ca[:k] if c.what == "extend")
            if (xa is None or xa.what == "extend") and (xb is None or xb.what == "extend"):
                where = f"at its extend {same + 1} (the {same} before it are equal)"
            else:
                where = f"at its change {k + 1}, after {same} equal extend{'s' * (same != 1)}"
            return PcrDiff(
                pcr,
                differing,
                f"the boots part {where}",
                xa.describe(differing) if xa else None,
                xb.describe(differing) if xb else None,
                xa.line if xa else None,
                xb.line if xb else None,
                final,
            )
    return PcrDiff(
        pcr,
        differing,
        "same changes in the log, different values (a value the replay could not know)",
        final=final,
    )
