"""Pure policy replay: parser events in; the PCR replay's outcomes, PolicyGetDigest
self-checks and explained authorization failures out.

Beside the PCR replay (:class:`~.replay.Replayer`, which it drives, so the PCR values
are those at each command), :class:`PolicyReplay` follows every policy and trial
session from StartAuthSession through its policy commands (their digests as
:mod:`.policycommands` computes them) to the command it authorizes or the FlushContext
that ends it, and the objects and NV indices the log shows (:mod:`.objects`). Every
PolicyGetDigest answer is checked against the replayed digest; every failed
authorization, and every policy session flushed unused whose digest is not the
authPolicy of the object loaded before it, is explained (:mod:`.explain`).

Only commands that matter are looked at (the policy commands, sessions, objects, NV
indices, Startup, failures, and commands with sessions while a policy session is open).
Nothing is guessed: an input the log does not have (a damaged record, a session started
before the log, an encrypted parameter, a PCR the replay does not know) makes the digest
unknown, with the reason.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache

from ..swtpmlog.parser import Event, Kind, Record, RunStart
from ..tpm.commands import tpm2_command_name
from ..tpm.hashes import digest_size
from ..tpm.rc import AUTHORIZATION, decode
from ..tpm.structures import (
    NV_READLOCKED,
    NV_WRITELOCKED,
    NV_WRITTEN,
    TAG_SESSIONS,
    Command,
    Malformed,
    Reader,
    parse_command,
    parse_response,
    plain,
    read_sym_def,
)
from ..tpm.tables import SHAPES
from . import explain
from .findings import SESSION_POLICY, SESSION_TRIAL, DigestCheck, Done, Finding, Session
from .history import PcrHistory
from .objects import OTHER, PLAIN, Objects
from .policycommands import (
    CC,
    NAMES,
    SESSION_HANDLE,
    PolicyCall,
    current_pcrs,
    read_call,
)
from .replay import Replayer
from .types import Outcome, Startup

_U32 = struct.Struct(">I")
_NV_SETS = {0x137: NV_WRITTEN, 0x134: NV_WRITTEN, 0x136: NV_WRITTEN, 0x135: NV_WRITTEN,
            0x138: NV_WRITELOCKED, 0x14F: NV_READLOCKED}
#: the command codes looked at whatever happens, as they appear in a command's bytes 6-10
WATCHED = frozenset(_U32.pack(c) for c in (*CC.values(), *OTHER.values()))
_SUCCESS = b"\0\0\0\0"
#: responses after which the PCR values (and their history) must be up to date: the
#: policy command that reads PCRs, Startup; failures and the FlushContext of a policy
#: session too (their explanations search the history)
_NEEDS_PCRS = frozenset(_U32.pack(c) for c in (CC["PolicyPCR"], OTHER["Startup"]))
_FLUSH = _U32.pack(OTHER["FlushContext"])
_FLUSH_CC, _START = OTHER["FlushContext"], OTHER["StartAuthSession"]
#: what :meth:`PolicyReplay._plain` reads
_PLAIN = PLAIN | {_FLUSH_CC, _START}
_SESSIONS_TAG = TAG_SESSIONS.to_bytes(2, "big")


@lru_cache(maxsize=256)
def command_name(code: int) -> str:
    """``Unseal`` for 0x15e (Wireshark's name without ``TPM2_CC_``)."""
    name = tpm2_command_name(code)
    return name[len("TPM2_CC_"):] if name else f"command 0x{code:08x}"


def _which(code: int) -> str:
    """How a reason names a command: ``the <name>``, or ``a`` when it has no shape."""
    return f"the {command_name(code)}" if code in SHAPES else "a"


def _intact(rec: Record) -> bool:
    return (not rec[5] and len(rec[1]) == rec[4]) or rec.intact


class PolicyReplay:
    """Replays PCRs and policy sessions from parser events (see the module doc)."""

    def __init__(self, replayer: Replayer | None = None) -> None:
        self.replayer = replayer if replayer is not None else Replayer()
        self.history = PcrHistory()
        self.objects = Objects()
        self.sessions: dict[int, Session] = {}
        #: finished trial sessions (the policies the log built), newest last, bounded
        self.trials: list[Session] = []
        self._cmd: Record | None = None  # the last command, until its response
        self._watched = False  # its code is one the replay looks at whatever happens
        self._short: Record | None = None  # a watched command shorter than its TPM size
        self._run = -1

    @property
    def run(self) -> int:
        """The run being replayed (0-based)."""
        return self._run

    def pcr_now(self, alg: int, pcr: int) -> bytes | None:
        """A PCR's replayed value now (None: unknown)."""
        state = self.replayer.state
        slots = state.banks.get(alg) if state is not None else None
        return slots[pcr].value if slots is not None and 0 <= pcr < len(slots) else None

    # -- events -------------------------------------------------------------------

    def feed(self, events: Iterable[Event]) -> tuple[list[Outcome], list[Finding]]:
        """Replay ``events`` (log order): the PCR replay's outcomes and the policy findings."""
        events = events if isinstance(events, list) else list(events)
        outcomes: list[Outcome] = []
        found: list[Finding] = []
        start = 0
        watched, command, response = WATCHED, Kind.TPM_COMMAND, Kind.TPM_RESPONSE
        for i, ev in enumerate(events):
            if type(ev) is Record:
                if ev[3] != self._run:
                    self._new_run(ev[3], ev[2], found)
                kind = ev[0]
                if kind is command:
                    cmd = self._cmd
                    if cmd is not None:
                        if cmd is self._short:  # the rest of a command swtpm read in pieces
                            self._cmd = self._short = _join(cmd, ev)
                            if len(self._short[1]) >= _declared(self._short[1]):
                                self._short = None
                            continue
                        if self._watched:
                            self._unanswered(cmd)
                    data = ev[1]
                    self._cmd = ev
                    self._watched = data[6:10] in watched
                    if self._watched and len(data) < _declared(data) and _intact(ev):
                        self._short = ev
                elif kind is response:
                    cmd = self._cmd
                    if cmd is None:
                        continue
                    self._cmd = self._short = None
                    failed = ev[1][6:10] != _SUCCESS and _explained(ev[1], self._watched)
                    if (self._watched or failed or cmd[5]
                            or (self.sessions and cmd[1][:2] == _SESSIONS_TAG)):
                        code = cmd[1][6:10]
                        if failed or code in _NEEDS_PCRS or (
                                code == _FLUSH and int.from_bytes(cmd[1][10:14], "big") in self.sessions):
                            # bring the PCR replay up to this response first
                            outcomes += self._pcrs(events[start : i + 1])
                            start = i + 1
                        self._answer(cmd, ev, found)
            elif type(ev) is RunStart:
                self._new_run(ev.run, ev.line, found)
        outcomes += self._pcrs(events[start:])
        return outcomes, found

    def finish(self) -> list[Finding]:
        """End of the log: the policy sessions still open and never used."""
        found: list[Finding] = []
        self._close_sessions("was still open and unused at the end of the log", 0, found)
        return found

    def _close_sessions(self, how: str, line: int, found: list[Finding]) -> None:
        for session in list(self.sessions.values()):
            self._ended(session, how, line, 0, found)
        self.sessions.clear()

    def _pcrs(self, events: list[Event]) -> list[Outcome]:
        if not events:
            return []
        out = self.replayer.feed(events)
        if out:
            self.history.add(out)
            state = self.replayer.state
            for o in out:
                if type(o) is Startup and state is not None:
                    self.history.startup(o, state)  # the slice ends at its response
        return out

    def _new_run(self, run: int, line: int, found: list[Finding]) -> None:
        if run == self._run:
            return
        self._close_sessions(f"was never used: its run ended (run {run + 1} starts at line {line})",
                             0, found)
        self._run = run
        self._cmd = self._short = None
        self.objects.new_run()

    # -- one command and its response -------------------------------------------------

    def _unanswered(self, cmd: Record) -> None:
        self._lost(cmd[1], f"its response (after line {cmd[2]}) is not in the log")

    def _lost(self, data: bytes, why: str) -> None:
        """A command whose effect cannot be known: the sessions it names are unknown."""
        code = _U32.unpack_from(data, 6)[0] if len(data) >= 10 else -1
        if code in NAMES or code < 0 or code not in SHAPES:
            for handle in _handles(data, code) or list(self.sessions):
                session = self.sessions.get(handle)
                if session is not None:
                    session.digest, session.why = None, why
                    if code != CC["PolicyGetDigest"]:  # a policy command, or maybe one
                        call = PolicyCall(code if code in NAMES else -1, handle, "", None, why)
                        session.steps.append(Done(call, 0, 0, None, None, why))

    def _answer(self, cmd: Record, rsp: Record, found: list[Finding]) -> None:
        data, line = cmd[1], cmd[2]
        code = _U32.unpack_from(data, 6)[0] if len(data) >= 10 else -1
        if code in _PLAIN and self._plain(code, cmd, rsp, found):
            return
        if not _intact(cmd):
            self._lost(data, f"{_which(code)} record at line {line} is damaged")
            return
        if not _intact(rsp):
            self._lost(data, f"the response to {_which(code)} command (line {rsp[2]}) is damaged")
            return
        shape = SHAPES.get(code)
        if shape is None:
            return
        try:
            command = parse_command(data, shape[0])
            response = parse_response(rsp[1], bool(shape[1]))
            if response.rc:
                self._failed(command, response.rc, line, rsp[2], found)
            else:
                self._succeeded(command, response.handle, response.reader(), line, rsp[2], found)
        except Malformed as exc:
            self._lost(data, f"{_which(code)} command at line {line} does not parse: {exc}")

    def _plain(self, code: int, cmd: Record, rsp: Record, found: list[Finding]) -> bool:
        """The commands a tpm2-tools session repeats most, both records whole, in the plain
        shape (:func:`~swtpm_extcap.tpm.structures.plain`): read from their bytes, as the
        generic path would (False: nothing done, left to it)."""
        data, response = cmd[1], rsp[1]
        if cmd[5] or rsp[5] or len(data) != cmd[4] or len(response) != rsp[4] or not plain(data, response):
            return False
        if code == _FLUSH_CC and len(data) >= 14:
            self._flushed(_U32.unpack_from(data, 10)[0], cmd[2], rsp[2], found)
        elif code == _START and len(data) >= 18 and len(response) >= 14:
            try:  # the parameters after its two handles; the session's handle in the answer
                self._started(Reader(data, 18), _U32.unpack_from(response, 10)[0], cmd[2])
            except Malformed:
                return False  # nothing done: the generic path says why
        elif code in PLAIN:
            return self.objects.plain(code, data, response, cmd[2])
        else:
            return False
        return True

    def _succeeded(self, cmd: Command, handle: int | None, out: Reader, line: int, answer: int,
                   found: list[Finding]) -> None:
        code = cmd.code
        if code in NAMES:
            if code == CC["PolicyGetDigest"]:
                self._get_digest(cmd, out, line, answer, found)
            else:
                self._policy(cmd, line, answer)
        elif code == _START:
            self._started(cmd.reader(), handle, line)
        elif code == OTHER["FlushContext"]:
            self._flushed(cmd.reader().u32("flushHandle"), line, answer, found)
        elif code in _NV_SETS:
            self.objects.nv_set(cmd.handles[1], _NV_SETS[code])
        else:
            if code == OTHER["Startup"]:
                self.sessions.clear()  # sessions do not survive a TPM reset or restart
            else:
                self.objects.follow(cmd, handle, out, line)
        self._used(cmd, answer)

    def _started(self, r: Reader, handle: int | None, line: int) -> None:
        """StartAuthSession (``r``: its parameters): a policy or trial session to follow."""
        r.tpm2b("nonceCaller")
        r.tpm2b("encryptedSalt")
        kind = r.u8("sessionType")
        read_sym_def(r)
        alg = r.u16("authHash")
        size = digest_size(alg)
        if handle is not None and kind in (SESSION_POLICY, SESSION_TRIAL):
            self.sessions[handle] = Session(
                handle, self._run, line, kind == SESSION_TRIAL, alg,
                bytes(size) if size else None,
                "" if size else f"unknown hash algorithm 0x{alg:04x}")

    def _flushed(self, handle: int, line: int, answer: int, found: list[Finding]) -> None:
        session = self.sessions.pop(handle, None)
        if session is not None:
            self._ended(session, f"was flushed at line {line} without authorizing anything",
                        line, answer, found)
        else:
            self.objects.flush(handle)

    # -- policy sessions ------------------------------------------------------------------

    def _session(self, handle: int) -> Session:
        session = self.sessions.get(handle)
        if session is None:  # started before the log, or its start was lost
            session = self.sessions[handle] = Session(
                handle, self._run, 0, False, 0, None, "its StartAuthSession is not in the log")
        return session

    def _policy(self, cmd: Command, line: int, answer: int) -> None:
        code = cmd.code
        session = self._session(cmd.handles[_session_index(code)])
        call = read_call(cmd, session.alg, self.objects.name_of, command_name)
        values: list[tuple[int, int, bytes | None, str]] = []
        if call.selection is not None:
            values = self._pcr_values(call)
            session.pcr_line = answer
            if call.update is None and not call.why:
                call = current_pcrs(call, session.alg, values)
        if code == CC["PolicyRestart"]:
            session.reset()
            return
        update = call.update
        before = session.digest
        if update is None or before is None:
            new, why = None, call.why or session.why
        else:
            new = update.apply(session.alg, before)
            why = "" if new is not None else "this Python cannot compute the session's hash"
        session.steps.append(Done(call, line, answer, update, new, why,
                                  tuple((a, p, v) for a, p, v, _ in values)))
        session.digest, session.why = new, why
        if call.command_code:
            session.command_code, session.command_code_line = call.command_code, line
        session.auth_value |= call.auth_value
        session.password |= call.password

    def _pcr_values(self, call: PolicyCall) -> list[tuple[int, int, bytes | None, str]]:
        """The replayed value of each selected PCR (bank, PCR, value, why unknown)."""
        state = self.replayer.state
        out: list[tuple[int, int, bytes | None, str]] = []
        assert call.selection is not None
        for alg, pcr in call.selection.pcrs():
            slots = state.banks.get(alg) if state is not None else None
            if slots is None or pcr >= len(slots):
                out.append((alg, pcr, None, "not a PCR the replay knows"))
            else:
                out.append((alg, pcr, slots[pcr].value, slots[pcr].why))
        return out

    def _get_digest(self, cmd: Command, out: Reader, line: int, answer: int,
                    found: list[Finding]) -> None:
        if any(s.encrypt for s in cmd.sessions):
            return  # the answer is encrypted: nothing to check
        tpm = out.tpm2b("policyDigest")
        session = self._session(cmd.handles[0])
        replay = session.digest
        if replay == tpm:
            status, why = "match", ""
        elif replay is None:
            status, why = "unknown", session.why
        else:
            status, why = "mismatch", ""
        found.append(DigestCheck(self._run, line, answer, session.handle, replay, tpm, status, why))
        if status != "match":
            session.digest, session.why = tpm, ""  # the TPM said so: go on from its value
            if not session.alg:
                session.alg = {20: 0x0004, 32: 0x000B, 48: 0x000C, 64: 0x000D}.get(len(tpm), 0)
        session.tpm_digest, session.tpm_digest_line = tpm, answer

    def _used(self, cmd: Command, answer: int) -> None:
        """The policy sessions that authorized ``cmd`` (it succeeded): reset or ended."""
        if not self.sessions or not cmd.sessions:
            return
        roles = SHAPES.get(cmd.code, (0, 0, ""))[2]
        for i, auth in enumerate(cmd.sessions):
            session = self.sessions.get(auth.handle)
            if session is None or i >= len(roles) or roles[i] == "-":
                continue
            session.used = True
            if auth.continues:
                session.reset()
            else:
                del self.sessions[auth.handle]
                if session.trial:
                    self._keep_trial(session)

    def _keep_trial(self, session: Session) -> None:
        self.trials.append(session)
        del self.trials[:-32]

    def _ended(self, session: Session, how: str, line: int, answer: int,
               found: list[Finding]) -> None:
        """A policy session ends (``how``): abandoned, if it was built for an object it
        does not satisfy, never used, and no failure of it was explained already."""
        if session.trial:
            self._keep_trial(session)
            return
        if session.used or session.failed or not session.steps:
            return
        finding = explain.abandoned(self, session, how, line, answer)
        if finding is not None:
            found.append(finding)

    def _failed(self, cmd: Command, rc: int, line: int, answer: int, found: list[Finding]) -> None:
        code = cmd.code
        if code in NAMES:
            session = self.sessions.get(cmd.handles[_session_index(code)]) if cmd.handles else None
            found.append(explain.policy_failure(self, cmd, rc, session, line, answer))
        elif decode(rc).base in AUTHORIZATION:
            found.append(explain.authorization_failure(self, cmd, rc, line, answer))
        else:
            return
        for auth in cmd.sessions:
            if auth.handle in self.sessions:
                self.sessions[auth.handle].failed = True
        if code in NAMES and cmd.handles:
            session = self.sessions.get(cmd.handles[_session_index(code)])
            if session is not None:
                session.failed = True


def _session_index(code: int) -> int:
    return SESSION_HANDLE.get(code, 0)


def _explained(response: bytes, watched: bool) -> bool:
    """A failure worth explaining: of a watched command (a policy command), or about
    authorization (``tpm.rc.AUTHORIZATION``)."""
    return watched or _about_authorization(response[6:10] if len(response) >= 10 else _SUCCESS)


@lru_cache(maxsize=1024)
def _about_authorization(rc: bytes) -> bool:
    """Whether a response code (its 4 bytes) is about authorization; a log has few
    codes, and a failure of some commands may come back thousands of times."""
    return decode(int.from_bytes(rc, "big")).base in AUTHORIZATION


def _join(first: Record, rest: Record) -> Record:
    """One command from the pieces swtpm read it in (damaged if the last piece is)."""
    data = first[1] + rest[1]
    return Record(first[0], data, first[2], first[3], len(data) if _intact(rest) else None,
                  first[5] + rest[5], rest[6])


def _declared(data: bytes) -> int:
    return int(_U32.unpack_from(data, 2)[0]) if len(data) >= 6 else 0


def _handles(data: bytes, code: int) -> list[int]:
    """The handles of a (maybe damaged) command, as far as they can be read."""
    count = SHAPES.get(code, (0, 0, ""))[0]
    return [int(_U32.unpack_from(data, 10 + 4 * i)[0]) for i in range(count)
            if len(data) >= 14 + 4 * i]
