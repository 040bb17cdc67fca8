"""The Wireshark Lua plugin (swtpm_extcap/wireshark/swtpm.lua) in real tshark, on real logs.

Every tshark here runs under a temporary ``$HOME`` (no personal plugin or profile
of the machine's user leaks in) and loads the plugin with ``-X lua_script:``;
test_install.py checks the installed copy. What is checked against what:

* control frames: the command in each request is the first u32 of the log's
  ``Ctrl Cmd`` record on the frame's ``swtpm.line``, and the sequence of
  commands equals the client-side truth (``ctrl_cmd``); a real swtpm driven by
  ``swtpm_ioctl`` gives the layouts the corpus lacks (state blob with its
  ``Ctrl Rsp Continued``, GET_INFO, GET_CONFIG);
* responses: each carries the command code of the command before it in its run,
  as the truth lists the exchanges; request_in/response_in point at each other;
* TPM 2.0 frames: decoded by the plugin ("tpm2", test_lua_tpm2.py), with the header
  fields of Wireshark's own TPM dissector (``tpm``, ``tpm.req.cc``, ``tpm.resp.rc``...)
  on the same bytes, with the values Wireshark gives them;
* TPM 1.2: marked ``tpm12``, ordinals and return codes named (names from the
  TPM 1.2 spec, written out here, not taken from the plugin).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    TSHARK_RAW,
    CorpusLog,
    foreign_plugin_copies,
    missing_tool,
    named_log,
    require_tshark,
    write_pcapng,
)

import realtpm

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "swtpm_extcap" / "wireshark" / "swtpm.lua"
LUA = ("-X", f"lua_script:{PLUGIN}")
Convert = Callable[..., Path]


@pytest.fixture(scope="module")
def clean_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose $HOME has no Wireshark plugin or profile."""
    foreign = foreign_plugin_copies()
    if foreign:  # loaded first: the checkout's copy would stay unused
        pytest.fail(
            f"Wireshark loads another version of the plugin from {foreign[0]} (a system-wide"
            " install) before the checkout's, which then stays unused: update that install"
            " (sudo ./install.sh) or remove it (sudo ./install.sh --uninstall)"
        )
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "WIRESHARK"))}
    env["HOME"] = str(home)
    return env


def run_tshark(env: dict[str, str], *args: str) -> str:
    require_tshark()
    proc = subprocess.run(
        ["tshark", *args], env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    assert "Lua" not in proc.stderr, proc.stderr  # a plugin error is only printed, not fatal
    return proc.stdout


def fields(
    env: dict[str, str], pcap: Path, names: list[str], *extra: str, plugin: bool = True
) -> list[dict[str, str]]:
    """One dict per frame (both passes: response_in is known on requests too)."""
    args = [*TSHARK_RAW, *(LUA if plugin else ()), "-2", *extra, "-r", str(pcap),
            "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"]
    for name in names:
        args += ["-e", name]
    out = []
    for line in run_tshark(env, *args).splitlines():
        out.append(dict(zip(names, line.split("\t"))))
    return out


def _u32(payload: str, offset: int = 0) -> int:
    data = bytes.fromhex(payload.replace(":", ""))
    return int.from_bytes(data[offset : offset + 4], "big")


_HEADER = re.compile(rb" (SWTPM_IO_Read|SWTPM_IO_Write|Ctrl Cmd|Ctrl Rsp Continued|Ctrl Rsp): length (\d+)")

BASE = ["frame.number", "tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.payload",
        "swtpm.line", "swtpm.run", "frame.comment"]


# ------------------------------------------------------------ line and run


def test_every_frame_says_its_log_line_and_run(
    corpus_log: CorpusLog, converted: Convert, clean_home: dict[str, str]
) -> None:
    rows = fields(clean_home, converted(corpus_log), BASE)
    assert rows
    for row in rows:
        comment_line = re.search(
            r"(?:^swtpm log line|connection opened for log line) (\d+)", row["frame.comment"]
        )
        assert comment_line, row
        assert row["swtpm.line"] == comment_line.group(1), row
        client = max(int(row["tcp.srcport"]), int(row["tcp.dstport"]))
        assert int(row["swtpm.run"]) == client - 50000 + 1, row
        if row["tcp.payload"]:  # a record: the log line is its header
            header = _HEADER.search(corpus_log.lines[int(row["swtpm.line"]) - 1])
            assert header is not None, row
            assert int(header.group(2)) * 2 == len(row["tcp.payload"].replace(":", "")), row


# ------------------------------------------------------------ control channel

CTRL = BASE + ["swtpm.ctrl.cmd", "swtpm.ctrl.result", "swtpm.ctrl.locality",
               "swtpm.ctrl.init_flags", "swtpm.ctrl.buffersize", "swtpm.ctrl.caps",
               "swtpm.request_in", "swtpm.response_in", "swtpm.continued", "_ws.col.Info",
               "_ws.col.Protocol"]

#: swtpm's include/swtpm/tpm_ioctl.h, written out here (not taken from the plugin)
CTRL_NAMES = {1: "CMD_GET_CAPABILITY", 2: "CMD_INIT", 3: "CMD_SHUTDOWN",
              4: "CMD_GET_TPMESTABLISHED", 5: "CMD_SET_LOCALITY", 6: "CMD_HASH_START",
              7: "CMD_HASH_DATA", 8: "CMD_HASH_END", 9: "CMD_CANCEL_TPM_CMD",
              0x0A: "CMD_STORE_VOLATILE", 0x0B: "CMD_RESET_TPMESTABLISHED",
              0x0C: "CMD_GET_STATEBLOB", 0x0D: "CMD_SET_STATEBLOB", 0x0E: "CMD_STOP",
              0x0F: "CMD_GET_CONFIG", 0x10: "CMD_SET_DATAFD", 0x11: "CMD_SET_BUFFERSIZE",
              0x12: "CMD_GET_INFO", 0x13: "CMD_LOCK_STORAGE"}


def _rows_on(port: str, rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The data frames to or from TCP ``port`` (2321: TPM, 2323: control channel)."""
    return [r for r in rows if r["tcp.payload"] and port in (r["tcp.srcport"], r["tcp.dstport"])]


def _ctrl_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return _rows_on("2323", rows)


def test_control_frames_decode_and_match_the_log(
    corpus_log: CorpusLog, converted: Convert, clean_home: dict[str, str]
) -> None:
    rows = _ctrl_rows(fields(clean_home, converted(corpus_log), CTRL))
    by_number = {r["frame.number"]: r for r in rows}
    truth = [e for e in corpus_log.exchanges() if e["channel"] == "ctrl"]
    commands = [r for r in rows if r["tcp.dstport"] == "2323"]
    assert [int(r["swtpm.ctrl.cmd"], 16) for r in commands] == [e["ctrl_cmd"] for e in truth]
    for r in rows:
        assert r["_ws.col.Protocol"] == "SWTPM ctrl", r
        header = _HEADER.search(corpus_log.lines[int(r["swtpm.line"]) - 1])
        assert header is not None
        cmd = int(r["swtpm.ctrl.cmd"], 16)
        name = CTRL_NAMES[cmd]
        assert r["_ws.col.Info"].startswith(name), r
        if r["tcp.dstport"] == "2323":
            assert header.group(1) == b"Ctrl Cmd"
            assert cmd == _u32(r["tcp.payload"])  # the log's bytes
            response = by_number[r["swtpm.response_in"]]
            assert int(response["swtpm.ctrl.cmd"], 16) == cmd
            payload = bytes.fromhex(r["tcp.payload"].replace(":", ""))
            if cmd == 5:
                assert int(r["swtpm.ctrl.locality"]) == payload[4]
            if cmd == 2:
                assert int(r["swtpm.ctrl.init_flags"], 16) == _u32(r["tcp.payload"], 4)
            if cmd == 0x11:
                assert int(r["swtpm.ctrl.buffersize"]) == _u32(r["tcp.payload"], 4)
            continue
        assert header.group(1) == b"Ctrl Rsp"
        request = by_number[r["swtpm.request_in"]]
        assert request["swtpm.response_in"] == r["frame.number"]
        assert request["tcp.stream"] == r["tcp.stream"]
        assert int(request["frame.number"]) < int(r["frame.number"])
        if cmd == 1:  # a bare u64 of capability flags
            assert int(r["swtpm.ctrl.caps"], 16) == int(r["tcp.payload"].replace(":", ""), 16)
            assert r["swtpm.ctrl.result"] == ""
        else:
            assert int(r["swtpm.ctrl.result"], 16) == _u32(r["tcp.payload"])
            assert ("TPM_SUCCESS" in r["_ws.col.Info"]) == (_u32(r["tcp.payload"]) == 0)


def test_real_swtpm_ioctl_control_layouts(
    tmp_path: Path, clean_home: dict[str, str]
) -> None:
    """swtpm_ioctl against a real swtpm: state blob (with ``Ctrl Rsp Continued``), info,
    config, buffer size query, stop, load, init."""
    missing = realtpm.missing_tools("swtpm", "swtpm_ioctl", "tshark")
    if missing:
        missing_tool(f"needs {', '.join(missing)} on PATH")
    sw = realtpm.start_swtpm(tmp_path / "tpm")
    blob = tmp_path / "permanent.bin"
    ioctl = ["swtpm_ioctl", "--tcp", f"{realtpm.HOST}:{sw.ctrl_port}"]
    try:
        for args in (["-c"], ["--info", "1"], ["-b", "0"], ["--save", "permanent", str(blob)],
                     ["--stop"], ["--load", "permanent", str(blob)], ["-i"], ["-e"]):
            proc = subprocess.run(ioctl + args, capture_output=True, text=True, timeout=30)
            assert proc.returncode == 0, (args, proc.stderr)
    finally:
        sw.stop()
    log = sw.log_path.read_bytes()
    assert b"Ctrl Rsp Continued" in log
    pcap = write_pcapng(log, tmp_path / "ioctl.pcapng", start_us=1_700_000_000_000_000)
    extra = ["swtpm.ctrl.info", "swtpm.ctrl.blob_type", "swtpm.ctrl.totlength", "swtpm.ctrl.minsize",
             "swtpm.ctrl.maxsize"]
    rows = _ctrl_rows(fields(clean_home, pcap, CTRL + extra))
    infos = [r["_ws.col.Info"] for r in rows]
    names = [i.split()[0] for i in infos if " response" not in i]
    assert names == ["CMD_GET_CAPABILITY", "CMD_GET_INFO", "CMD_SET_BUFFERSIZE", "CMD_GET_STATEBLOB",
                     "CMD_STOP", "CMD_SET_STATEBLOB", "CMD_INIT", "CMD_GET_TPMESTABLISHED"], infos
    by_number = {r["frame.number"]: r for r in rows}
    info = next(r for r in rows if r["swtpm.ctrl.info"])
    assert "TPMSpecification" in info["swtpm.ctrl.info"]
    sizes = next(r for r in rows if r["swtpm.ctrl.maxsize"])
    assert int(sizes["swtpm.ctrl.minsize"]) <= int(sizes["swtpm.ctrl.buffersize"]) <= int(
        sizes["swtpm.ctrl.maxsize"])
    get = next(r for r in rows if r["_ws.col.Info"].startswith("CMD_GET_STATEBLOB PTM_BLOB_TYPE_PERMANENT"))
    header = by_number[get["swtpm.response_in"]]
    continued = [r for r in rows if r["swtpm.continued"] == "1"]
    assert len(continued) == 1
    assert continued[0]["swtpm.request_in"] == get["frame.number"]
    assert "CMD_GET_STATEBLOB response continued" in continued[0]["_ws.col.Info"]
    assert int(header["swtpm.ctrl.totlength"]) == blob.stat().st_size
    # swtpm does not log its answer to SET_STATEBLOB (ctrlchannel_receive_state): no
    # response, and the next command pairs with its own
    setter = next(r for r in rows if r["_ws.col.Info"].startswith("CMD_SET_STATEBLOB"))
    assert setter["swtpm.response_in"] == ""
    init = next(r for r in rows if r["_ws.col.Info"].startswith("CMD_INIT"))
    assert by_number[init["swtpm.response_in"]]["_ws.col.Info"] == "CMD_INIT response: TPM_SUCCESS"


# ------------------------------------------------------------ TPM request/response

TPM = BASE + ["tpm.req.cc", "tpm.resp.rc", "tpm12.ordinal", "swtpm.cc", "swtpm.request_in",
              "swtpm.response_in", "swtpm.time", "frame.time_epoch", "swtpm.tpm_version",
              "_ws.col.Info"]


def _tpm_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return _rows_on("2321", rows)


def test_every_response_carries_its_command(
    corpus_log: CorpusLog, converted: Convert, clean_home: dict[str, str]
) -> None:
    rows = _tpm_rows(fields(clean_home, converted(corpus_log), TPM))
    by_number = {r["frame.number"]: r for r in rows}
    truth = [(e["run"], int(e["command_code"], 16)) for e in corpus_log.exchanges()
             if e["channel"] == "tpm"]
    responses = [r for r in rows if r["tcp.srcport"] == "2321"]
    assert [(int(r["swtpm.run"]) - 1, int(r["swtpm.cc"], 16)) for r in responses] == truth
    last_command: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["tcp.dstport"] == "2321":
            assert int(r["swtpm.cc"], 16) == _u32(r["tcp.payload"], 6)
            last_command[r["tcp.stream"]] = r
            continue
        request = last_command[r["tcp.stream"]]  # the record before it in its run
        assert r["swtpm.request_in"] == request["frame.number"]
        assert request["swtpm.response_in"] == r["frame.number"]
        assert r["swtpm.cc"] == request["swtpm.cc"]
        delta = float(r["frame.time_epoch"]) - float(request["frame.time_epoch"])
        assert float(r["swtpm.time"]) == pytest.approx(delta, abs=1e-6)
        # TPM 1.2 by the request's tag; a response by its own when that is a TPM 2.0 tag:
        # QEMU probes with TPM_ORD_GetTicks, a TPM 2.0 answers as one (tag 0x8001)
        tpm12 = 0xC1 <= _u32(request["tcp.payload"]) >> 16 <= 0xC3
        answer2 = _u32(r["tcp.payload"]) >> 16 in (0x8001, 0x8002)
        assert request["swtpm.tpm_version"] == ("1.2" if tpm12 else "2.0")
        assert r["swtpm.tpm_version"] == ("1.2" if tpm12 and not answer2 else "2.0")
        if not tpm12:
            name = _spec_names(clean_home)[int(r["swtpm.cc"], 16)]
            assert r["_ws.col.Info"].startswith(f"[TPM Response] {name}: TPM_RC_"), r
        elif answer2:
            assert r["_ws.col.Info"].startswith("[TPM Response] TPM 1.2 TPM_ORD_"), r
    assert len(by_number) == len(rows)


def test_failed_unseal_filter_of_the_issue(converted: Convert, corpus: Path,
                                            clean_home: dict[str, str]) -> None:
    """``swtpm.cc == 0x15e && tpm.resp.rc != 0`` and its complement see every Unseal response."""
    pcap = converted(named_log(corpus, "proxmox-103-swtpm.log"))
    base = [*TSHARK_RAW, *LUA, "-r", str(pcap), "-T", "fields", "-e", "frame.number"]
    unseal = run_tshark(clean_home, *base, "-Y", "swtpm.cc == 0x15e && tpm.resp.rc").split()
    ok = run_tshark(clean_home, *base, "-Y", "swtpm.cc == 0x15e && tpm.resp.rc == 0").split()
    failed = run_tshark(clean_home, *base, "-Y", "swtpm.cc == 0x15e && tpm.resp.rc != 0").split()
    assert len(unseal) == 2 and sorted(ok + failed, key=int) == unseal  # one per boot
    assert failed == []  # both unseals of this log succeeded


def test_failure_mode_responses_name_their_command(
    converted: Convert, corpus: Path, clean_home: dict[str, str]
) -> None:
    log = named_log(corpus, "proxmox-105-failuremode-swtpm.log")
    rows = _tpm_rows(fields(clean_home, converted(log), TPM, "-Y", "tpm.resp.rc != 0"))
    failed = [e for e in log.exchanges() if e["channel"] == "tpm" and int(e["response_code"], 16)]
    assert [int(r["swtpm.cc"], 16) for r in rows] == [int(e["command_code"], 16) for e in failed]
    assert rows


_TPM2_NAMES: dict[int, str] = {}


def _tpm2_names(env: dict[str, str]) -> dict[int, str]:
    """Wireshark's own names of TPM 2.0 command codes (``tshark -G values``)."""
    if not _TPM2_NAMES:
        for line in run_tshark(env, "-G", "values").splitlines():
            cols = line.split("\t")
            # (an installed plugin's field of the same name lists the TPM_CC_ names too)
            if len(cols) == 4 and cols[:2] == ["V", "tpm.req.cc"] and cols[3].startswith("TPM2_CC_"):
                _TPM2_NAMES[int(cols[2], 16)] = cols[3]
    return _TPM2_NAMES


def _spec_names(env: dict[str, str]) -> dict[int, str]:
    """The specification's names of the command codes: Wireshark's, TPM2_CC_ -> TPM_CC_."""
    return {code: "TPM_CC_" + name[len("TPM2_CC_"):] for code, name in _tpm2_names(env).items()}


def test_swtpm_cc_names_are_the_specifications(clean_home: dict[str, str]) -> None:
    ours = {}
    for line in run_tshark(clean_home, "-G", "values", *LUA).splitlines():
        cols = line.split("\t")
        if len(cols) == 4 and cols[:2] == ["V", "swtpm.cc"]:
            ours[int(cols[2], 16)] = cols[3]
    theirs = _spec_names(clean_home)
    assert len(theirs) > 100
    assert {code: ours.get(code) for code in theirs} == theirs
    assert ours[0x1A1] == "TPM_CC_PolicyTransportSPDM"  # newer than Wireshark's table
    assert ours[0x99] == "TPM_ORD_Startup"  # and the TPM 1.2 ordinals, which do not overlap


# ------------------------------------------------------------ TPM frames unaffected


#: the header fields of Wireshark's TPM 2.0 dissector, which the plugin puts on the same bytes
WIRESHARK_HEADER = ["tpm.req.tag", "tpm.req.size", "tpm.req.cc", "tpm.resp.tag", "tpm.resp.rc"]


def test_wiresharks_tpm_header_fields_keep_their_values(
    corpus_log: CorpusLog, converted: Convert, clean_home: dict[str, str]
) -> None:
    """``tpm``, ``tpm.req.cc``, ``tpm.resp.rc``...: the frames and values Wireshark's own
    dissector gives (the plugin decodes TPM 2.0 itself now, and keeps those names)."""
    pcap = converted(corpus_log)
    names = ["frame.number", "frame.protocols", *WIRESHARK_HEADER]
    without = fields(clean_home, pcap, names, "-Y", "tpm", plugin=False)
    with_plugin = {r["frame.number"]: r for r in fields(clean_home, pcap, names, "-Y", "tpm")}
    versions = {r["frame.number"]: r["swtpm.tpm_version"]
                for r in fields(clean_home, pcap, ["frame.number", "swtpm.tpm_version"])}
    tpm2 = [r for r in without if versions[r["frame.number"]] == "2.0"]
    assert sorted(with_plugin, key=int) == [r["frame.number"] for r in tpm2]
    for r in tpm2:
        ours = with_plugin[r["frame.number"]]
        assert ":tpm2" in ours["frame.protocols"]
        assert {n: ours[n] for n in WIRESHARK_HEADER} == {n: r[n] for n in WIRESHARK_HEADER}, r
    if corpus_log.truth["tpm_version"] != "1.2":
        tpm12 = sum(v == "1.2" for v in versions.values())
        assert len(tpm2) >= 2 * len(corpus_log.tpm_command_codes()) - tpm12
    # TPM 1.2 frames are "tpm12" (Wireshark's TPM 2.0 dissector took them for TPM 2.0)
    assert all(v in ("1.2", "") for k, v in versions.items() if k not in with_plugin)


# ------------------------------------------------------------ TPM 1.2

#: the TPM 1.2 Main Specification Part 2 names of the ordinals in the corpus log
TPM12_ORDINALS = {
    0x99: "TPM_ORD_Startup", 0x53: "TPM_ORD_ContinueSelfTest", 0x54: "TPM_ORD_GetTestResult",
    0x65: "TPM_ORD_GetCapability", 0x4000000A: "TSC_ORD_PhysicalPresence",
    0x46: "TPM_ORD_GetRandom", 0x14: "TPM_ORD_Extend", 0x15: "TPM_ORD_PcrRead",
    0x7C: "TPM_ORD_ReadPubek", 0xA0: "TPM_ORD_SHA1Start", 0xA1: "TPM_ORD_SHA1Update",
    0xA2: "TPM_ORD_SHA1Complete", 0x0A: "TPM_ORD_OIAP", 0x96: "TPM_ORD_Terminate_Handle",
    0x78: "TPM_ORD_CreateEndorsementKeyPair", 0x98: "TPM_ORD_SaveState",
}
TPM12_RCS = {0x00: "TPM_SUCCESS", 0x2C: "TPM_BAD_MODE", 0x0A: "TPM_BAD_ORDINAL",
             0x26: "TPM_INVALID_POSTINIT", 0x08: "TPM_DISABLED_CMD", 0x05: "TPM_CLEAR_DISABLED",
             0x06: "TPM_DEACTIVATED", 0x07: "TPM_DISABLED", 0x23: "TPM_NO_ENDORSEMENT",
             0x14: "TPM_OWNER_SET", 0x03: "TPM_BAD_PARAMETER", 0x1E: "TPM_BADTAG",
             0x02: "TPM_BADINDEX", 0x1F: "TPM_IOERROR"}


def test_tpm12_is_marked_and_named(converted: Convert, corpus: Path,
                                   clean_home: dict[str, str]) -> None:
    log = named_log(corpus, "tpm12-swtpm.log")
    names = ["frame.protocols", "tpm12.tag", "tpm12.size", "tpm12.ordinal", "tpm12.rc", "swtpm.cc",
             "swtpm.tpm_version"]
    rows = _tpm_rows(fields(clean_home, converted(log), BASE + names + ["_ws.col.Info"]))
    truth = [e for e in log.exchanges() if e["channel"] == "tpm"]
    assert len(rows) == 2 * len(truth)
    for row, (direction, exchange) in zip(
        rows, [(d, e) for e in truth for d in ("command", "response")]
    ):
        assert row["frame.protocols"].endswith(":tpm12") and ":tpm:" not in row["frame.protocols"] + ":"
        assert row["swtpm.tpm_version"] == "1.2"
        payload = bytes.fromhex(row["tcp.payload"].replace(":", ""))
        assert int(row["tpm12.tag"], 16) == int.from_bytes(payload[:2], "big")
        assert int(row["tpm12.size"]) == int.from_bytes(payload[2:6], "big")
        ordinal = int(exchange["command_code"], 16)
        assert int(row["swtpm.cc"], 16) == ordinal
        name = TPM12_ORDINALS.get(ordinal, f"0x{ordinal:x}")
        if direction == "command":
            assert bytes.fromhex(exchange["command"]) == payload
            assert int(row["tpm12.ordinal"], 16) == ordinal
            assert row["_ws.col.Info"] == f"[TPM 1.2 Request] {name}, len({len(payload)})"
        else:
            rc = int(exchange["response_code"], 16)
            assert int(row["tpm12.rc"], 16) == rc
            rc_name = TPM12_RCS.get(rc, f"0x{rc:x}")
            assert row["_ws.col.Info"] == f"[TPM 1.2 Response] {name}: {rc_name}, len({len(payload)})"
    unnamed = {int(e["command_code"], 16) for e in truth} - set(TPM12_ORDINALS)
    assert unnamed == {0x12345}  # the corpus's deliberately unknown ordinal


# ------------------------------------------------------------ comments: PCR notes


def test_pcr_notes_become_fields(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """The 'pcr' helper's comment lines (``pcr: extend #N PCR i bank = hex``)."""
    from swtpm_extcap.pcapng import writer as pcapng
    from swtpm_extcap.pcapng.frames import build_frame

    value = "ab" * 32
    comment = f"swtpm log line 7: SWTPM_IO_Read length 0\npcr: extend #3 PCR 7 sha256 = {value}"
    frame = build_frame(50000, 2321, 1, 1, 0x18, b"", run=0, line=7)
    pcap = tmp_path / "pcr.pcapng"
    pcap.write_bytes(
        pcapng.section_header("test")
        + pcapng.interface_description("swtpm:test", "test")
        + bytes(pcapng.encode_packets([(1_700_000_000_000_000, frame, comment)]))
    )
    row = fields(clean_home, pcap, ["swtpm.line", "swtpm.run", "swtpm.pcr.extend", "swtpm.pcr.index",
                                    "swtpm.pcr.bank", "swtpm.pcr.value"])[0]
    assert row == {"swtpm.line": "7", "swtpm.run": "1", "swtpm.pcr.extend": "3",
                   "swtpm.pcr.index": "7", "swtpm.pcr.bank": "sha256", "swtpm.pcr.value": value}


def test_older_captures_take_line_and_run_from_the_comment(
    tmp_path: Path, clean_home: dict[str, str]
) -> None:
    """A capture from before the Ethernet carrier (zero MACs): the comment still serves."""
    from swtpm_extcap.pcapng import writer as pcapng
    from swtpm_extcap.pcapng.frames import build_frame

    frames = [
        (1_700_000_000_000_000, build_frame(50001, 2321, 1, 1, 0x02),
         "swtpm run 2 from log line 40 (log prefix changed); TPM connection opened for log line 41"),
        (1_700_000_000_001_000, build_frame(50001, 2321, 2, 1, 0x18, bytes.fromhex("80010000000c00000144")),
         "swtpm log line 41: SWTPM_IO_Read length 10"),
    ]
    pcap = tmp_path / "old.pcapng"
    pcap.write_bytes(pcapng.section_header("test") + pcapng.interface_description("swtpm:t", "t")
                     + bytes(pcapng.encode_packets(frames)))
    rows = fields(clean_home, pcap, ["eth.src", "swtpm.line", "swtpm.run"])
    assert rows == [{"eth.src": "00:00:00:00:00:00", "swtpm.line": "41", "swtpm.run": "2"}] * 2
