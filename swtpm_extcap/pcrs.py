"""``swtpm-extcap pcrs``: the PCR values of each run of a swtpm log, how they came about, diffs.

The I/O edge of :mod:`pcr`: reads the log in chunks (a file or stdin), replays
it, and writes as it goes (memory stays flat however long the log is):

* text (default): per run its name, the Startup, every extend in order with
  its log line, digest and new value, the PCR_Read checks that did not match
  (and how many did), then the final values per bank;
* ``--json``: the same as one JSON document, for scripts;
* ``--diff A B``: two runs (two VM boots) PCR by PCR: for each PCR that
  differs, the first change where the two boots part, with both digests and
  log lines.

Runs are named as the capture names them: ``run N`` (1-based; the capture's
TCP client port is 50000+N-1), and ``[id=<epoch>]`` with its UTC time where
the log has that prefix. A run is picked by its number or by its epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from .logparse import Event, LogParser, RunStart
from .pcr import Replayer
from .pcrtypes import Check, Outcome, Read, RunState, Startup, Step, bank_name

CHUNK = 1 << 20


@dataclass(frozen=True)
class PcrsSettings:
    log: str
    json: bool = False
    diff: tuple[str, str] | None = None


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
        if start < len(events):
            if info is None:  # a stream without a RunStart (cannot happen with LogParser)
                first = events[start]
                info = RunInfo(getattr(first, "run", 0), getattr(first, "line", 1), None, None, "")
            yield info, replayer.feed(events[start:]), None, replayer
        if tail:
            if info is not None and replayer.state is not None:
                yield info, [], replayer.state, replayer
            return


def _hex(value: bytes | None, why: str = "") -> str:
    return value.hex() if value is not None else f"unknown ({why})" if why else "unknown"


def final_values(state: RunState, replayer: Replayer) -> dict[int, list[tuple[bytes | None, int, str]]]:
    """Per shown bank: [(value, line of last change, why unknown)] for PCR 0..23."""
    out = {}
    for alg, slots in sorted(state.banks.items()):
        if replayer.allocation is not None:
            if not replayer.allocation.get(alg):
                continue
        elif alg not in state.seen:
            continue
        out[alg] = [(s.value, s.line, s.why) for s in slots]
    return out


# --------------------------------------------------------------------- text


@dataclass
class _Counts:
    values: int = 0
    match: int = 0
    mismatch: int = 0
    learned: int = 0
    responses: int = 0
    header: bool = False


def write_text(chunks: Iterator[bytes], out: TextIO) -> None:
    counts = _Counts()
    for info, outcomes, final, replayer in replay_runs(chunks):
        if final is None:
            for o in outcomes:
                _text_outcome(o, out, counts, info)
            continue
        _text_run_end(info, final, replayer, counts, out)
        counts = _Counts()


def _text_outcome(o: Outcome, out: TextIO, counts: _Counts, info: RunInfo) -> None:
    if not counts.header:
        out.write(f"{info.name}: {info.reason}\n")
        counts.header = True
    if type(o) is Step:
        if o.what == "extend":
            out.write(
                f"  #{o.number} line {o.line} {o.command} PCR {o.pcr} {o.bank}"
                f" digest {o.digest.hex() if o.digest else '?'} -> {_hex(o.value, o.why)}\n"
            )
        elif o.what == "reset":
            out.write(f"  line {o.line} reset PCR {o.pcr} {o.bank} -> {_hex(o.value)}\n")
        else:
            out.write(f"  line {o.line} PCR {o.pcr} {o.bank} unknown from here: {o.why}\n")
    elif type(o) is Startup:
        out.write(f"  line {o.line} Startup({o.kind.upper()})\n")
    elif type(o) is Read:
        counts.responses += 1
        counts.values += o.values
        counts.match += o.matched
    elif type(o) is Check:
        if o.status == "mismatch":
            counts.mismatch += 1
            out.write(
                f"  MISMATCH: PCR_Read at line {o.line} (response line {o.answer}) PCR {o.pcr} {o.bank}"
                f" = {o.read.hex()}, replay {_hex(o.replay)} (last change line {o.since})\n"
            )
        elif o.status == "learned":
            counts.learned += 1
            out.write(
                f"  line {o.line} PCR_Read PCR {o.pcr} {o.bank} = {o.read.hex()}"
                f" (not known to the replay: {o.why}; taken from this read)\n"
            )


def _text_run_end(info: RunInfo, state: RunState, replayer: Replayer, counts: _Counts, out: TextIO) -> None:
    if not counts.header:
        out.write(f"{info.name}: {info.reason}\n")
    reads = counts.responses
    out.write(
        f"  PCR_Read: {reads} response{'s' * (reads != 1)}, {counts.values} values:"
        f" {counts.match} match, {counts.mismatch} mismatch, {counts.learned} not known before\n"
    )
    final = final_values(state, replayer)
    if not final:
        out.write("  nothing to replay: no TPM 2.0 Startup, PCR change or PCR_Read in this run\n")
    for alg, slots in final.items():
        out.write(f"  final {bank_name(alg)}:\n")
        for pcr, (value, _line, why) in enumerate(slots):
            out.write(f"    {pcr:2}: {_hex(value, why)}\n")


# --------------------------------------------------------------------- json


def write_json(chunks: Iterator[bytes], out: TextIO, log: str) -> None:
    out.write('{"log": ' + json.dumps(log) + ', "runs": [')
    first_run = True
    in_run = False
    counts = _Counts()
    first_event = True
    for info, outcomes, final, replayer in replay_runs(chunks):
        if not in_run:
            out.write(("" if first_run else ",") + "\n  {")
            out.write(json.dumps(info.to_json())[1:-1] + ', "events": [')
            first_run = False
            in_run = True
            first_event = True
        if final is None:
            for o in outcomes:
                item = _json_outcome(o, counts)
                if item is not None:
                    out.write(("" if first_event else ",") + "\n    " + json.dumps(item))
                    first_event = False
            continue
        tail = {
            "reads": {
                "responses": counts.responses,
                "values": counts.values,
                "match": counts.match,
                "mismatch": counts.mismatch,
                "learned": counts.learned,
            },
            "final": {
                bank_name(alg): {
                    str(pcr): (value.hex() if value is not None else None)
                    for pcr, (value, _, _) in enumerate(slots)
                }
                for alg, slots in final_values(final, replayer).items()
            },
            "unknown": {
                bank_name(alg): {str(pcr): why for pcr, (value, _, why) in enumerate(slots) if value is None}
                for alg, slots in final_values(final, replayer).items()
            },
        }
        out.write("\n  ], " + json.dumps(tail)[1:-1] + "}")
        in_run = False
        counts = _Counts()
    out.write("\n]}\n")


def _json_outcome(o: Outcome, counts: _Counts) -> dict[str, object] | None:
    if type(o) is Step:
        item: dict[str, object] = {"type": o.what, "line": o.line, "answer": o.answer, "pcr": o.pcr,
                                   "bank": o.bank, "value": o.value.hex() if o.value is not None else None}
        if o.what == "extend":
            item.update(number=o.number, command=o.command, digest=o.digest.hex() if o.digest else None)
        if o.why:
            item["why"] = o.why
        return item
    if type(o) is Startup:
        return {"type": "startup", "kind": o.kind, "line": o.line, "answer": o.answer}
    if type(o) is Read:
        counts.responses += 1
        counts.values += o.values
        counts.match += o.matched
        return None
    assert type(o) is Check
    if o.status == "match":
        return None
    if o.status == "mismatch":
        counts.mismatch += 1
    else:
        counts.learned += 1
    return {"type": "read", "status": o.status, "line": o.line, "answer": o.answer, "pcr": o.pcr,
            "bank": o.bank, "read": o.read.hex(), "replay": o.replay.hex() if o.replay else None,
            "since": o.since, **({"why": o.why} if o.why else {})}


# ---------------------------------------------------------------------- I/O


def _chunks(src: BinaryIO) -> Iterator[bytes]:
    read = getattr(src, "read1", src.read)
    while chunk := read(CHUNK):
        yield chunk


def run_pcrs(settings: PcrsSettings, stdin: BinaryIO, stdout: TextIO) -> int:
    from .convert import check_inputs

    check_inputs([settings.log])
    if settings.diff is not None:
        from .pcrdiff import run_ref, write_diff  # only --diff needs it

        refs = (run_ref(settings.diff[0]), run_ref(settings.diff[1]))
    src = stdin if settings.log == "-" else open(settings.log, "rb")
    name = "stdin" if settings.log == "-" else settings.log
    try:
        if settings.diff is not None:
            write_diff(_chunks(src), stdout, refs, name, settings.json)
        elif settings.json:
            write_json(_chunks(src), stdout, name)
        else:
            write_text(_chunks(src), stdout)
    finally:
        if src is not stdin:
            src.close()
    stdout.flush()
    return 0


def pcrs_main(settings: PcrsSettings) -> int:
    return run_pcrs(settings, sys.stdin.buffer, sys.stdout)


def add_pcrs_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``pcrs`` subcommand's arguments (cli.py registers it)."""
    p = sub.add_parser(
        "pcrs",
        help="replay the PCR values of each run of a swtpm log",
        description="Replay the PCR banks of each run (VM start) of a swtpm log: every extend with"
        " its log line, the final values, each PCR_Read checked against the replay.",
    )
    p.add_argument("log", metavar="LOG", help="swtpm log file, or - for stdin")
    p.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    p.add_argument(
        "--diff",
        nargs=2,
        metavar=("A", "B"),
        help="compare two runs (by number, 1 = first, or by [id=] epoch) PCR by PCR",
    )


def settings_from(ns: argparse.Namespace) -> PcrsSettings:
    return PcrsSettings(log=ns.log, json=ns.json, diff=(ns.diff[0], ns.diff[1]) if ns.diff else None)
