"""Pure PCR replay: parser events in, the PCR banks of each run and what changed them out.

Like the log parser (:mod:`swtpm_extcap.swtpmlog.parser`), this does no I/O and never looks at a clock. Feed it the
parser's events in log order (``Replayer.feed(events)``); it pairs each TPM
response with the command before it in the same run (and each control-channel
response with its control command), applies a change only when the response
code is success, and returns a :class:`Step` for every change and a
:class:`Check` for every PCR value a ``TPM2_PCR_Read`` returned.

What changes PCRs (TPM 2.0, as libtpms implements it, ``src/tpm2/PCR.c``):

* ``TPM2_Startup(CLEAR)``: PCRs 0-16 and 23 to zeros, 17-22 (the PCRs only
  locality 4 may reset: DRTM) to all ones, PCR 0's last byte the locality of
  the Startup (``CMD_SET_LOCALITY``; 0 unless set). After an H-CRTM sequence
  before Startup, PCR 0 keeps its value.
* ``TPM2_Startup(STATE)`` (resume): PCRs 0-15 are restored from the state
  saved at ``Shutdown(STATE)``, which the log does not show: **unknown**;
  16-23 as for CLEAR.
* ``TPM2_PCR_Extend``: the digests of the command's ``TPML_DIGEST_VALUES``
  (after the handle and the authorization area): ``new = H(old || digest)``.
* ``TPM2_PCR_Event``, ``TPM2_EventSequenceComplete``: the digests of the
  *response* (the event data of the command may be encrypted by a session).
* ``TPM2_PCR_Reset``: zeros in every bank.
* Control channel ``CMD_HASH_START`` (6), ``CMD_HASH_DATA`` (7),
  ``CMD_HASH_END`` (8) (swtpm's ``tpm_ioctl.h``): after Startup PCRs 17-22 to
  zeros, then PCR 17 extended with the hash of the data; before Startup
  (H-CRTM) PCR 0 set to ``0...04`` and extended.
* ``CMD_INIT`` (the TPM powered on again): everything unknown until Startup.

A value that cannot be known is ``None`` with the reason in ``why``, never
guessed: a run whose Startup is not in the log, ``Startup(STATE)``, a bank
whose hash this Python cannot compute, a damaged record (that PCR, or every
PCR when the damaged command cannot be identified), a PCR-changing command
without a response. A ``PCR_Read`` of an unknown value makes it known from
then on (``Check.status == "learned"``): the TPM said so, nothing is guessed.

TPM 1.2 logs are not replayed (their records are skipped).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

from ..swtpmlog.parser import Event, Kind, Record, RunStart
from .allocation import Selection
from .banks import Banks
from .pending import GET_PCR_ALLOCATION, SIZE_FIELDS, WATCHED, Pending, first_piece, kept, size_field, takes
from .types import (
    _U16,
    _U32,
    ALGORITHMS,
    CC_EVENT_SEQUENCE_COMPLETE,
    CC_GET_CAPABILITY,
    CC_PCR_ALLOCATE,
    CC_PCR_EVENT,
    CC_PCR_EXTEND,
    CC_PCR_READ,
    CC_PCR_RESET,
    CC_STARTUP,
    CMD_HASH_DATA,
    CMD_HASH_END,
    CMD_HASH_START,
    CMD_INIT,
    CMD_SET_LOCALITY,
    DRTM_PCR,
    DRTM_PCRS,
    HASHES,
    HASHLIB_NAME,
    HCRTM_PCR,
    PCR_COUNT,
    STANDARD_BANKS,
    STATE_SAVED_PCRS,
    SU_STATE,
    TAG_NO_SESSIONS,
    TAG_SESSIONS,
    TPM_CAP_PCRS,
    YES,
    Malformed,
    Outcome,
    RunState,
    Startup,
    _command_params,
    _response_params,
    _unknown_fills,
    bank_name,
    parse_digest_values,
    parse_pcr_selection,
)

if TYPE_CHECKING:
    from hashlib import _Hash

#: commands whose PCR handle (first handle) the command changes
_CHANGERS = frozenset({CC_PCR_EXTEND, CC_PCR_EVENT, CC_PCR_RESET, CC_EVENT_SEQUENCE_COMPLETE})
_NAMES = {
    CC_STARTUP: "Startup",
    CC_PCR_EXTEND: "PCR_Extend",
    CC_PCR_EVENT: "PCR_Event",
    CC_PCR_RESET: "PCR_Reset",
    CC_EVENT_SEQUENCE_COMPLETE: "EventSequenceComplete",
    CC_PCR_READ: "PCR_Read",
    CC_PCR_ALLOCATE: "PCR_Allocate",
}
_WATCHED_CTRL = frozenset(
    _U32.pack(c) for c in (CMD_INIT, CMD_SET_LOCALITY, CMD_HASH_START, CMD_HASH_DATA, CMD_HASH_END)
)
_SUCCESS = b"\0\0\0\0"


class Replayer(Banks):
    """Replays the PCR banks of every run from parser events (see the module doc)."""

    def __init__(self, *, detail: bool = False) -> None:
        super().__init__(detail=detail)
        self._cmd: Pending | None = None
        self._ctl: Record | None = None  # the last control command, until its response
        self._locality = 0
        self._drtm: dict[int, _Hash] | None = None  # alg -> running hash of the DRTM data
        self._drtm_data: bytes | None = None
        self._hcrtm = False

    # -- events ---------------------------------------------------------------

    def feed(self, events: Iterable[Event]) -> list[Outcome]:
        """Replay ``events`` (in log order); returns what changed and what was checked."""
        out: list[Outcome] = []
        watched = WATCHED
        sizes = SIZE_FIELDS
        tpm_command, tpm_response = Kind.TPM_COMMAND, Kind.TPM_RESPONSE
        ctrl_command, ctrl_response = Kind.CTRL_COMMAND, Kind.CTRL_RESPONSE
        run = self.state.run if self.state is not None else -1
        for ev in events:
            if type(ev) is Record:
                kind = ev[0]
                if ev[3] != run:
                    run = ev[3]
                    self._new_run(run, ev[2], out)
                if kind is tpm_command:
                    data = ev[1]
                    cmd = self._cmd
                    if cmd is not None:
                        if cmd.rest and takes(cmd, data):
                            cmd.add(data, _intact(ev))  # the rest of a command read in pieces
                            if not cmd.rest:
                                cmd.whole()
                                self._cmd = kept(cmd)
                            continue
                        self._unanswered(cmd, out)
                    if data[2:6] != sizes[len(data)]:  # not one whole command by its size field
                        self._cmd = first_piece(data, ev[2], _intact(ev))
                    elif data[6:10] in watched or data[6:14] == GET_PCR_ALLOCATION:
                        self._cmd = Pending(data, ev[2], _intact(ev))
                    elif ev[5] and not _intact(ev):
                        self._cmd = Pending(data, ev[2], False)
                    else:
                        self._cmd = None
                elif kind is tpm_response:
                    cmd = self._cmd
                    if cmd is not None:
                        self._cmd = None
                        self._answer(cmd, ev, out)
                elif kind is ctrl_command:
                    self._ctl = ev if ev[1][:4] in _WATCHED_CTRL or not _intact(ev) else None
                elif kind is ctrl_response:
                    ctl = self._ctl
                    if ctl is not None:
                        self._ctl = None
                        self._ctrl(ctl, ev, out)
            elif type(ev) is RunStart:
                run = ev.run
                self._new_run(run, ev.line, out)
        return out

    # -- runs -----------------------------------------------------------------

    def _new_run(self, run: int, line: int, out: list[Outcome]) -> None:
        why = f"run {run + 1} has no TPM2_Startup in the log before this"
        self._verified.clear()
        self._tpm_init()  # a new swtpm process, or CMD_INIT: the TPM was reset
        state = RunState(run, fills=_unknown_fills(line, why))
        for alg in STANDARD_BANKS:
            state.bank(alg)
        self.state = state
        self._cmd = self._ctl = None
        self._locality = 0
        self._drtm = None
        self._hcrtm = False

    def _tpm_init(self) -> None:
        """_TPM_Init: a PCR_Allocate since the last one takes effect."""
        if self.allocation.reset():
            self._learned.clear()

    # -- TPM commands -----------------------------------------------------------

    def _unanswered(self, cmd: Pending, out: list[Outcome]) -> None:
        """A command followed by another command: its response is not in the log."""
        if cmd.rest:
            why = f"only {len(cmd.whole())} of its bytes are in the log, and no response"
        else:
            why = "its response is not in the log"
        self._forget_target(cmd, 0, why, out)

    def _forget_target(self, cmd: Pending, answer: int, why: str, out: list[Outcome]) -> None:
        """The effect of ``cmd`` cannot be known: its PCR (or every PCR) is unknown."""
        data = cmd.data
        code = _command_code(data)
        if code in _CHANGERS:
            pcr = _U32.unpack_from(data, 10)[0] if len(data) >= 14 else -1
            where = f"{_NAMES[code]} at line {cmd.line}: {why}"
            if pcr < 0:
                self._unknown(range(PCR_COUNT), cmd.line, answer, where, out)
            elif pcr < PCR_COUNT:
                self._unknown([pcr], cmd.line, answer, where, out)
        elif code == CC_STARTUP or code < 0:
            # a Startup, or a command that cannot be identified: anything may have changed
            what = "Startup" if code == CC_STARTUP else "an unreadable command"
            self._unknown(range(PCR_COUNT), cmd.line, answer, f"{what} at line {cmd.line}: {why}", out)

    def _answer(self, cmd: Pending, rsp: Record, out: list[Outcome]) -> None:
        data, line, answer = cmd.whole(), cmd.line, rsp[2]
        if not cmd.intact:
            self._forget_target(cmd, answer, "damaged record", out)
            return
        response = rsp[1]
        if not _intact(rsp):
            self._forget_target(cmd, answer, f"its response (line {answer}) is damaged", out)
            return
        if response[6:10] != _SUCCESS:
            return
        if cmd.rest or cmd.bad:  # the TPM said success to a command the log does not hold whole
            if cmd.rest:
                why = f"only {len(data)} of its bytes are in the log"
                if len(data) >= 6:
                    why += f" (its header says {size_field(data)})"
            else:
                why = cmd.bad
            self._forget_target(cmd, answer, why, out)
            return
        code = _U32.unpack_from(data, 6)[0]
        try:
            if code == CC_PCR_READ:
                _, _, pos = _command_params(data, 0)
                self._read(data[pos:], response, line, answer, out)
            elif code == CC_PCR_EXTEND:
                _, (pcr,), pos = _command_params(data, 1)
                self._extend(pcr, parse_digest_values(data, pos), line, answer, "PCR_Extend", out)
            elif code == CC_PCR_EVENT or code == CC_EVENT_SEQUENCE_COMPLETE:
                _, handles, _ = _command_params(data, 1 if code == CC_PCR_EVENT else 2)
                digests = parse_digest_values(response, _response_params(response))
                self._extend(handles[0], digests, line, answer, _NAMES[code], out)
            elif code == CC_PCR_RESET:
                _, (pcr,), _ = _command_params(data, 1)
                if pcr < PCR_COUNT:
                    self._set([pcr], 0x00, None, line, answer, "reset", out)
            elif code == CC_STARTUP:
                _, _, pos = _command_params(data, 0)
                self._startup(_U16.unpack_from(data, pos)[0], line, answer, out)
            elif code == CC_GET_CAPABILITY:
                self._capability(data, response)
            elif code == CC_PCR_ALLOCATE:
                _, _, pos = _command_params(data, 1)
                selection, _ = parse_pcr_selection(data, pos)
                if response[_response_params(response)] == YES:  # allocationSuccess
                    self.allocation.allocate(selection)
        except (Malformed, struct.error, ValueError) as exc:
            self._forget_target(cmd, answer, f"cannot parse it: {exc}", out)

    def _startup(self, kind: int, line: int, answer: int, out: list[Outcome]) -> None:
        state = self.state
        assert state is not None
        state.started = True
        if kind == SU_STATE:
            out.append(Startup(state.run, line, answer, "state"))
            why = f"restored from the state saved at Shutdown(STATE), not in the log (Startup(STATE) at line {line})"
            self._unknown(STATE_SAVED_PCRS, line, answer, why, out, emit=False)
            reset = [p for p in range(PCR_COUNT) if p not in STATE_SAVED_PCRS]
        else:
            out.append(Startup(state.run, line, answer, "clear"))
            reset = [p for p in range(PCR_COUNT) if not (p == HCRTM_PCR and self._hcrtm)]
        low = [p for p in reset if p not in DRTM_PCRS]
        self._set([p for p in low if p != HCRTM_PCR], 0x00, None, line, answer, "startup", out, emit=False)
        if HCRTM_PCR in low:
            self._set([HCRTM_PCR], 0x00, self._locality, line, answer, "startup", out, emit=False)
        self._set([p for p in reset if p in DRTM_PCRS], 0xFF, None, line, answer, "startup", out, emit=False)
        self._hcrtm = False

    def _capability(self, command: bytes, response: bytes) -> None:
        _, _, pos = _command_params(command, 0)
        if _U32.unpack_from(command, pos)[0] != TPM_CAP_PCRS:
            return
        pos = _response_params(response) + 1
        if _U32.unpack_from(response, pos)[0] != TPM_CAP_PCRS:
            return
        self.allocation.set_all(_pcr_allocation(response[pos + 4 :]), ALGORITHMS)

    # -- the control channel ----------------------------------------------------

    def _ctrl(self, cmd: Record, rsp: Record, out: list[Outcome]) -> None:
        data, line, answer = cmd[1], cmd[2], rsp[2]
        code = _U32.unpack_from(data)[0] if len(data) >= 4 else -1
        ok = _intact(rsp) and rsp[1][:4] == _SUCCESS
        if not _intact(cmd) or code == -1:
            if self._drtm is not None:  # it may have been part of a DRTM sequence
                self._drtm = None
                self._unknown(DRTM_PCRS, line, answer, f"damaged control message at line {line}", out)
            return
        if code == CMD_INIT:
            if ok:
                self._tpm_init()
                state = self.state
                assert state is not None
                why = f"TPM re-initialised by CMD_INIT at line {line}; no TPM2_Startup after it yet"
                self._unknown(range(PCR_COUNT), line, answer, why, out, emit=False)
                state.started = False
                self._drtm = None
                self._hcrtm = False
        elif code == CMD_SET_LOCALITY:
            if ok and len(data) >= 5:
                self._locality = data[4]
        elif code == CMD_HASH_START:
            self._drtm = {alg: hashlib.new(HASHLIB_NAME.get(name, name))
                          for alg, (name, _) in ALGORITHMS.items() if alg in HASHES} if ok else None
        elif code == CMD_HASH_DATA:
            if self._drtm is not None:
                size = _U32.unpack_from(data, 4)[0] if len(data) >= 8 else -1
                if not _intact(rsp) or size != len(data) - 8:
                    self._drtm = None
                    self._unknown(DRTM_PCRS if self.started else [HCRTM_PCR], line, answer,
                                  f"damaged CMD_HASH_DATA at line {line}", out)
                elif ok:
                    for h in self._drtm.values():
                        h.update(data[8:])
        elif code == CMD_HASH_END and ok and self._drtm is not None:
            self._hash_end(line, answer, out)

    def _hash_end(self, line: int, answer: int, out: list[Outcome]) -> None:
        state = self.state
        assert state is not None and self._drtm is not None
        hashes = {alg: h.digest() for alg, h in self._drtm.items()}
        self._drtm = None
        if state.started:
            self._set(DRTM_PCRS, 0x00, None, line, answer, "reset", out)
            pcr = DRTM_PCR
        else:
            self._set([HCRTM_PCR], 0x00, 4, line, answer, "reset", out, emit=False)
            self._hcrtm = True
            pcr = HCRTM_PCR
        digests = [(alg, hashes[alg]) for alg in state.banks if alg in hashes]
        for alg in state.banks:
            if alg not in hashes:
                self._unknown([pcr], line, answer, f"this Python cannot compute {bank_name(alg)}", out)
        self._extend(pcr, digests, line, answer, "DRTM hash sequence", out)


@lru_cache(maxsize=64)
def _pcr_allocation(answer: bytes) -> Selection:
    """The TPML_PCR_SELECTION at the start of ``answer``, parsed once: a client may ask
    GetCapability(TPM_CAP_PCRS) before every command, the same answer each time."""
    return parse_pcr_selection(answer, 0)[0]


def _command_code(command: bytes) -> int:
    """A TPM 2.0 command's code, -1 when its header is unreadable."""
    if len(command) < 10 or _U16.unpack_from(command)[0] not in (TAG_NO_SESSIONS, TAG_SESSIONS):
        return -1
    return int(_U32.unpack_from(command, 6)[0])


def _intact(rec: Record) -> bool:
    return (not rec[5] and len(rec[1]) == rec[4]) or rec.intact
