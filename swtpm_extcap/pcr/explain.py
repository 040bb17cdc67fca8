"""Explanations: a failed authorization, or a policy session the client abandoned, in one
paragraph a user can act on: which command, session and object, the digest the object
wants and the one the session had, and for a PCR policy which PCR changed where (the
PCR history is searched for the values that give the wanted digest).

Called by :class:`~.policy.PolicyReplay` at the failing response, with itself as the
:class:`Replay` (the state at that moment). Digests are shown in full, lowercase hex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..tpm.commands import tpm2_command_name
from ..tpm.hashes import alg_name, digest, digest_size
from ..tpm.rc import (
    AUTH_FAIL,
    AUTH_UNAVAILABLE,
    BAD_AUTH,
    PCR_CHANGED,
    POLICY_CC,
    POLICY_FAIL,
    VALUE,
    decode,
)
from ..tpm.structures import (
    HT_POLICY_SESSION,
    TPM_RS_PW,
    Command,
    PcrSelection,
    read_digest_list,
    read_pcr_selection,
)
from ..tpm.tables import SHAPES
from .findings import Done, Explanation, PcrCause, Session
from .history import Change, PcrHistory
from .objects import Entity, Objects, describe_handle
from .policycommands import CC, NAMES, PolicyCall, describe_selection, pcr_update

_WHY = {
    "AUTH_TYPE": "the session type cannot authorize this handle",
    "AUTH_MISSING": "the command needs an authorization session for this handle and has none",
    "EXPIRED": "the policy session's time limit (PolicySecret/PolicySigned expiration) passed",
    "LOCALITY": "the command came from a locality the policy (PolicyLocality) does not allow",
    "LOCKOUT": "the TPM is in dictionary-attack lockout: wait, or reset it with the lockout"
               " authorization (tpm2_dictionarylockout)",
    "CPHASH": "the command's parameters do not match the cpHash the session was bound to",
    "POLICY": "the policy is not valid for this command",
    "NV_AUTHORIZATION": "the NV index does not allow this kind of authorization for this access",
}


class Replay(Protocol):
    """What an explanation reads of the policy replay at the failing response."""

    history: PcrHistory
    objects: Objects
    trials: list[Session]

    @property
    def run(self) -> int: ...

    def pcr_now(self, alg: int, pcr: int) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class _Found:
    step: Done
    run: int
    index: int
    state: tuple[Change, ...]
    digest: bytes  # the branch or authPolicy it gives


def _hex(value: bytes | None) -> str:
    return value.hex() if value is not None else "unknown"


def _steps(session: Session, upto: int | None = None) -> str:
    steps = session.steps[:upto]
    return ", ".join(s.describe() for s in steps) if steps else "no policy command"


def _session_digest(session: Session) -> str:
    if session.digest is None:
        return f"whose digest is not known to the replay ({session.why})"
    agrees = " (its PolicyGetDigest answer agrees)" if session.tpm_digest == session.digest else ""
    return f"whose digest after {_steps(session)} was {session.digest.hex()}{agrees}"


def _recompute(session: Session, upto: int, replaced: int, pcr_digest: bytes) -> bytes | None:
    """The session's digest after its first ``upto`` steps, with PolicyPCR step ``replaced``
    given ``pcr_digest``."""
    size = len(session.digest) if session.digest is not None else digest_size(session.alg)
    if size is None:
        return None
    value: bytes | None = bytes(size)
    for i, step in enumerate(session.steps[:upto]):
        update = step.update
        if i == replaced:
            assert step.call.selection is not None
            update = pcr_update(step.call.selection, pcr_digest)
        if update is None or value is None:
            return None
        value = update.apply(session.alg, value)
    return value


def search(replay: Replay, session: Session, targets: set[bytes], upto: int | None = None,
           until: int = 1 << 62) -> _Found | None:
    """A PCR state of the log that, in the session's PolicyPCR, gives one of ``targets``
    (newest first: this run, then older runs)."""
    upto = len(session.steps) if upto is None else upto
    for index, step in enumerate(session.steps[:upto]):
        selection = step.call.selection
        if selection is None:
            continue
        keys = selection.pcrs()
        seen: set[tuple[bytes, ...]] = set()
        for run, at, state in replay.history.states(keys, replay.run, until):
            values = tuple(c.value for c in state)
            if any(v is None for v in values) or values in seen:
                continue
            seen.add(values)  # type: ignore[arg-type]
            composite = digest(session.alg, b"".join(v for v in values if v is not None))
            if composite is None:
                return None
            got = _recompute(session, upto, index, composite)
            if got is not None and got in targets:
                return _Found(step, run, at, state, got)
    return None


def _causes(replay: Replay, found: _Found) -> list[PcrCause]:
    assert found.step.call.selection is not None
    keys = found.step.call.selection.pcrs()
    timeline = replay.history.timeline(keys, found.run, 1 << 62)
    out = []
    for k, (alg, pcr) in enumerate(keys):
        since = found.state[k]
        now = replay.pcr_now(alg, pcr)
        if since.value == now and found.run == replay.run:
            continue
        until = next((state[k] for state in timeline[found.index + 1 :]
                      if state[k] is not since), None)
        assert since.value is not None
        out.append(PcrCause(pcr, alg, since.value, now, since, until, found.run))
    return out


def _tell_causes(replay: Replay, found: _Found, causes: list[PcrCause]) -> str:
    assert found.step.call.selection is not None
    wanted = ", ".join(f"PCR {c.pcr} = {c.wanted.hex()}" for c in causes) or "the current PCR values"
    parts = []
    for c in causes:
        here = c.run == replay.run
        had = f"PCR {c.pcr} ({alg_name(c.alg)}) had that value from {c.since.describe()}"
        if here and c.until is not None:
            parts.append(f"{had} until {c.until.describe()} made it {_hex(c.until.value)}")
        elif here:
            parts.append(f"{had}; now it is {_hex(c.now)}")
        else:
            parts.append(f"in run {c.run + 1}, {had}" + (
                f" until {c.until.describe()}" if c.until is not None else "")
                + f"; in this run (run {replay.run + 1}) it is {_hex(c.now)}" + _parted(replay, c))
    return f"{found.step.call.describe()} with {wanted}: " + "; ".join(parts)


def _parted(replay: Replay, cause: PcrCause) -> str:
    """Where this run's history of the PCR leaves the one of the run that had the value."""
    key = [(cause.alg, cause.pcr)]
    then = [s[0] for s in replay.history.timeline(key, cause.run, 1 << 62)]
    now = [s[0] for s in replay.history.timeline(key, replay.run, 1 << 62)]
    upto = next((i for i, c in enumerate(then) if c is cause.since), len(then) - 1)
    for i, change in enumerate(now):
        if i > upto or i >= len(then) or change.value != then[i].value:
            return f", parted from run {cause.run + 1}'s at {change.describe()}"
    return ""


def _pcr_story(replay: Replay, session: Session, targets: set[bytes], upto: int | None,
               what: str, until: int) -> tuple[str, list[PcrCause]]:
    """' That authPolicy is PolicyPCR(...) with PCR 7 = ...: ...' or why none was found."""
    steps = session.steps[:upto]
    lost = next((s for s in steps if s.update is None and s.call.selection is None), None)
    if lost is not None:
        return (f" Which PCR values would give {what} cannot be searched: {lost.call.name}"
                f" is not known ({lost.why}).", [])
    if not any(s.call.selection is not None for s in steps):
        return "", []
    found = search(replay, session, targets, upto, until)
    if found is None:
        return (f" No PCR values the log shows give {what} with this session's policy commands"
                " (the values it wants are not in the log).", [])
    causes = _causes(replay, found)
    return f" {what[0].upper()}{what[1:]} is {_tell_causes(replay, found, causes)}.", causes


def _built_by(replay: Replay, wanted: bytes) -> str:
    trial = next((t for t in reversed(replay.trials)
                  if wanted in (t.digest, t.tpm_digest)), None)
    if trial is None:
        return ""
    return f" It is the digest that the {trial.describe()} computed with {_steps(trial)}."


def _entity_wants(entity: Entity | None, handle: int) -> tuple[str, bytes | None]:
    if entity is None:
        return f"the authPolicy of {describe_handle(handle)} is not in the log", None
    if not entity.auth_policy:
        return f"{entity.describe()} has an empty authPolicy (no policy can satisfy it)", b""
    return f"{entity.describe()} wants authPolicy {entity.auth_policy.hex()}", entity.auth_policy


def _head(cmd: Command, rc: int, line: int) -> str:
    return f"{NAMES.get(cmd.code) or _name(cmd.code)} at line {line} failed ({decode(rc)})"


def _name(code: int) -> str:
    name = tpm2_command_name(code)
    return name[len("TPM2_CC_"):] if name else f"command 0x{code:08x}"


def authorization_failure(replay: Replay, cmd: Command, rc: int, line: int,
                          answer: int) -> Explanation:
    """A command whose authorization failed (POLICY_FAIL, AUTH_FAIL, PCR_CHANGED ...)."""
    info = decode(rc)
    roles = SHAPES.get(cmd.code, (0, 0, ""))[2]
    index = info.session - 1 if info.session else next(
        (i for i, s in enumerate(cmd.sessions) if s.handle >> 24 == HT_POLICY_SESSION), 0)
    auth = cmd.sessions[index] if index < len(cmd.sessions) else None
    handle = cmd.handles[index] if index < len(cmd.handles) and index < len(roles) else 0
    entity = replay.objects.get(handle) if handle else None
    target = entity.describe() if entity is not None else describe_handle(handle) if handle else "it"
    session = replay_session(replay, auth.handle) if auth is not None else None
    head = _head(cmd, rc, line)
    base = info.base
    wanted: bytes | None = None
    causes: list[PcrCause] = []
    if session is not None and base == POLICY_CC:
        text = (f"{head}: {session.describe()} was limited to {_name(session.command_code)} by"
                f" PolicyCommandCode at line {session.command_code_line}; it cannot authorize"
                f" {_name(cmd.code)} of {target}.")
    elif session is not None and base == PCR_CHANGED:
        moved = _changes_since(replay, session.pcr_line, line)
        text = (f"{head}: PCRs changed after the PolicyPCR answered at line {session.pcr_line}"
                f" checked them in {session.describe()}: {moved}. Run the policy commands again.")
    elif session is not None and base in (AUTH_FAIL, BAD_AUTH):
        step = "PolicyPassword" if session.password else "PolicyAuthValue"
        how = "password" if session.password else "an HMAC keyed with the authValue"
        text = (f"{head}: {session.describe()} has {step}, so the command also needs {how} of"
                f" {target}; the one given does not match it (a wrong password){_da(base)}.")
    elif session is not None:
        wants, wanted = _entity_wants(entity, handle)
        text = f"{head}: it was authorized by {session.describe()}, {_session_digest(session)}; {wants}."
        if wanted and session.digest is not None and session.digest != wanted:
            story, causes = _pcr_story(replay, session, {wanted}, None, "that authPolicy", line)
            text += story + (_built_by(replay, wanted) if not causes else "")
        elif wanted and session.digest == wanted and base == POLICY_FAIL:
            text += (" The digests match: the TPM rejected another condition of the session"
                     " (a cpHash or nameHash it was bound to, or a trial session).")
    elif auth is not None and base in (AUTH_FAIL, BAD_AUTH):
        kind = ("the password (password session TPM_RS_PW)" if auth.handle == TPM_RS_PW
                else f"the HMAC of session 0x{auth.handle:08x}")
        text = (f"{head}: {kind} given for {target} does not match its authValue (a wrong"
                f" password){_da(base)}.")
    elif base == AUTH_UNAVAILABLE:
        wants, wanted = _entity_wants(entity, handle)
        text = (f"{head}: {target} cannot be authorized with a password or HMAC here (userWithAuth"
                f" or adminWithPolicy says a policy is needed): use a policy session; {wants}.")
    else:
        text = f"{head}: {_WHY.get(info.name[len('TPM_RC_'):], 'the TPM refused the authorization')}."
    return Explanation(replay.run, line, answer, "failure", _name(cmd.code), rc, text,
                       session.handle if session else 0, handle, wanted,
                       session.digest if session else None, tuple(causes))


def _da(base: int) -> str:
    return ("; the TPM's dictionary-attack protection counts this failure" if base == AUTH_FAIL
            else "; BAD_AUTH: the dictionary-attack protection does not count it")


def replay_session(replay: Replay, handle: int) -> Session | None:
    sessions: dict[int, Session] | None = getattr(replay, "sessions", None)
    return sessions.get(handle) if sessions is not None else None


def _changes_since(replay: Replay, since: int, until: int) -> str:
    changes = replay.history.changes_between(replay.run, since, until)
    if not changes:
        return "the log does not show which (a change the replay does not see)"
    shown = [f"PCR {pcr} ({alg_name(alg)}) by {c.describe()}" for alg, pcr, c in changes[:3]]
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return ", ".join(shown) + more


def policy_failure(replay: Replay, cmd: Command, rc: int, session: Session | None, line: int,
                   answer: int) -> Explanation:
    """A policy command the TPM refused."""
    info = decode(rc)
    head = _head(cmd, rc, line)
    name = NAMES[cmd.code]
    where = f" in {session.describe()}" if session is not None else ""
    causes: list[PcrCause] = []
    text = f"{head}{where}"
    if session is not None and cmd.code == CC["PolicyPCR"] and info.base == VALUE:
        given = _given_pcr_digest(cmd)
        text += (f": the pcrDigest it gave ({_hex(given)}, the hash of the PCR values the client"
                 " expects) is not that of the current PCRs.")
        if given:
            story, causes = _pcr_given(replay, session, cmd, given, line)
            text += story
    elif session is not None and cmd.code == CC["PolicyOR"] and info.base == VALUE:
        branches = _or_list(cmd)
        text += (f": the session's digest before it ({_hex(session.digest)}) is none of its"
                 f" {len(branches)} branches ({', '.join(b.hex() for b in branches)}).")
        story, causes = _pcr_story(replay, session, set(branches), None, "the branch it matches", line)
        text += story.replace("The branch it matches is", "A branch is")
    elif cmd.code in (CC["PolicySecret"], CC["PolicyNV"], CC["PolicyAuthorizeNV"]) and info.base in (
            AUTH_FAIL, BAD_AUTH):
        handle = cmd.handles[0]
        entity = replay.objects.get(handle)
        target = entity.describe() if entity is not None else describe_handle(handle)
        text += (f": the password or HMAC given for {target} does not match its authValue (a wrong"
                 f" password){_da(info.base)}; the session's digest stays {_hex(session.digest) if session else 'unknown'},"
                 " so it cannot satisfy a policy that needs this " + name + ".")
    elif info.base == PCR_CHANGED and session is not None:
        text += (f": PCRs changed since an earlier PolicyPCR of this session (answered at line"
                 f" {session.pcr_line}): {_changes_since(replay, session.pcr_line, line)}.")
    else:
        reason = _WHY.get(info.name[len("TPM_RC_"):], "")
        text += f": {reason}." if reason else f" ({name}'s condition does not hold)."
    return Explanation(replay.run, line, answer, "failure", name, rc, text,
                       session.handle if session else 0, 0, None,
                       session.digest if session else None, tuple(causes))


def _given_pcr_digest(cmd: Command) -> bytes | None:
    try:
        return cmd.reader().tpm2b("pcrDigest")
    except ValueError:
        return None


def _or_list(cmd: Command) -> tuple[bytes, ...]:
    try:
        return read_digest_list(cmd.reader())
    except ValueError:
        return ()


def _pcr_given(replay: Replay, session: Session, cmd: Command, given: bytes,
               line: int) -> tuple[str, list[PcrCause]]:
    """PolicyPCR refused its pcrDigest: the PCR state that gives that digest."""
    r = cmd.reader()
    r.tpm2b("pcrDigest")
    selection = read_pcr_selection(r)
    step = Done(_probe_call(cmd.code, session.handle, selection), line, line, None, None)
    found = None
    keys = selection.pcrs()
    for run, at, state in replay.history.states(keys, replay.run, line):
        values = [c.value for c in state]
        if any(v is None for v in values):
            continue
        if digest(session.alg, b"".join(v for v in values if v is not None)) == given:
            found = _Found(step, run, at, state, given)
            break
    if found is None:
        return " No PCR values the log shows give that pcrDigest (the values it expects are not in the log).", []
    causes = _causes(replay, found)
    return f" That is {_tell_causes(replay, found, causes)}.", causes


def _probe_call(code: int, handle: int, selection: PcrSelection) -> PolicyCall:
    return PolicyCall(code, handle, describe_selection(selection), None, selection=selection)


def abandoned(replay: Replay, session: Session, how: str, line: int,
              answer: int) -> Explanation | None:
    """A policy session flushed unused: a failure the client saw, when its digest is not the
    authPolicy of the object loaded before it was started."""
    had = session.tpm_digest if session.tpm_digest is not None else session.digest
    if had is None:
        return None
    candidates = [e for e in replay.objects.handles.values()
                  if e.auth_policy and len(e.auth_policy) == len(had) and e.line < session.line]
    if not candidates or any(e.auth_policy in (had, session.digest) for e in candidates):
        return None
    entity = max(candidates, key=lambda e: e.line)
    wanted = entity.auth_policy
    text = (f"The {session.describe()} {how}: its {_session_digest(session)[len('whose '):]},"
            f" but {entity.describe()} wants authPolicy {wanted.hex()}, so the client gave up"
            " before using it.")
    story, causes = _pcr_story(replay, session, {wanted}, None, "that authPolicy", line or 1 << 62)
    text += story + (_built_by(replay, wanted) if not causes else "")
    return Explanation(replay.run, line, answer, "abandoned", "FlushContext", 0, text,
                       session.handle, entity.handle, wanted, had, tuple(causes))
