"""The plugin's TPM 2.0 decoder ("tpm2", swtpm/tpm2.lua) in a real tshark.

Captures: the corpus logs, the recorded firmware boot and tpm2-tools session
(tests/data/recordings) converted by the package, the session's client-side
pcap (tpm2-tss pcap TCTI: other addresses, a section per tool run), and
messages made here from the specification's examples and from damage done to
real messages. Every tshark runs under an empty ``$HOME`` (luatshark.py).
"""

from __future__ import annotations

import random
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from conftest import CorpusLog, write_pcapng

from luatshark import (
    LUA,
    RAW,
    Message,
    clean_env,
    fields_of,
    messages_pcapng,
    pdml_packets,
    tpm2_messages,
    tshark,
)

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO / "tests" / "data" / "recordings"
FIRMWARE = RECORDINGS / "ovmf-secboot-proxmox-swtpm.log"
SESSION = RECORDINGS / "tpm2-tools-session-swtpm.log"
CLIENT_PCAP = RECORDINGS / "tpm2-tools-session-client.pcapng"

#: expert items that say a message was not read as its layout says
DAMAGE = ("tpm2.truncated", "tpm2.size_mismatch", "tpm2.unknown_selector", "tpm2.trailing",
          "tpm2.unknown_command", "tpm2.undecoded")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return clean_env(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The recordings as captures: converted logs and the client's own pcap."""
    folder = tmp_path_factory.mktemp("recorded")
    out = {"client": CLIENT_PCAP}
    for name, log in (("firmware", FIRMWARE), ("session", SESSION)):
        out[name] = write_pcapng(log.read_bytes(), folder / f"{name}.pcapng", start_us=1_700_000_000_000_000)
    return out


def _covered(msg: Message) -> set[int]:
    covered: set[int] = set()
    for name, off, size, _ in msg.leaves():
        if name != "tpm2.undecoded":
            covered.update(range(off, off + size))
    return covered


def _check_coverage(messages: list[Message]) -> tuple[int, int]:
    assert messages
    total = covered = 0
    for msg in messages:
        got = _covered(msg)
        missing = sorted(set(range(len(msg.data))) - got)
        assert not missing, (msg.frame, missing[:16], msg.data.hex())
        assert not (msg.names & {"_ws.malformed", "_ws.lua", *DAMAGE}), (msg.frame, msg.names & {"_ws.malformed", *DAMAGE})
        assert "Lua Error" not in msg.text and "Dissector bug" not in msg.text, msg.frame
        total += len(msg.data)
        covered += len(got & set(range(len(msg.data))))
    return covered, total


# ------------------------------------------------------------------ coverage


def test_every_byte_of_the_corpus_in_a_named_field(corpus_log: CorpusLog, converted, env) -> None:
    messages = tpm2_messages(pdml_packets(env, converted(corpus_log)))
    if corpus_log.truth["tpm_version"] == "1.2":
        assert all(len(m.data) >= 10 for m in messages)  # QEMU's probes answered by TPM 2.0 style
    if messages:
        covered, total = _check_coverage(messages)
        assert covered == total


@pytest.mark.parametrize("name", ["firmware", "session", "client"])
def test_every_byte_of_the_recordings_in_a_named_field(name: str, recorded, env) -> None:
    messages = tpm2_messages(pdml_packets(env, recorded[name]))
    covered, total = _check_coverage(messages)
    assert covered == total
    if name == "session":  # the recording's promise: >= 60 command codes, some failing
        codes = {int.from_bytes(m.data[6:10], "big") for m in messages
                 if int.from_bytes(m.data[6:10], "big") >= 0x11F and m.data[:2] in (b"\x80\x01", b"\x80\x02")
                 and "tpm2.commandCode" in {f for f, *_ in m.leaves()}}
        assert len(codes) >= 60, len(codes)


def test_the_recordings_pair_and_name_every_response(recorded, env) -> None:
    """Pairing by TCP conversation: the client's pcap has new random addresses for
    every tool run, the swtpm capture one connection; every response names its command."""
    for name in ("client", "session", "firmware"):
        out = tshark(env, "-r", str(recorded[name]), "-Y", "tpm2 && tcp.srcport == 2321",
                     "-T", "fields", "-e", "swtpm.cc", "-e", "swtpm.no_request", "-e", "_ws.col.Info")
        rows = [line.split("\t") for line in out.splitlines()]
        assert rows
        assert all(r[0] and not r[1] and "(no request)" not in r[2] for r in rows), name


# ------------------------------------------------------------------ response codes


#: TPM 2.0 Part 2, TPM_RC (and Part 1's examples): (code, name, handle, parameter, session)
SPEC_CODES = [
    (0x99D, "TPM_RC_POLICY_FAIL", None, None, 1),
    (0x182, "TPM_RC_ATTRIBUTES", 1, None, None),
    (0x922, "TPM_RC_RETRY", None, None, None),
    (0x101, "TPM_RC_FAILURE", None, None, None),
    (0x18B, "TPM_RC_HANDLE", 1, None, None),
    (0x1C4, "TPM_RC_VALUE", None, 1, None),
    (0x98E, "TPM_RC_AUTH_FAIL", None, None, 1),
    (0x2C4, "TPM_RC_VALUE", None, 2, None),
    (0x284, "TPM_RC_VALUE", 2, None, None),
    (0x100, "TPM_RC_INITIALIZE", None, None, None),
    (0x908, "TPM_RC_YIELDED", None, None, None),
]


def _response(rc: int) -> bytes:
    return bytes.fromhex("8001") + (10).to_bytes(4, "big") + rc.to_bytes(4, "big")


def test_response_codes_of_the_specification(tmp_path: Path, env) -> None:
    request = bytes.fromhex("80010000000c000001440000")  # Startup(CLEAR)
    msgs = []
    for code, *_ in SPEC_CODES:
        msgs += [request, _response(code)]
    pcap = messages_pcapng(tmp_path / "rc.pcapng", msgs)
    names = ["tpm2.responseCode", "tpm2.rc.name", "tpm2.rc.handle", "tpm2.rc.parameter", "tpm2.rc.session",
             "tpm2.rc.format", "tpm2.rc.warning", "_ws.col.Info", "_ws.expert.severity", "tpm.resp.rc"]
    args = ["-r", str(pcap), "-Y", "tcp.srcport == 2321", "-T", "fields", "-E", "occurrence=f"]
    for n in names:
        args += ["-e", n]
    rows = [dict(zip(names, line.split("\t"))) for line in tshark(env, *args).splitlines()]
    assert len(rows) == len(SPEC_CODES)
    for row, (code, name, handle, parameter, session) in zip(rows, SPEC_CODES):
        assert int(row["tpm2.responseCode"], 16) == code
        assert int(row["tpm.resp.rc"], 16) == code  # Wireshark's own name for it
        assert row["tpm2.rc.name"] == name, row
        assert row["tpm2.rc.handle"] == (str(handle) if handle else ""), row
        assert row["tpm2.rc.parameter"] == (str(parameter) if parameter else ""), row
        assert row["tpm2.rc.session"] == (str(session) if session else ""), row
        assert row["tpm2.rc.format"] == ("1" if code & 0x80 else "0")
        assert row["tpm2.rc.warning"] == ("1" if code in (0x922, 0x908) else "")
        number = (f" (handle {handle})" if handle else f" (parameter {parameter})" if parameter
                  else f" (session {session})" if session else "")
        assert f"TPM_CC_Startup: {name}{number}, len(10)" in row["_ws.col.Info"]
        assert row["_ws.expert.severity"], row  # the failed response's Expert Info (error)


def test_every_failed_response_has_an_expert_info_error(recorded, env) -> None:
    out = tshark(env, "-r", str(recorded["session"]), "-Y", "tpm2.responseCode != 0",
                 "-T", "fields", "-e", "tpm2.failed", "-e", "_ws.expert.severity", "-e", "_ws.expert.message")
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) >= 8
    for row in rows:
        assert "failed:" in row[2], row
    assert any("TPM_CC_Unseal failed: TPM_RC_POLICY_FAIL (session 1)" in r[2] for r in rows)


# ------------------------------------------------------------------ structures


def _fields(env, pcap: Path, flt: str, names: list[str], occurrence: str = "a") -> list[dict[str, str]]:
    args = ["-2", "-r", str(pcap), "-Y", flt, "-T", "fields", "-E", f"occurrence={occurrence}",
            "-E", "aggregator=|"]
    for n in names:
        args += ["-e", n]
    return [dict(zip(names, line.split("\t"))) for line in tshark(env, *args).splitlines()]


def test_a_pcr_selection_reads_as_banks_and_pcrs(tmp_path: Path, env) -> None:
    # PCR_Read(sha256: PCR 0, 7, 14; sha1: PCR 0)
    sel = bytes.fromhex("00000002" "000b03" "814000" "000403" "010000")
    cmd = bytes.fromhex("8001") + (10 + len(sel)).to_bytes(4, "big") + bytes.fromhex("0000017e") + sel
    pcap = messages_pcapng(tmp_path / "pcr.pcapng", [cmd])
    row = _fields(env, pcap, "tpm2", ["_ws.col.Info", "tpm2.pcr", "tpm2.hash", "tpm2.count"])[0]
    assert row["_ws.col.Info"] == "[TPM Request] TPM_CC_PCR_Read sha256: PCR 0, 7, 14; sha1: PCR 0, len(26)"
    assert row["tpm2.pcr"] == "0|7|14|0"
    assert row["tpm2.hash"] == "0x000b|0x0004"
    out = tshark(env, "-r", str(pcap), "-V", "-O", "tpm2")
    assert "pcrSelectionIn: sha256: PCR 0, 7, 14; sha1: PCR 0" in out
    assert "pcrSelections: sha256: PCR 0, 7, 14" in out


def test_a_public_area_shows_type_attributes_parameters_unique(recorded, env) -> None:
    rows = _fields(env, recorded["session"], "tpm2.commandCode == 0x131 && tpm2.inPublic",
                   ["tpm2.type", "tpm2.nameAlg", "tpm2.objectAttributes", "tpm2.TPMA_OBJECT.fixedTPM",
                    "tpm2.TPMA_OBJECT.restricted", "tpm2.keyBits", "tpm2.exponent", "tpm2.curveID",
                    "tpm2.rsa", "tpm2.algorithm"])
    assert rows
    rsa = next(r for r in rows if r["tpm2.type"] == "0x0001")
    assert rsa["tpm2.nameAlg"] == "0x000b" and rsa["tpm2.TPMA_OBJECT.fixedTPM"] == "1"
    assert rsa["tpm2.TPMA_OBJECT.restricted"] == "1" and rsa["tpm2.keyBits"] == "2048"
    ecc = next(r for r in rows if r["tpm2.type"] == "0x0023")
    assert ecc["tpm2.curveID"] == "0x0003"  # TPM_ECC_NIST_P256
    out = tshark(env, "-r", str(recorded["session"]), "-V", "-O", "tpm2", "-Y",
                 "tpm2.commandCode == 0x131 && tpm2.type == 0x0001")
    assert re.search(r"inPublic: TPM_ALG_RSA, nameAlg TPM_ALG_SHA256|publicArea", out) or "inPublic" in out
    assert "rsaDetail" in out and "objectAttributes" in out and "restricted: True" in out


def test_a_capability_answer_names_its_properties(recorded, env) -> None:
    out = tshark(env, "-r", str(recorded["session"]), "-V", "-O", "tpm2", "-Y",
                 "tpm2.capability == 6 && tcp.srcport == 2321")
    for name in ("TPM_PT_FAMILY_INDICATOR", "TPM_PT_VENDOR_TPM_TYPE", "TPM_PT_FIRMWARE_VERSION_1",
                 "TPM_PT_INPUT_BUFFER", "TPM_PT_MAX_DIGEST", "TPM_PT_NV_BUFFER_MAX"):
        assert f"property: {name} (" in out, name
    algs = tshark(env, "-r", str(recorded["session"]), "-V", "-O", "tpm2", "-Y",
                  "tpm2.capability == 0 && tcp.srcport == 2321")
    assert "alg: TPM_ALG_RSA (0x0001)" in algs and "TPMA_ALGORITHM.asymmetric" not in algs


def test_handles_by_type_and_name(recorded, env) -> None:
    rows = _fields(env, recorded["session"], "tpm2.commandCode == 0x14e",
                   ["tpm2.authHandle", "tpm2.nvIndex", "tpm2.handle.type", "tpm.handle.TPMI_RH_NV_INDEX"])
    assert rows
    for row in rows:
        assert row["tpm2.nvIndex"].startswith("0x015000")
        assert row["tpm.handle.TPMI_RH_NV_INDEX"] == row["tpm2.nvIndex"]
        assert "0x01" in row["tpm2.handle.type"].split("|")  # NV index
    out = tshark(env, "-r", str(recorded["session"]), "-V", "-O", "tpm2", "-Y", "tpm2.commandCode == 0x14e")
    assert "nvIndex: NV index (0x01500" in out and "authHandle: TPM_RH_OWNER (0x40000001)" in out


def test_sessions_and_their_attributes(recorded, env) -> None:
    rows = _fields(env, recorded["session"], "tpm2.sessionAttributes",
                   ["tpm2.sessionHandle", "tpm2.TPMA_SESSION.continueSession", "tpm2.TPMA_SESSION.decrypt",
                    "tpm2.TPMA_SESSION.encrypt", "tpm.auth_attribs_decrypt"])
    assert rows
    assert any("0x40000009" in r["tpm2.sessionHandle"] for r in rows)  # TPM_RS_PW
    assert any("0x03" in r["tpm2.sessionHandle"] for r in rows)  # a policy session
    assert any("1" in r["tpm2.TPMA_SESSION.decrypt"].split("|") for r in rows)
    assert all(r["tpm2.TPMA_SESSION.decrypt"] == r["tpm.auth_attribs_decrypt"] for r in rows)


def test_encrypted_first_parameters(recorded, env) -> None:
    """The salted session with decrypt and encrypt: the first parameter's size is read,
    its bytes are tpm2.encrypted, never decoded as the structure they hide."""
    rows = _fields(env, recorded["session"], "tpm2.encrypted",
                   ["_ws.col.Info", "tpm2.encrypted", "tpm2.TPMA_SESSION.decrypt", "tpm2.TPMA_SESSION.encrypt"])
    infos = " ".join(r["_ws.col.Info"] for r in rows)
    assert "[TPM Request] TPM_CC_Create" in infos  # inSensitive hidden by decrypt
    assert "[TPM Response] TPM_CC_GetRandom" in infos  # randomBytes hidden by encrypt
    for r in rows:
        assert r["tpm2.encrypted"]


# ------------------------------------------------------------------ damage


def _real_messages(recorded, env) -> list[bytes]:
    out = tshark(env, "-r", str(recorded["session"]), "-Y", "tpm2", "-T", "fields", "-e", "tcp.payload")
    return [bytes.fromhex(x.replace(":", "")) for x in out.split()]


def test_damaged_messages_decode_as_far_as_their_bytes(tmp_path: Path, recorded, env) -> None:
    """Cut off, a size that lies, an unknown command, a TPM 1.2 probe answered the TPM 2.0
    way, random bytes under valid headers: no Lua error, the damage said in an expert item."""
    rng = random.Random(14)
    real = _real_messages(recorded, env)
    msgs: list[bytes] = []
    for data in rng.sample(real, 40):
        for cut in sorted({0, 1, 2, 6, 9, 10, 11, len(data) // 2, len(data) - 1}):
            msgs += [data[:cut], _response(0)]
    for data in rng.sample(real, 20):
        lie = bytearray(data)
        if len(lie) > 16:
            lie[14:16] = (0xFFFF).to_bytes(2, "big")  # a size inside that says more than there is
        msgs += [bytes(lie), _response(0)]
    msgs += [bytes.fromhex("8001 0000000a 20000001"), _response(0)]  # a vendor command
    msgs += [bytes.fromhex("8001 0000000a 00000111"), _response(0)]  # no such command code
    msgs += [bytes.fromhex("00c1 0000000a 000000f1"), bytes.fromhex("8001 0000000a 0000001e")]  # TPM 1.2 probe
    for _ in range(200):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        cc = rng.choice([0x131, 0x17a, 0x17e, 0x176, 0x14e, 0x158, 0x153, 0x15e])
        tag = rng.choice([b"\x80\x01", b"\x80\x02"])
        cmd = tag + (10 + len(body)).to_bytes(4, "big") + cc.to_bytes(4, "big") + body
        rsp = tag + (10 + len(body)).to_bytes(4, "big") + bytes(4) + body
        msgs += [cmd, rsp]
    pcap = messages_pcapng(tmp_path / "damage.pcapng", msgs)
    for extra in ((), ("-V",), ("-Y", "tpm2.nvIndex"), ("-T", "pdml")):
        tshark(env, "-r", str(pcap), *extra)  # exit 0, no Lua error
    out = tshark(env, "-r", str(pcap), "-Y", "tpm2.truncated", "-T", "fields", "-e", "frame.number")
    assert len(out.split()) > 40
    info = tshark(env, "-r", str(pcap), "-T", "fields", "-e", "_ws.col.Info")
    assert "[TPM 1.2 Request] TPM_ORD_GetTicks" in info
    # a TPM 2.0's answer (tag 0x8001) decoded as TPM 2.0, its format-0 code 0x01E in 1.2 terms
    assert "[TPM Response] TPM 1.2 TPM_ORD_GetTicks: TPM 1.2 TPM_BADTAG" in info


def test_bounded_items_per_frame(tmp_path: Path, env) -> None:
    """120 comment lines of 64 KB: notes capped, no "more than 1000000 items"; a list that
    says it has 2^32-1 elements: the first elements, then one expert item."""
    from swtpm_extcap.pcapng import writer as pcapng
    from swtpm_extcap.pcapng.tcp import build_frame

    big = "\n".join(f"pcr: extend #{i} PCR 7 sha256 = " + "ab" * 32000 for i in range(120))
    frame = build_frame(50000, 2321, 1, 1, 0x18, bytes.fromhex("80010000000c000001440000"), run=0, line=1)
    pcap = tmp_path / "big.pcapng"
    pcap.write_bytes(pcapng.section_header("t") + pcapng.interface_description("swtpm:t", "t")
                     + bytes(pcapng.encode_packets([(1_700_000_000_000_000, frame, big[:60000])])))
    out = tshark(env, "-r", str(pcap), "-V")
    assert "Dissector bug" not in out
    lst = bytes.fromhex("8001") + (10 + 1 + 4 + 4 + 6 * 300).to_bytes(4, "big") + bytes(4) + bytes.fromhex(
        "00" "00000000" "ffffffff") + bytes(6 * 300)
    pcap2 = messages_pcapng(tmp_path / "list.pcapng", [bytes.fromhex("80010000001600000 17a00000000000000000000 0001".replace(" ", "")), lst])
    out2 = tshark(env, "-r", str(pcap2), "-V")
    assert "Dissector bug" not in out2 and "elements, the first" in out2


# ------------------------------------------------------------------ Wireshark's names


def test_wiresharks_own_tpm_filters_keep_working(recorded, env) -> None:
    """``tpm``, ``tpm.req.cc``, ``tpm.resp.rc``, ``tpm.handle.*``, ``tpm.auth_*`` match the
    frames they matched before, with the values of the specification."""
    pcap = recorded["session"]
    def count(flt: str, plugin: bool = True) -> int:
        return len(tshark(env, "-r", str(pcap), "-Y", flt, "-T", "fields", "-e", "frame.number",
                          plugin=plugin).split())
    assert count("tpm") == count("tpm2") > 0
    assert count("tpm.req.cc") == count("tpm2.commandCode") > 0
    assert count("tpm.resp.rc") == count("tpm2.responseCode") > 0
    assert count("tpm.resp.rc != 0") == count("tpm2.responseCode != 0") > 0
    assert count("tpm.req.cc == 0x15e") == count("tpm.req.cc == 0x15e", plugin=False)
    assert count("tpm.resp.rc != 0") == count("tpm.resp.rc != 0", plugin=False)


# ------------------------------------------------------------------ statistics


def test_statistics_report_per_command(recorded, env) -> None:
    out = tshark(env, "-q", "-z", "swtpm,commands", "-r", str(recorded["session"]))
    assert "TPM commands (swtpm-extcap)" in out
    counts = Counter()
    for line in tshark(env, "-r", str(recorded["session"]), "-Y", "tpm2 && tcp.dstport == 2321",
                       "-T", "fields", "-e", "tpm2.commandCode").split():
        counts[int(line, 16)] += 1
    rows = {}
    for line in out.splitlines():
        m = re.match(r"(TPM_CC_\w+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s*(.*)$", line)
        if m:
            rows[m.group(1)] = m
    assert rows["TPM_CC_GetCapability"].group(2) == str(counts[0x17A])
    unseal = rows["TPM_CC_Unseal"]
    assert unseal.group(3) == "1" and "TPM_RC_POLICY_FAIL (session 1) x1" in unseal.group(7)
    assert float(unseal.group(4)) <= float(unseal.group(5)) <= float(unseal.group(6))
    # the policy replay's explanations (the session's failed authorizations), one a frame
    explained = tshark(env, "-r", str(recorded["session"]), "-Y", "swtpm.policy.explain", "-T", "fields",
                       "-e", "frame.number").split()
    assert explained and f"policy: explain notes: {len(explained)}" in out


def test_policy_notes_become_fields_experts_and_statistics(tmp_path: Path, env) -> None:
    explain = "policy: explain: PolicyPCR bound PCR 7 sha256 to a digest the PCRs no longer have."
    comments = ["", "\n".join([explain, "policy: digest MISMATCH (replay aa11, TPM bb22)", "other note"]),
                "", "policy: digest matches replay", "", "policy: digest not known to the replay (no policy session seen)"]
    unseal = bytes.fromhex("80020000001b0000015e" "80000000" "00000009" "40000009" "0000" "00" "0000")
    msgs = [unseal, _response(0x99D), unseal, _response(0), unseal, _response(0x99D)]
    pcap = messages_pcapng(tmp_path / "policy.pcapng", msgs, comments)
    rows = _fields(env, pcap, "swtpm.policy.explain || swtpm.policy.check",
                   ["swtpm.policy.explain", "swtpm.policy.check", "swtpm.note", "_ws.expert.message"])
    assert rows[0]["swtpm.policy.explain"] == explain[len("policy: explain: "):]
    assert rows[0]["swtpm.policy.check"] == "digest MISMATCH (replay aa11, TPM bb22)"
    assert "other note" in rows[0]["swtpm.note"]
    assert "PolicyPCR bound PCR 7" in rows[0]["_ws.expert.message"]
    assert "digest MISMATCH" in rows[0]["_ws.expert.message"]
    assert rows[1]["swtpm.policy.check"] == "digest matches replay"
    assert rows[2]["swtpm.policy.check"].startswith("digest not known to the replay")
    report = tshark(env, "-q", "-z", "swtpm,commands", "-r", str(pcap))
    assert "policy: explain notes: 1" in report


POLICY = REPO / "tests" / "data" / "policy"


def test_policy_notes_of_a_real_recording(tmp_path: Path, env) -> None:
    """pcr-seal.log (a real swtpm, tests/data/policy): the replay's notes as the plugin's fields:
    each PolicyGetDigest answer checked, the failed Unseal explained with an Expert Info error."""
    pcap = write_pcapng((POLICY / "pcr-seal.log").read_bytes(), tmp_path / "pcr-seal.pcapng",
                        start_us=1_700_000_000_000_000)
    rows = _fields(env, pcap, "swtpm.policy.explain || swtpm.policy.check",
                   ["swtpm.cc", "tpm2.rc.name", "swtpm.policy.check", "swtpm.policy.explain",
                    "_ws.expert.severity"])
    checks = [r for r in rows if r["swtpm.policy.check"]]
    assert len(checks) == 3 and {r["swtpm.cc"] for r in checks} == {"0x00000189"}  # PolicyGetDigest
    assert {r["swtpm.policy.check"] for r in checks} == {"digest matches replay"}
    [failed] = [r for r in rows if r["swtpm.policy.explain"]]
    assert failed["swtpm.cc"] == "0x0000015e" and failed["tpm2.rc.name"] == "TPM_RC_POLICY_FAIL"
    assert failed["swtpm.policy.explain"].startswith("Unseal at line 1182 failed (TPM_RC_POLICY_FAIL")
    assert "extend #5 at line 984" in failed["swtpm.policy.explain"]
    assert "8388608" in failed["_ws.expert.severity"].split("|")  # PI_ERROR
    report = tshark(env, "-q", "-z", "swtpm,commands", "-r", str(pcap))
    assert "policy: explain notes: 1" in report


def test_notice_frames_of_the_ssh_source(tmp_path: Path, env) -> None:
    """A capture's notices (pcapng/notice.py, UDP port 2325): link down, back, records lost, as
    swtpm.notice.* fields with an Expert Info warning; the TPM frames around them decode."""
    from swtpm_extcap.pcapng.pipeline import Pipeline

    log = (POLICY / "pcr-seal.log").read_bytes()
    half = log.index(b"\n", len(log) // 2) + 1
    texts = ["swtpm-extcap: the SSH link to pve1 went down at 10:00:00 (timeout); reconnecting."
             " The capture goes on after byte 900 of the log (line 9) when it is back",
             "swtpm-extcap: the SSH link to pve1 is back at 10:00:09, down 9 s since 10:00:00:"
             " resumed at byte 900 of the same log; nothing lost",
             "swtpm-extcap: the SSH link to pve1 is back at 10:01:00, down 5 s since 10:00:55: the"
             " log was rotated or truncated meanwhile and no rotated copy holds it (/l.1): what"
             " swtpm wrote to the old file after byte 900 (after log line 9), from 10:00:55 until"
             " the switch, may be missing"]
    pcap = tmp_path / "notices.pcapng"
    with open(pcap, "wb") as out:
        pipe = Pipeline(out, name="swtpm:t", description="t", start_us=1_700_000_000_000_000)
        pipe.feed(log[:half])
        for i, text in enumerate(texts):
            pipe.notice(text, 1_700_000_100_000_000 + i)
        pipe.feed(log[half:])
        pipe.close()
    rows = _fields(env, pcap, "swtpm.notice", ["swtpm.notice.event", "swtpm.notice.lost",
                                               "swtpm.notice.text", "_ws.col.Info", "_ws.expert.severity",
                                               "_ws.expert.message", "swtpm.run"])
    assert [r["swtpm.notice.event"] for r in rows] == ["link down", "link back", "records lost"]
    assert [r["swtpm.notice.lost"] for r in rows] == ["0", "0", "1"]
    assert [r["swtpm.notice.text"] for r in rows] == [r["_ws.col.Info"] for r in rows] == texts
    for row, text in zip(rows, texts):
        assert "6291456" in row["_ws.expert.severity"].split("|")  # PI_WARN
        assert text[:120] in row["_ws.expert.message"] and row["swtpm.run"] == ""
    assert tshark(env, "-r", str(pcap), "-Y", "swtpm.notice.lost == 1", "-T", "fields", "-e", "frame.number").split() \
        == [tshark(env, "-r", str(pcap), "-Y", "udp.port == 2325", "-T", "fields", "-e", "frame.number").split()[2]]
    assert len(_fields(env, pcap, "tpm2.responseCode == 0x99d", ["frame.number"])) == 1  # the Unseal after


# ------------------------------------------------------------------ what each mode adds


@pytest.mark.parametrize("flt", [
    "tpm2.pcr == 16", "tpm2.TPMA_SESSION.encrypt == 1", "tpm2.TPMA_OBJECT.sign == 1",
    "tpm2.TPMA_NV.AUTHREAD == 1", "tpm2.handle.type == 0x81", "tpm2.handle == 0x40000001",
    "tpm2.nvIndex == 0x01500020", "tpm2.rc.session == 1", "tpm2.property.TPM_PT == 0x100",
    "tpm2.hashAlg == 0x000b", "tpm2.encrypted", "tpm2.capability == 6"])
def test_a_filter_alone_finds_what_the_shown_tree_has(recorded, env, flt: str) -> None:
    """tshark -Y F with the summary lines (only F's fields are added: a value whose parent
    item is not wanted, a PCR of a selection, a bit of an attribute, a handle's type, goes
    in beside it) matches the frames of -V (every item)."""
    pcap = str(recorded["session"])
    summary = tshark(env, "-r", pcap, "-Y", flt).splitlines()
    full = re.findall(r"^Frame \d+:", tshark(env, "-r", pcap, "-Y", flt, "-V"), re.M)
    assert summary and len(summary) == len(full), flt


def test_the_same_values_whatever_the_filter(recorded, env) -> None:
    """With a filter (only referenced fields added), with -V (all) and with fields: the
    same values (the lazy path adds exactly what was asked)."""
    pcap = str(recorded["session"])
    a = tshark(env, "-r", pcap, "-Y", "tpm2.nvIndex", "-T", "fields", "-e", "frame.number")
    b = tshark(env, "-r", pcap, "-Y", "tpm2.nvIndex", "-V")
    frames = a.split()
    assert frames and len(re.findall(r"^Frame \d+:", b, re.M)) == len(frames)
    c = tshark(env, "-r", pcap, "-Y", "tpm2.pcr == 16 && swtpm.cc == 0x17f", "-T", "fields", "-e", "frame.number")
    d = tshark(env, "-r", pcap, "-2", "-Y", "swtpm.cc == 0x17f", "-T", "fields", "-e", "frame.number", "-e", "tpm2.pcr")
    assert c.split() == [r.split("\t")[0] for r in d.splitlines() if "16" in r.split("\t")[1].split(",")]
