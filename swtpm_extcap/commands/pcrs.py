"""``swtpm-extcap pcrs``: the PCR values of each run of a swtpm log, how they came about, diffs.

The I/O edge of :mod:`swtpm_extcap.pcr`: reads the log in chunks (a file or stdin), replays
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
import sys
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from ..pcr.report import write_json, write_text
from .logfile import add_log_command, log_chunks


@dataclass(frozen=True)
class PcrsSettings:
    log: str
    json: bool = False
    diff: tuple[str, str] | None = None


def run_pcrs(settings: PcrsSettings, stdin: BinaryIO, stdout: TextIO) -> int:
    with log_chunks(settings.log, stdin) as (name, chunks):
        if settings.diff is not None:
            from ..pcr.diff import run_ref, write_diff  # only --diff needs it

            refs = (run_ref(settings.diff[0]), run_ref(settings.diff[1]))
            write_diff(chunks, stdout, refs, name, settings.json)
        elif settings.json:
            write_json(chunks, stdout, name)
        else:
            write_text(chunks, stdout)
    stdout.flush()
    return 0


def pcrs_main(settings: PcrsSettings) -> int:
    return run_pcrs(settings, sys.stdin.buffer, sys.stdout)


def add_pcrs_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``pcrs`` subcommand's arguments (cli.py registers it)."""
    p = add_log_command(
        sub, "pcrs",
        help="replay the PCR values of each run of a swtpm log",
        description="Replay the PCR banks of each run (VM start) of a swtpm log: every extend with"
        " its log line, the final values, each PCR_Read checked against the replay.",
    )
    p.add_argument(
        "--diff",
        nargs=2,
        metavar=("A", "B"),
        help="compare two runs (by number, 1 = first, or by [id=] epoch) PCR by PCR",
    )


def settings_from(ns: argparse.Namespace) -> PcrsSettings:
    return PcrsSettings(log=ns.log, json=ns.json, diff=(ns.diff[0], ns.diff[1]) if ns.diff else None)
