"""The policy replay on real recorded sessions (tests/data/policy, README there).

Every digest an explanation shows is recomputed here independently, with hashlib over
the specification's formulas (TPM 2.0 Part 3: PolicyPCR, PolicyOR, PolicyCommandCode,
PolicyAuthValue, PolicySecret's PolicyUpdate), from the values the recording script
extended, and compared with the policy files tpm2-tools wrote on the client side
(``<scenario>.truth.json``). Damage makes a digest unknown, with its reason; a mutated log
never raises.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import struct
from pathlib import Path

import pytest

import fuzzlog
from conftest import run_cli
from swtpm_extcap.pcr.findings import DigestCheck, Explanation, Finding
from swtpm_extcap.pcr.policy import PolicyReplay
from swtpm_extcap.swtpmlog.parser import Kind, Record, parse_bytes

pytestmark = pytest.mark.fast

DATA = Path(__file__).parent / "data" / "policy"
SCENARIOS = sorted(p.stem for p in DATA.glob("*.log"))


def sha256(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def cc(code: int) -> bytes:
    return struct.pack(">I", code)


ZERO = bytes(32)
SEL7 = bytes.fromhex("00000001000b03800000")  # TPML_PCR_SELECTION: sha256, PCR 7
#: PCR 7 after the recording's firmware (record.py FIRMWARE: b7, then d7)
PCR7 = sha256(sha256(ZERO, b"\xb7" * 32), b"\xd7" * 32)


def policy_pcr(old: bytes, values: bytes) -> bytes:
    return sha256(old, cc(0x17F), SEL7, sha256(values))


def policy_or(*branches: bytes) -> bytes:
    return sha256(ZERO, cc(0x171), *branches)


def replay(name: str) -> tuple[list[Explanation], list[DigestCheck]]:
    r = PolicyReplay()
    _, found = r.feed(parse_bytes((DATA / f"{name}.log").read_bytes()))
    found += r.finish()
    return ([f for f in found if type(f) is Explanation], [f for f in found if type(f) is DigestCheck])


def truth(name: str) -> dict[str, str]:
    files: dict[str, str] = json.loads((DATA / f"{name}.truth.json").read_text())["files"]
    return files


def command_lines(name: str, code: int, data: bytes | None = None) -> list[int]:
    raw = data if data is not None else (DATA / f"{name}.log").read_bytes()
    return [ev.line for ev in parse_bytes(raw) if type(ev) is Record and ev.kind is Kind.TPM_COMMAND
            and int.from_bytes(ev.data[6:10], "big") == code]


def extend_line(name: str, digest_byte: int) -> int:
    """The log line of the PCR_Extend whose digest is ``digest_byte`` * 32."""
    data = (DATA / f"{name}.log").read_bytes()
    return next(ev.line for ev in parse_bytes(data) if type(ev) is Record
                and ev.kind is Kind.TPM_COMMAND and ev.data[6:10] == cc(0x182)
                and ev.data.endswith(bytes([digest_byte]) * 32))


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_policygetdigest_matches_the_replay(name: str) -> None:
    _, checks = replay(name)
    assert checks, "the scenario has PolicyGetDigest answers"
    assert [c for c in checks if c.status != "match"] == []
    assert all(c.replay == c.tpm for c in checks)


def test_pcr_seal_names_the_extend_that_broke_the_unseal() -> None:
    explanations, _ = replay("pcr-seal")
    (e,) = explanations
    wanted = policy_pcr(ZERO, PCR7)
    assert wanted.hex() == truth("pcr-seal")["pcr7.policy"]  # what tpm2-tools computed
    now = sha256(PCR7, b"\xe7" * 32)
    assert (e.kind, e.command, e.rc) == ("failure", "Unseal", 0x99D)
    assert e.wanted == wanted and e.had == policy_pcr(ZERO, now)
    assert e.had.hex() == truth("pcr-seal")["second.policy"]
    (cause,) = e.causes
    assert (cause.pcr, cause.wanted, cause.now) == (7, PCR7, now)
    line = extend_line("pcr-seal", 0xE7)
    assert cause.until is not None and cause.until.command_line == line
    assert cause.since.command_line == extend_line("pcr-seal", 0xD7)
    assert f"until extend #5 at line {line} (PCR_Extend, digest {'e7' * 32}) made it {now.hex()}" in e.text
    assert f"PCR 7 = {PCR7.hex()}" in e.text
    assert e.text.startswith(f"Unseal at line {command_lines('pcr-seal', 0x15E)[-1]} failed"
                             " (TPM_RC_POLICY_FAIL, session 1)")


def test_policy_or_of_two_pcr_states() -> None:
    explanations, _ = replay("pcr-or")
    state_b = sha256(PCR7, b"\xf1" * 32)
    a, b = policy_pcr(ZERO, PCR7), policy_pcr(ZERO, state_b)
    files = truth("pcr-or")
    assert (a.hex(), b.hex(), policy_or(a, b).hex()) == (files["a.policy"], files["b.policy"],
                                                           files["or.policy"])
    (e,) = explanations  # the unseals in states A and B succeeded
    assert (e.command, e.rc) == ("PolicyOR", 0x1C4)  # TPM_RC_VALUE, parameter 1
    assert f"({a.hex()}, {b.hex()})" in e.text
    (cause,) = e.causes
    assert cause.wanted == state_b  # the newest state that satisfies a branch
    assert cause.until is not None and cause.until.command_line == extend_line("pcr-or", 0xF2)


def test_policy_authvalue_and_commandcode() -> None:
    explanations, checks = replay("command-code")
    policy = sha256(sha256(ZERO, cc(0x16B)), cc(0x16C), cc(0x15E))
    assert policy.hex() == truth("command-code")["cc.policy"]
    assert policy in [c.tpm for c in checks]
    wrong_password, wrong_command = explanations
    assert (wrong_password.command, wrong_password.rc) == ("Unseal", 0x98E)  # AUTH_FAIL, session 1
    assert "has PolicyAuthValue" in wrong_password.text and "wrong password" in wrong_password.text
    assert (wrong_command.command, wrong_command.rc) == ("ObjectChangeAuth", 0x9A4)  # POLICY_CC
    assert "limited to Unseal by PolicyCommandCode" in wrong_command.text


def test_policy_secret_with_a_wrong_password() -> None:
    explanations, checks = replay("policy-secret")
    owner = cc(0x40000001)  # TPM_RH_OWNER: its Name is its handle
    policy = sha256(sha256(ZERO, cc(0x151), owner), b"")  # PolicyUpdate: policyRef empty
    assert policy.hex() == truth("policy-secret")["secret.policy"]
    assert policy in [c.tpm for c in checks]
    (e,) = explanations
    assert (e.command, e.rc) == ("PolicySecret", 0x9A2)  # BAD_AUTH, session 1
    assert "the owner hierarchy (TPM_RH_OWNER)" in e.text and "wrong password" in e.text


def test_policy_on_an_nv_index() -> None:
    explanations, _ = replay("nv-policy")
    write = sha256(ZERO, cc(0x16C), cc(0x137))
    read = sha256(policy_pcr(ZERO, PCR7), cc(0x16C), cc(0x14E))
    files = truth("nv-policy")
    assert (write.hex(), read.hex(), policy_or(write, read).hex()) == (
        files["write.policy"], files["read.policy"], files["nv.policy"])
    (e,) = explanations  # the failed PolicyOR; the session it leaves is not explained again
    assert e.command == "PolicyOR" and f"({write.hex()}, {read.hex()})" in e.text
    (cause,) = e.causes
    assert cause.wanted == PCR7
    assert cause.until is not None and cause.until.command_line == extend_line("nv-policy", 0x99)


def test_cryptenroll_like_pcrdigest_given() -> None:
    explanations, _ = replay("cryptenroll")
    assert truth("cryptenroll")["enrolled.bin"] == PCR7.hex()
    (e,) = explanations
    assert (e.command, e.rc) == ("PolicyPCR", 0x1C4)
    assert f"the pcrDigest it gave ({sha256(PCR7).hex()}" in e.text
    (cause,) = e.causes
    assert cause.wanted == PCR7 and cause.now == sha256(PCR7, b"\x5e" * 32)
    assert cause.until is not None and cause.until.command_line == extend_line("cryptenroll", 0x5E)


def test_systemd_creds_abandoned_sessions() -> None:
    explanations, checks = replay("systemd-creds")
    wanted = policy_pcr(ZERO, PCR7)
    now = sha256(PCR7, b"\xee" * 32)
    flushed, at_end = explanations
    for e in (flushed, at_end):
        assert e.kind == "abandoned" and e.wanted == wanted
        assert e.had == policy_pcr(ZERO, now)  # systemd's PolicyGetDigest said the same
        (cause,) = e.causes
        assert cause.until is not None and cause.until.command_line == extend_line("systemd-creds", 0xEE)
    assert flushed.answer and "was flushed at line" in flushed.text
    assert at_end.answer == 0 and "at the end of the log" in at_end.text
    assert [c.tpm for c in checks][:2] == [wanted, wanted]  # encrypt, then the first decrypt


def test_pcr_changed_between_policypcr_and_the_unseal() -> None:
    explanations, _ = replay("pcr-changed")
    (e,) = explanations
    assert (e.command, e.rc) == ("Unseal", 0x128)  # TPM_RC_PCR_CHANGED
    line = extend_line("pcr-changed", 0xC8)
    assert f"PCR 7 (sha256) by extend #5 at line {line} (PCR_Extend, digest {'c8' * 32})" in e.text


# ------------------------------------------------------------------ unknowns, damage


def _damage(data: bytes, line: int) -> bytes:
    """The hex line after ``line`` cut short: the record is damaged."""
    lines = data.split(b"\n")
    lines[line] = lines[line][: len(lines[line]) // 2]
    return b"\n".join(lines)


def test_a_damaged_policy_command_makes_the_digest_unknown() -> None:
    data = (DATA / "pcr-seal.log").read_bytes()
    second = command_lines("pcr-seal", 0x17F, data)[-1]
    r = PolicyReplay()
    _, found = r.feed(parse_bytes(_damage(data, second)))
    check = [f for f in found if type(f) is DigestCheck][-1]
    assert check.status == "unknown" and check.replay is None
    assert f"line {second} is damaged" in check.why
    (e,) = [f for f in found if type(f) is Explanation]
    # the TPM's PolicyGetDigest answer gives the digest again; which PolicyPCR made it is
    # not known: no PCR state is searched for, none is guessed
    assert e.had == check.tpm and e.causes == ()
    assert f"a damaged command is not known (a record at line {second} is damaged)" in e.text


def test_a_session_started_before_the_log_is_unknown() -> None:
    data = (DATA / "pcr-seal.log").read_bytes()
    start = command_lines("pcr-seal", 0x17F, data)[-1]  # from the second PolicyPCR on
    tail = b"\n".join(data.split(b"\n")[start - 2 :])
    r = PolicyReplay()
    _, found = r.feed(parse_bytes(tail))
    check = [f for f in found if type(f) is DigestCheck][0]
    assert check.status == "unknown" and "StartAuthSession is not in the log" in check.why


def test_a_pcr_the_replay_does_not_know_makes_policypcr_unknown() -> None:
    """systemd gives no pcrDigest: the digest comes from the replayed PCR 7, unknown here
    (the log starts after the Startup, and the PCR_Read answers that would tell the value
    are damaged)."""
    data = (DATA / "systemd-creds.log").read_bytes()
    startup = command_lines("systemd-creds", 0x144, data)[0]
    for read in command_lines("systemd-creds", 0x17E, data):
        data = _damage(data, read + 4)  # the response's hex line
    tail = b"\n".join(data.split(b"\n")[startup + 4 :])
    r = PolicyReplay()
    _, found = r.feed(parse_bytes(tail))
    check = [f for f in found if type(f) is DigestCheck][0]
    assert check.status == "unknown" and "the replay does not know PCR 7" in check.why, check


def test_mutated_logs_never_raise() -> None:
    corpus = Path(__file__).parent / "data" / "corpus"
    logs = [(p.name, p.read_bytes().split(b"\n"))
            for p in [*sorted(DATA.glob("*.log")), *sorted(corpus.glob("proxmox-*.log"))]]
    for seed in range(600):
        case = fuzzlog.make_case(seed, logs)
        r = PolicyReplay()
        found: list[Finding] = []
        for event in fuzzlog.parse_chunks(case.data, random.Random(seed)):
            found += r.feed([event])[1]  # one event at a time: every batch boundary
        found += r.finish()
        found += PolicyReplay().feed(fuzzlog.parse_whole(case.data))[1]
        for f in found:
            assert "\n" not in (f.text if type(f) is Explanation else f.why), case


class _GenericOnly(PolicyReplay):
    """The replay without its plain path: every command through the generic parser."""

    def _plain(self, *args: object) -> bool:
        return False


def _state(r: PolicyReplay, found: list[Finding]) -> tuple[object, ...]:
    return (found, r.objects.handles, list(r.objects._saved.items()), r.sessions, r.trials)


def test_the_plain_path_reads_as_the_generic_one() -> None:
    """ContextSave, ContextLoad, FlushContext, ReadPublic and StartAuthSession in the plain
    shape skip parse_command/parse_response: the same objects, sessions and findings,
    also on mutated logs (cut, short, wrong sizes and tags, failures)."""
    corpus = Path(__file__).parent / "data" / "corpus"
    logs = [(p.name, p.read_bytes().split(b"\n"))
            for p in [*sorted(DATA.glob("*.log")), *sorted(corpus.glob("proxmox-*.log"))]]
    cases = [b"\n".join(lines) for _, lines in logs]
    cases += [fuzzlog.make_case(seed, logs).data for seed in range(300)]
    for data in cases:
        events = fuzzlog.parse_whole(data)
        fast, generic = PolicyReplay(), _GenericOnly()
        found = fast.feed(events)[1] + fast.finish()
        assert _state(fast, found) == _state(generic, generic.feed(events)[1] + generic.finish())


# ----------------------------------------------------------------- where users see it


def test_explain_command_text_and_json() -> None:
    log = DATA / "pcr-seal.log"
    proc = run_cli(["explain", str(log)])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    assert text.startswith(f"{log}: 1 failed authorization explained, 0 abandoned policy sessions;"
                           " PolicyGetDigest: 3 answers, 3 match the replay")
    assert re.search(r"^line \d+ \(run 1\), failure:$", text, re.M)
    proc = run_cli(["explain", "--json", str(log)])
    doc = json.loads(proc.stdout)
    (e,) = doc["explanations"]
    assert (e["command"], e["rc"], e["wanted"]) == ("Unseal", "0x99d", policy_pcr(ZERO, PCR7).hex())
    assert e["pcrs"][0]["until_line"] == extend_line("pcr-seal", 0xE7)
    assert [c["status"] for c in doc["checks"]] == ["match"] * 3
    assert run_cli(["explain", str(DATA / "missing.log")]).returncode == 1
