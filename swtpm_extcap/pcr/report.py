"""The ``pcrs`` report of a replayed log, as text or as one JSON document, written as the
replay goes (memory stays flat however long the log is)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from .replay import Replayer
from .runs import NOT_ALLOCATED, RunInfo, final_values, hex_or_unknown, replay_runs, unallocated_banks
from .types import Check, Outcome, Read, RunState, Startup, Step, bank_name


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
                f" digest {o.digest.hex() if o.digest else '?'} -> {hex_or_unknown(o.value, o.why)}\n"
            )
        elif o.what == "reset":
            out.write(f"  line {o.line} reset PCR {o.pcr} {o.bank} -> {hex_or_unknown(o.value)}\n")
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
                f" = {o.read.hex()}, replay {hex_or_unknown(o.replay)} (last change line {o.since})\n"
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
            out.write(f"    {pcr:2}: {hex_or_unknown(value, why)}\n")
    unallocated = unallocated_banks(state, replayer)
    if unallocated and (final or state.seen):
        names = ", ".join(bank_name(alg) for alg in unallocated)
        out.write(f"  not allocated (the TPM keeps no such bank): {names}\n")


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
        values = final_values(final, replayer)
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
                    for pcr, (value, _, why) in enumerate(slots)
                    if why != NOT_ALLOCATED
                }
                for alg, slots in values.items()
            },
            "unknown": {
                bank_name(alg): {
                    str(pcr): why
                    for pcr, (value, _, why) in enumerate(slots)
                    if value is None and why != NOT_ALLOCATED
                }
                for alg, slots in values.items()
            },
            # per bank, the PCRs the TPM has not allocated there (all 24: no such bank)
            "not_allocated": {
                bank_name(alg): replayer.allocation.unallocated(alg)
                for alg in sorted(final.banks)
                if replayer.allocation.unallocated(alg)
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
