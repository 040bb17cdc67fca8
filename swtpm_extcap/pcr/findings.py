"""The vocabulary of the policy replay (:mod:`.policy`): a policy session's state and
steps, and what the replay reports: :class:`DigestCheck` (a PolicyGetDigest answer
against the replay) and :class:`Explanation` (a failed authorization, or a policy
session the client abandoned, in one paragraph)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..tpm.hashes import alg_name
from .history import Change
from .policycommands import PolicyCall, Update

SESSION_POLICY, SESSION_TRIAL = 0x01, 0x03


@dataclass(frozen=True, slots=True)
class Done:
    """A policy command the TPM accepted: the digest after it (None: unknown, ``why``)."""

    call: PolicyCall
    line: int
    answer: int
    update: Update | None
    digest: bytes | None
    why: str = ""
    #: PolicyPCR: the replayed PCR values of its selection, (bank, PCR, value)
    values: tuple[tuple[int, int, bytes | None], ...] = ()

    def describe(self) -> str:
        if not self.line:
            return f"{self.call.name} ({self.why})"
        return f"{self.call.describe()} at line {self.line}"


@dataclass(slots=True)
class Session:
    """A policy or trial session the log started (the tracker's state, mutable)."""

    handle: int
    run: int
    line: int
    trial: bool
    alg: int
    digest: bytes | None
    why: str = ""
    steps: list[Done] = field(default_factory=list)
    command_code: int = 0
    command_code_line: int = 0
    auth_value: bool = False
    password: bool = False
    pcr_line: int = 0  # the answer of the last PolicyPCR (the TPM's PCR counter check)
    used: bool = False
    failed: bool = False  # a failure of (or with) it was explained
    tpm_digest: bytes | None = None  # the last PolicyGetDigest answer
    tpm_digest_line: int = 0

    def describe(self) -> str:
        kind = "trial session" if self.trial else "policy session"
        start = f"started at line {self.line}" if self.line else "started before the log"
        return f"{kind} 0x{self.handle:08x} ({start}, {alg_name(self.alg)})"

    def reset(self) -> None:
        """PolicyRestart, or a use with continueSession: the initial state."""
        size = len(self.digest) if self.digest is not None else 0
        self.digest = bytes(size) if size else None
        self.steps = []
        self.command_code = self.command_code_line = self.pcr_line = 0
        self.auth_value = self.password = False


@dataclass(frozen=True, slots=True)
class DigestCheck:
    """A PolicyGetDigest answer against the replayed digest.

    ``status``: ``match``, ``mismatch`` (the replay takes the TPM's value from here on),
    ``unknown`` (the replay did not know it: ``why``; now it does)."""

    run: int
    line: int
    answer: int
    session: int
    replay: bytes | None
    tpm: bytes
    status: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class PcrCause:
    """A PCR whose value differs from the one a policy wants, and where it changed."""

    pcr: int
    alg: int
    wanted: bytes
    now: bytes | None
    since: Change  # the change that gave it the wanted value
    until: Change | None  # the change that moved it away (None: not in this run)
    run: int  # the run where it had the wanted value


@dataclass(frozen=True, slots=True)
class Explanation:
    """One failed authorization (``kind`` ``failure``) or abandoned policy session
    (``abandoned``), in one paragraph (``text``) and as facts."""

    run: int
    line: int
    answer: int
    kind: str
    command: str
    rc: int
    text: str
    session: int = 0
    entity: int = 0
    wanted: bytes | None = None
    had: bytes | None = None
    causes: tuple[PcrCause, ...] = ()


Finding = DigestCheck | Explanation
