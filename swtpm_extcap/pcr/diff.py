"""``swtpm-extcap pcrs --diff A B``: two runs (VM boots) compared PCR by PCR, naming
for each PCR that differs the first extend where the two boots part."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from ..errors import UsageError, UserError
from .runs import RunInfo, final_values, replay_runs
from .types import PCR_COUNT, Outcome, Startup, Step, bank_name


@dataclass(frozen=True)
class Change:
    """One change of one PCR in one run, all banks together (one command)."""

    what: str  # startup-clear, startup-state, extend, reset, unknown
    line: int
    number: int
    command: str
    digests: tuple[tuple[str, str], ...]  # (bank, digest or value hex), sorted

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (self.what, self.digests)

    def describe(self) -> str:
        if self.what == "extend":
            parts = ", ".join(f"{bank} {digest}" for bank, digest in self.digests)
            return f"extend #{self.number} at line {self.line} ({self.command}): {parts}"
        if self.what.startswith("startup"):
            return f"Startup({self.what[8:].upper()}) at line {self.line}"
        if self.what == "reset":
            return f"reset at line {self.line}"
        return f"unknown from line {self.line}"


@dataclass
class RunHistory:
    info: RunInfo
    changes: list[list[Change]] = field(default_factory=lambda: [[] for _ in range(PCR_COUNT)])
    final: dict[str, list[str | None]] = field(default_factory=dict)

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


def run_ref(text: str) -> str:
    if not text.isdigit() or int(text) == 0:
        raise UsageError(
            f"--diff takes two runs, by number (1, 2, ...) or [id=] epoch; {text!r} is neither"
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
                bank_name(alg): [v.hex() if v is not None else None for v, _, _ in slots]
                for alg, slots in final_values(final, replayer).items()
            }
    picked = []
    for ref in refs:
        chosen = _pick(ref, runs)
        if chosen is None:
            names = "; ".join(r.name for r in runs) or "none"
            raise UserError(f"{log} has no run {ref} (its runs: {names})")
        picked.append(histories[chosen.run])
    a, b = picked
    found = [d for pcr in range(PCR_COUNT) if (d := _diff_pcr(pcr, a, b)) is not None]
    if as_json:
        doc = {"log": log, "a": a.info.to_json(), "b": b.info.to_json(),
               "differences": [dataclasses.asdict(d) for d in found]}
        json.dump(doc, out, indent=1)
        out.write("\n")
        return
    out.write(f"A = {a.info.name}\nB = {b.info.name}\n")
    if not found:
        out.write("no PCR differs\n")
    for d in found:
        out.write(f"PCR {d.pcr} differs ({', '.join(d.banks)}): {d.summary}\n")
        out.write(f"  A: {d.a or 'nothing more'}\n  B: {d.b or 'nothing more'}\n")
        for bank, (va, vb) in d.final.items():
            out.write(f"  final {bank}: A {va or 'unknown'}, B {vb or 'unknown'}\n")


@dataclass(frozen=True)
class PcrDiff:
    """Where one PCR parts between two runs: the first change that differs."""

    pcr: int
    banks: list[str]
    summary: str
    a: str | None = None
    b: str | None = None
    a_line: int | None = None
    b_line: int | None = None
    #: the final values of the differing banks: {bank: [A, B]} (None: unknown)
    final: dict[str, list[str | None]] = dataclasses.field(default_factory=dict)


def _diff_pcr(pcr: int, a: RunHistory, b: RunHistory) -> PcrDiff | None:
    """How PCR ``pcr`` differs between two runs; None when it does not."""
    ca, cb = a.changes[pcr], b.changes[pcr]
    banks = sorted(set(a.final) | set(b.final))
    differing = [bank for bank in banks if a.value(bank, pcr) != b.value(bank, pcr)]
    final = {bank: [a.value(bank, pcr), b.value(bank, pcr)] for bank in differing}
    for k in range(max(len(ca), len(cb))):
        xa = ca[k] if k < len(ca) else None
        xb = cb[k] if k < len(cb) else None
        if xa is None or xb is None or xa.key != xb.key:
            same = sum(1 for c in ca[:k] if c.what == "extend")
            if (xa is None or xa.what == "extend") and (xb is None or xb.what == "extend"):
                where = f"at its extend {same + 1} (the {same} before it are equal)"
            else:
                where = f"at its change {k + 1}, after {same} equal extend{'s' * (same != 1)}"
            return PcrDiff(
                pcr,
                differing or banks,
                f"the boots part {where}",
                xa.describe() if xa else None,
                xb.describe() if xb else None,
                xa.line if xa else None,
                xb.line if xb else None,
                final,
            )
    if differing:
        return PcrDiff(
            pcr,
            differing,
            "same changes in the log, different values (a value the replay could not know)",
            final=final,
        )
    return None
