"""``swtpm-extcap explain``: why did it fail? Every failed authorization and abandoned
policy session of a swtpm log explained, and every PolicyGetDigest checked.

The I/O edge of :mod:`swtpm_extcap.pcr.policyreport`: reads the log in chunks (a file or
stdin), replays PCRs and policy sessions, writes text (default) or ``--json``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from .logfile import add_log_command, log_chunks


@dataclass(frozen=True)
class ExplainSettings:
    log: str
    json: bool = False


def run_explain(settings: ExplainSettings, stdin: BinaryIO, stdout: TextIO) -> int:
    from ..pcr.policyreport import replay_log, write_json, write_text

    with log_chunks(settings.log, stdin) as (name, chunks):
        report = replay_log(chunks)
    (write_json if settings.json else write_text)(report, name, stdout)
    stdout.flush()
    return 0


def explain_main(settings: ExplainSettings) -> int:
    return run_explain(settings, sys.stdin.buffer, sys.stdout)


def add_explain_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``explain`` subcommand's arguments (cli.py registers it)."""
    add_log_command(
        sub, "explain",
        help="explain every failed TPM authorization and abandoned policy session of a swtpm log",
        description="Replay the policy sessions of a swtpm log beside its PCRs: explain every"
        " failed authorization (TPM_RC_POLICY_FAIL, TPM_RC_AUTH_FAIL, ...) and every policy"
        " session the client gave up, down to the PCR extend that broke it; check every"
        " PolicyGetDigest answer against the replay.",
    )


def settings_from(ns: argparse.Namespace) -> ExplainSettings:
    return ExplainSettings(log=ns.log, json=ns.json)
