"""The ``explain`` report of a replayed log: every explained failure and abandoned policy
session, and every PolicyGetDigest self-check, as text or as one JSON document."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..swtpmlog.parser import LogParser
from ..tpm.hashes import alg_name
from .findings import DigestCheck, Explanation, Finding
from .policy import PolicyReplay


@dataclass
class Report:
    """Everything ``explain`` found, in log order (checks are counted; those that did not
    match are kept, and every one with ``all_checks``)."""

    explanations: list[Explanation] = field(default_factory=list)
    checks: list[DigestCheck] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"match": 0, "mismatch": 0, "unknown": 0})


def replay_log(chunks: Iterator[bytes], *, all_checks: bool = True) -> Report:
    parser, replay, report = LogParser(), PolicyReplay(), Report()

    def take(findings: list[Finding]) -> None:
        for f in findings:
            if type(f) is DigestCheck:
                report.counts[f.status] += 1
                if all_checks or f.status != "match":
                    report.checks.append(f)
            else:
                assert type(f) is Explanation
                report.explanations.append(f)

    for chunk in chunks:
        take(replay.feed(parser.feed(chunk))[1])
    take(replay.feed(parser.close())[1])
    take(replay.finish())
    return report


def _summary(report: Report) -> str:
    failures = sum(e.kind == "failure" for e in report.explanations)
    abandoned = len(report.explanations) - failures
    c = report.counts
    total = sum(c.values())
    return (f"{failures} failed authorization{'s' * (failures != 1)} explained,"
            f" {abandoned} abandoned policy session{'s' * (abandoned != 1)};"
            f" PolicyGetDigest: {total} answer{'s' * (total != 1)}, {c['match']} match the replay,"
            f" {c['mismatch']} mismatch, {c['unknown']} not known to it")


def _check_text(c: DigestCheck) -> str:
    where = f"  line {c.answer} (PolicyGetDigest at line {c.line}, session 0x{c.session:08x}):"
    if c.status == "match":
        return f"{where} matches the replay ({c.tpm.hex()})"
    if c.status == "mismatch":
        return f"{where} MISMATCH: TPM {c.tpm.hex()}, replay {c.replay.hex() if c.replay else '?'}"
    return f"{where} not known to the replay ({c.why}); TPM {c.tpm.hex()}"


def write_text(report: Report, name: str, out: TextIO) -> None:
    out.write(f"{name}: {_summary(report)}\n")
    for e in report.explanations:
        where = f"line {e.answer}" if e.answer else "end of run" if "run ended" in e.text else "end of log"
        out.write(f"\n{where} (run {e.run + 1}), {e.kind}:\n")
        out.write(textwrap.fill(e.text, width=100, initial_indent="  ", subsequent_indent="  ",
                                break_long_words=False, break_on_hyphens=False) + "\n")
    if report.checks:
        out.write("\nPolicyGetDigest self-checks:\n")
        for c in report.checks:
            out.write(_check_text(c) + "\n")


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value is not None else None


def to_json(report: Report, name: str) -> dict[str, Any]:
    return {
        "log": name,
        "summary": _summary(report),
        "explanations": [
            {
                "run": e.run + 1, "line": e.line, "answer": e.answer, "kind": e.kind,
                "command": e.command, "rc": f"0x{e.rc:03x}" if e.rc else None,
                "session": f"0x{e.session:08x}" if e.session else None,
                "entity": f"0x{e.entity:08x}" if e.entity else None,
                "wanted": _hex(e.wanted), "had": _hex(e.had),
                "pcrs": [
                    {"pcr": c.pcr, "bank": alg_name(c.alg), "wanted": c.wanted.hex(),
                     "now": _hex(c.now), "run": c.run + 1, "since_line": c.since.line,
                     "until_line": c.until.command_line if c.until is not None else None,
                     "until_extend": c.until.number if c.until is not None else None,
                     "until_digest": _hex(c.until.digest) if c.until is not None else None}
                    for c in e.causes
                ],
                "text": e.text,
            }
            for e in report.explanations
        ],
        "checks": [
            {"run": c.run + 1, "line": c.line, "answer": c.answer, "session": f"0x{c.session:08x}",
             "status": c.status, "tpm": c.tpm.hex(), "replay": _hex(c.replay), "why": c.why or None}
            for c in report.checks
        ],
        "counts": report.counts,
    }


def write_json(report: Report, name: str, out: TextIO) -> None:
    json.dump(to_json(report, name), out, indent=1)
    out.write("\n")
