"""The extcap protocol (swtpm_extcap/extcap/protocol.py): every verb, and captures into a real fifo.

Listing verbs run in-process through ``cli.main([...])`` (stdout/stderr
checked); captures run the package in a subprocess writing into a real fifo
(``os.mkfifo``) that a reader thread drains, and the bytes are decoded by
tshark. Helpers here are shared with test_stop.py and test_extcap_e2e.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from conftest import REPO, read_frames, require_tshark
from swtpm_extcap.tpm import commands
from swtpm_extcap import cli
from swtpm_extcap.extcap import protocol as extcap
from swtpm_extcap.interfaces.demo import demo_log_path

DEMO = demo_log_path()
DEMO_TPM_COMMANDS = 153
DEMO_CTRL_MESSAGES = 144
#: generous bounds: a test never waits longer than this for anything
DEADLINE_S = 20.0

_INTERFACE = re.compile(r"interface \{value=([A-Za-z0-9._-]+)\}\{display=([^{}\n]*)\}")
_EXTCAP = re.compile(r"extcap \{version=[0-9][0-9.]*\}(\{help=[^{}\n]+\})?")
_FIELD = re.compile(r"\{([a-z]+)=([^{}]*)\}")


# ------------------------------------------------------------------ helpers


def write_config(folder: Path, *globs: str) -> Path:
    """A settings file with ``[local] globs``; returns its path."""
    cfg = folder / "config.toml"
    cfg.write_text("[local]\nglobs = [" + ", ".join(f'"{g}"' for g in globs) + "]\n")
    return cfg


def extcap_env(config: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for a subprocess running the package from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if config:
        env["SWTPM_EXTCAP_CONFIG"] = str(config)
    else:  # no settings file (one named by $SWTPM_EXTCAP_CONFIG but missing is an error)
        env.pop("SWTPM_EXTCAP_CONFIG", None)
        env["XDG_CONFIG_HOME"] = "/nonexistent"
    env.update(extra)
    return env


def start_extcap(
    args: Sequence[str], env: dict[str, str], *, prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """``python -m swtpm_extcap ARGS`` as Wireshark runs it (stdout and stderr piped)."""
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "swtpm_extcap", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


class FifoReader:
    """Wireshark's side of the fifo: a thread that reads it until EOF.

    ``close_after``: close the fifo early once that many bytes have arrived
    (a reader that goes away). ``data`` holds what was read; ``eof`` is set
    at EOF or early close.
    """

    def __init__(self, path: Path, *, close_after: int | None = None) -> None:
        self.path = path
        self.close_after = close_after
        self.data = bytearray()
        self.opened = threading.Event()
        self.eof = threading.Event()
        self.closed_at = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with open(self.path, "rb", buffering=0) as fifo:
            self.opened.set()
            while True:
                chunk = fifo.read(65536)
                if not chunk:
                    break
                self.data += chunk
                if self.close_after is not None and len(self.data) >= self.close_after:
                    break
            self.closed_at = time.monotonic()
        self.eof.set()

    def wait_for(self, predicate: object, timeout: float = DEADLINE_S) -> None:
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"fifo reader: timed out ({len(self.data)} bytes)"
            time.sleep(0.01)

    def wait_quiet(self, quiet: float = 0.3, timeout: float = DEADLINE_S) -> None:
        """Wait until something arrived and then nothing more for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        size, since = -1, time.monotonic()
        while True:
            now = time.monotonic()
            assert now < deadline, f"fifo reader: never quiet ({len(self.data)} bytes)"
            if len(self.data) != size:
                size, since = len(self.data), now
            elif size > 0 and now - since >= quiet:
                return
            time.sleep(0.01)

    def finish(self, timeout: float = DEADLINE_S) -> bytes:
        """Wait for EOF; unblock a reader whose writer never came (test failure)."""
        if not self.eof.wait(timeout):
            try:  # let the reader's open() return so the thread can end
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            raise AssertionError("fifo reader: no EOF (the extcap never closed the fifo)")
        return bytes(self.data)


def without_dac_override() -> list[str]:
    """A command prefix that runs as root *without* CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH,
    so that file modes apply to root too (skips where capabilities cannot be dropped)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux)")
    prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot drop capabilities here")
    return prefix


def make_fifo(folder: Path, name: str = "wireshark_extcap_fifo") -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


def capture(
    tmp_path: Path,
    interface: str,
    *options: str,
    config: Path | None = None,
    timeout: float = DEADLINE_S,
) -> tuple[Path, subprocess.CompletedProcess[bytes]]:
    """Run a capture that ends by itself (replay) into a fifo; returns the pcapng file."""
    fifo = make_fifo(tmp_path, f"fifo-{time.monotonic_ns()}")
    reader = FifoReader(fifo)
    args = ["--capture", "--extcap-interface", interface, "--fifo", str(fifo), *options]
    proc = start_extcap(args, extcap_env(config))
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    data = reader.finish()
    pcap = tmp_path / f"capture-{time.monotonic_ns()}.pcapng"
    pcap.write_bytes(data)
    return pcap, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def tpm_codes(pcap: Path) -> list[int]:
    """The TPM command codes tshark decodes, in order."""
    return [f.tpm_cc for f in read_frames(pcap) if f.tpm_cc is not None]


def convert_codes(tmp_path: Path, log: Path) -> list[int]:
    """The same from ``python -m swtpm_extcap convert`` of ``log``."""
    out = tmp_path / f"{log.name}.converted.pcapng"
    rc = cli.main(["convert", str(log), "-o", str(out)])
    assert rc == 0
    return tpm_codes(out)


def split_runs(log: Path) -> list[bytes]:
    """The demo log's runs: its lines grouped by their ``[id=<epoch>]`` prefix."""
    runs: dict[bytes, list[bytes]] = {}
    for line in log.read_bytes().splitlines(keepends=True):
        m = re.match(rb"\[id=\d+\]", line)
        assert m, line
        runs.setdefault(m.group(0), []).append(line)
    return [b"".join(lines) for lines in runs.values()]


def parse_fields(line: str) -> dict[str, str]:
    fields = dict(_FIELD.findall(line))
    assert "".join(f"{{{k}={v}}}" for k, v in _FIELD.findall(line)) == line.split(" ", 1)[1], line
    return fields


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings file: the default place is empty (a $SWTPM_EXTCAP_CONFIG naming a
    missing file is an error the listing shows)."""
    monkeypatch.delenv("SWTPM_EXTCAP_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


@pytest.fixture
def logs_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two VM logs (copies of the demo log) behind a config glob: swtpm-web1, swtpm-db."""
    for vm in ("web1", "db"):
        (tmp_path / "vms" / vm).mkdir(parents=True)
        shutil.copy(DEMO, tmp_path / "vms" / vm / "swtpm.log")
    cfg = write_config(tmp_path, f"{tmp_path}/vms/*/swtpm.log")
    monkeypatch.setenv("SWTPM_EXTCAP_CONFIG", str(cfg))
    return cfg


# ---------------------------------------------------------- --extcap-interfaces


def test_interfaces_lists_each_log_and_the_demo(
    logs_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--extcap-interfaces", "--extcap-version=4.0"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert _EXTCAP.fullmatch(lines[0]), lines[0]
    found = [_INTERFACE.fullmatch(line) for line in lines[1:]]
    assert all(found), lines
    names = [m.group(1) for m in found if m]
    assert names == ["swtpm-db", "swtpm-web1", "swtpm-ssh", "swtpm-demo"]
    displays = {m.group(1): m.group(2) for m in found if m}
    assert "web1" in displays["swtpm-web1"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--extcap-interfaces"],
        ["--extcap-interfaces", "--extcap-version=4.0", "--bogus", "x", "--extcap-future-thing"],
        ["--extcap-version=9.9", "--extcap-interfaces", "-v"],
    ],
    ids=["plain", "unknown-args", "unknown-short"],
)
def test_interfaces_without_vms_tolerates_unknown_args(
    argv: list[str], no_config: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert _EXTCAP.fullmatch(lines[0])
    assert [_INTERFACE.fullmatch(x).group(1) for x in lines[1:]] == ["swtpm-ssh", "swtpm-demo"]  # type: ignore[union-attr]


def test_interfaces_with_a_broken_config_file_still_list_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[local]\nglobs = not toml\n")
    monkeypatch.setenv("SWTPM_EXTCAP_CONFIG", str(cfg))
    assert cli.main(["--extcap-interfaces"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "swtpm-demo" in out


def test_interfaces_with_50_vms(tmp_path: Path) -> None:
    """Wireshark runs the listing at every start; its time is bench/bench_interfaces.py's
    (a timed assertion here would fail on a busy machine, not on slow code)."""
    for i in range(50):
        vm = tmp_path / "vms" / f"vm{i:02d}"
        vm.mkdir(parents=True)
        (vm / "swtpm.log").write_bytes(b"")
    env = extcap_env(write_config(tmp_path, f"{tmp_path}/vms/*/swtpm.log"))
    cmd = [sys.executable, "-m", "swtpm_extcap", "--extcap-interfaces", "--extcap-version=4.0"]
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=DEADLINE_S)
    assert proc.returncode == 0 and proc.stderr == b""
    assert proc.stdout.count(b"\ninterface {value=") == 52  # 50 VMs, swtpm-ssh, the demo


# ------------------------------------------------------ --extcap-dlts / --config


def test_dlts(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--extcap-dlts", "--extcap-interface", "swtpm-103"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == "dlt {number=1}{name=EN10MB}{display=Ethernet (TPM over TCP 2321)}\n"


@pytest.mark.parametrize("interface", ["swtpm-103", "swtpm-demo"])
def test_config_lines_are_well_formed(interface: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--extcap-config", "--extcap-interface", interface, "--extcap-version=4.0"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    args: dict[str, dict[str, str]] = {}
    values: dict[str, list[dict[str, str]]] = {}
    for line in out.splitlines():
        kind = line.split(" ", 1)[0]
        fields = parse_fields(line)
        if kind == "arg":
            assert {"number", "call", "display", "type", "tooltip", "group"} <= fields.keys(), line
            assert fields["call"].startswith("--")
            args[fields["number"]] = fields
        else:
            assert kind == "value" and fields["arg"] in args, line
            values.setdefault(fields["arg"], []).append(fields)
    by_call = {a["call"]: a for a in args.values()}
    assert list(by_call) == [
        "--start", "--runs", "--ctrl", "--line-comments", "--mode", "--pace-ms", "--log-level",
        "--log-file",
    ]
    # each tab holds what belongs together: mode and pace on one
    groups = {call: arg["group"] for call, arg in by_call.items()}
    assert groups == {
        "--start": "Capture", "--runs": "Capture", "--ctrl": "Capture",
        "--line-comments": "Capture", "--mode": "Follow or replay",
        "--pace-ms": "Follow or replay", "--log-level": "Debug", "--log-file": "Debug",
    }
    assert (by_call["--line-comments"]["type"], by_call["--line-comments"]["default"]) == (
        "boolflag", "false"
    )
    for number, arg in args.items():
        if arg["type"] in ("radio", "selector"):
            assert sum(v.get("default") == "true" for v in values[number]) == 1, arg["call"]
    # exactly as Wireshark's own extcaps (extcap-base.c) declare them
    level = by_call["--log-level"]
    assert (level["type"], level["display"], level["group"]) == ("selector", "Set the log level", "Debug")
    assert [v["value"] for v in values[level["number"]]] == ["message", "info", "debug", "noisy"]
    log_file = by_call["--log-file"]
    assert (log_file["type"], log_file["display"]) == ("fileselect", "Use a file for logging")
    assert (by_call["--ctrl"]["type"], by_call["--ctrl"]["default"]) == ("boolflag", "true")

    def default(call: str) -> str:
        arg = by_call[call]
        if "default" in arg:
            return arg["default"]
        return next(v["value"] for v in values[arg["number"]] if v.get("default") == "true")

    demo = interface == "swtpm-demo"
    assert default("--mode") == ("replay" if demo else "follow")
    assert default("--pace-ms") == ("50" if demo else "0")
    assert default("--start") == "all" and default("--runs") == "all"


def test_verbs_that_need_an_interface_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--extcap-dlts"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "--extcap-interface" in err


def test_reload_option_answers_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--extcap-reload-option", "--mode", "--extcap-interface", "swtpm-demo"]) == 0
    assert capsys.readouterr() == ("", "")


# ----------------------------------------------------------- capture filter


def test_capture_filter_check_as_wireshark_calls_it(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--extcap-interface", "swtpm-demo", "--extcap-capture-filter"]
    assert cli.main([*base, "Unseal, 0x17e"]) == 0
    assert capsys.readouterr() == ("", "")
    assert cli.main([*base, "tcp port 2321"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 1
    assert "'tcp'" in out and "Unseal" in out


def test_command_names_match_wiresharks_tpm_dissector() -> None:
    """Every name the dissector knows maps to its code (TPM2_CC_<name> = code)."""
    require_tshark()
    out = subprocess.run(
        ["tshark", "-G", "values"], capture_output=True, text=True, timeout=60
    ).stdout
    theirs = {
        m.group(2).lower(): int(m.group(1), 16)
        for m in re.finditer(r"^V\ttpm\.req\.cc\t(0x[0-9a-f]+)\tTPM2_CC_(\w+)$", out, re.M)
    }
    assert len(theirs) > 100
    ours = commands.tpm2_command_codes()
    assert {k: ours.get(k) for k in theirs} == theirs


# ------------------------------------------------------------------- capture


@pytest.fixture(scope="module")
def demo_codes(tmp_path_factory: pytest.TempPathFactory) -> list[int]:
    require_tshark()
    return convert_codes(tmp_path_factory.mktemp("convert"), DEMO)


def test_replay_of_the_demo_decodes_like_convert(tmp_path: Path, demo_codes: list[int]) -> None:
    pcap, proc = capture(tmp_path, "swtpm-demo", "--mode", "replay", "--pace-ms", "0", "--ctrl")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    frames = read_frames(pcap)
    assert [f.tpm_cc for f in frames if f.tpm_cc is not None] == demo_codes
    assert len(demo_codes) == DEMO_TPM_COMMANDS
    assert sum(1 for f in frames if f.payload and f.port == 2323) == DEMO_CTRL_MESSAGES
    # the backlog has the log's clock: run 1 starts at its [id=<epoch>]
    assert frames[0].ts_us == 1795664634 * 1_000_000


def test_replay_without_ctrl_leaves_the_control_channel_out(
    tmp_path: Path, demo_codes: list[int]
) -> None:
    pcap, proc = capture(tmp_path, "swtpm-demo", "--mode", "replay", "--pace-ms", "0")
    assert (proc.returncode, proc.stderr) == (0, b"")
    frames = read_frames(pcap)
    assert not [f for f in frames if f.port == 2323]
    assert [f.tpm_cc for f in frames if f.tpm_cc is not None] == demo_codes


def test_last_run_only(tmp_path: Path) -> None:
    require_tshark()
    run1, run2 = split_runs(DEMO)
    only2 = tmp_path / "run2.log"
    only2.write_bytes(run2)
    expected = convert_codes(tmp_path, only2)
    assert expected and expected != convert_codes(tmp_path, DEMO)
    pcap, proc = capture(
        tmp_path, "swtpm-demo", "--mode", "replay", "--pace-ms", "0", "--runs", "last", "--ctrl",
        "--line-comments",
    )
    assert (proc.returncode, proc.stderr) == (0, b"")
    frames = read_frames(pcap)
    assert [f.tpm_cc for f in frames if f.tpm_cc is not None] == expected
    first_line_of_run2 = run1.count(b"\n") + 1
    lines = [int(m) for f in frames for m in re.findall(r"swtpm log line (\d+)", f.comment)]
    assert lines and min(lines) >= first_line_of_run2
    assert frames[0].ts_us == 1795664639 * 1_000_000  # run 2's [id=<epoch>]


def test_capture_filter_keeps_named_commands_and_their_responses(
    tmp_path: Path, demo_codes: list[int]
) -> None:
    wanted = {0x15E, 0x17E}
    pcap, proc = capture(
        tmp_path, "swtpm-demo", "--mode", "replay", "--pace-ms", "0", "--ctrl",
        "--extcap-capture-filter", "TPM2_CC_Unseal,0x17e",
    )
    assert (proc.returncode, proc.stderr) == (0, b"")
    frames = [f for f in read_frames(pcap) if f.payload]
    assert [f.tpm_cc for f in frames if f.tpm_cc is not None] == [c for c in demo_codes if c in wanted]
    assert all(f.port == 2321 for f in frames)  # no control channel
    directions = [f.to_server for f in frames]
    assert directions == [True, False] * (len(frames) // 2)


def test_paced_replay_takes_its_time(tmp_path: Path) -> None:
    run1, run2 = split_runs(DEMO)
    log = tmp_path / "vm" / "swtpm.log"
    log.parent.mkdir()
    log.write_bytes(run2)
    records = run2.count(b"SWTPM_IO_Read")  # TPM commands; with --ctrl off only TPM records count
    began = time.monotonic()
    pcap, proc = capture(
        tmp_path, "swtpm-vm", "--mode", "replay", "--pace-ms", "4",
        config=write_config(tmp_path, f"{tmp_path}/*/swtpm.log"),
    )
    took = time.monotonic() - began
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert took >= 2 * records * 0.004
    assert len(tpm_codes(pcap)) == records


def test_follow_backlog_has_the_log_clock_and_new_records_the_wall_clock(tmp_path: Path) -> None:
    """The backlog (the log as it was at the start) keeps the synthetic clock; records
    appended after it are stamped when they are read; nothing is lost or doubled."""
    require_tshark()
    run1, run2 = split_runs(DEMO)
    log = tmp_path / "vm" / "swtpm.log"
    log.parent.mkdir()
    log.write_bytes(run1)
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)
    cfg = write_config(tmp_path, f"{tmp_path}/*/swtpm.log")
    proc = start_extcap(
        ["--capture", "--extcap-interface", "swtpm-vm", "--fifo", str(fifo), "--ctrl"],
        extcap_env(cfg),
    )
    try:
        backlog_cmds = run1.count(b"SWTPM_IO_Read")
        reader.wait_quiet()  # the backlog is in
        appended_at = time.time()
        with open(log, "ab") as fh:  # a second VM start, appended in two parts
            half = run2.index(b"\n", len(run2) // 2) + 1
            fh.write(run2[:half])
            fh.flush()
            time.sleep(0.1)
            fh.write(run2[half:])
        all_cmds = backlog_cmds + run2.count(b"SWTPM_IO_Read")
        reader.wait_quiet()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, out, err) == (0, b"", b"")
    pcap = tmp_path / "out.pcapng"
    pcap.write_bytes(reader.finish())
    frames = read_frames(pcap)
    cmds = [f for f in frames if f.tpm_cc is not None]
    assert len(cmds) == all_cmds
    epoch1 = 1795664634 * 1_000_000
    backlog, live = cmds[:backlog_cmds], cmds[backlog_cmds:]
    assert all(epoch1 <= f.ts_us < epoch1 + 60_000_000 for f in backlog)
    assert all(appended_at - 1 <= f.ts_us / 1e6 <= appended_at + 10 for f in live)
    expected = tpm_codes_of_log(tmp_path, run1 + run2)
    assert [f.tpm_cc for f in cmds] == expected


def test_last_run_only_while_following(tmp_path: Path) -> None:
    """Of the backlog, only its last run; a run that starts during the capture is shown."""
    require_tshark()
    run1, run2 = split_runs(DEMO)
    run3 = run1.replace(b"[id=1795664634]", f"[id={int(time.time())}]".encode())
    log = tmp_path / "vm" / "swtpm.log"
    log.parent.mkdir()
    log.write_bytes(run1 + run2)
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)
    proc = start_extcap(
        ["--capture", "--extcap-interface", "swtpm-vm", "--fifo", str(fifo), "--runs", "last"],
        extcap_env(write_config(tmp_path, f"{tmp_path}/*/swtpm.log")),
    )
    try:
        reader.wait_quiet()
        with open(log, "ab") as fh:
            fh.write(run3)
        reader.wait_quiet()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, err) == (0, b"")
    pcap = tmp_path / "out.pcapng"
    pcap.write_bytes(reader.finish())
    assert tpm_codes(pcap) == tpm_codes_of_log(tmp_path, run2) + tpm_codes_of_log(tmp_path, run3)


def tpm_codes_of_log(tmp_path: Path, data: bytes) -> list[int]:
    log = tmp_path / f"expected-{time.monotonic_ns()}.log"
    log.write_bytes(data)
    return convert_codes(tmp_path, log)


def test_only_new_records(tmp_path: Path) -> None:
    require_tshark()
    run1, run2 = split_runs(DEMO)
    log = tmp_path / "vm" / "swtpm.log"
    log.parent.mkdir()
    log.write_bytes(run1)
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)
    cfg = write_config(tmp_path, f"{tmp_path}/*/swtpm.log")
    proc = start_extcap(
        ["--capture", "--extcap-interface", "swtpm-vm", "--fifo", str(fifo), "--start", "new"],
        extcap_env(cfg),
    )
    try:
        reader.wait_for(lambda: len(reader.data) > 0)  # the pcapng header: the extcap is up
        time.sleep(0.3)
        with open(log, "ab") as fh:
            fh.write(run2)
        reader.wait_quiet()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, err) == (0, b"")
    pcap = tmp_path / "out.pcapng"
    pcap.write_bytes(reader.finish())
    assert tpm_codes(pcap) == tpm_codes_of_log(tmp_path, run2)


# ------------------------------------------------------------ capture errors


def _assert_failed_cleanly(
    proc: subprocess.CompletedProcess[bytes], reader_data: bytes, code: int
) -> str:
    assert proc.returncode == code
    assert proc.stdout == b"" and reader_data == b""  # fifo opened and closed, nothing in it
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_unreadable_log_fails_with_one_line(tmp_path: Path) -> None:
    """A root-owned mode-0600 log seen by a user who may not read it: run the extcap
    as root *without* CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, so file modes apply."""
    prefix = without_dac_override()
    log = tmp_path / "vm" / "swtpm.log"
    log.parent.mkdir()
    log.write_bytes(DEMO.read_bytes())
    log.chmod(0o000)
    tmp_path.chmod(0o755)
    cfg = write_config(tmp_path, f"{tmp_path}/*/swtpm.log")
    fifo = make_fifo(tmp_path)
    fifo.chmod(0o666)
    reader = FifoReader(fifo)
    proc = start_extcap(
        ["--capture", "--extcap-interface", "swtpm-vm", "--fifo", str(fifo)],
        extcap_env(cfg),
        prefix=prefix,
    )
    out, err = proc.communicate(timeout=DEADLINE_S)
    line = _assert_failed_cleanly(
        subprocess.CompletedProcess(proc.args, proc.returncode, out, err), reader.finish(), 1
    )
    assert str(log) in line and "root" in line and "setfacl" in line


@pytest.mark.parametrize(
    ("options", "code", "words"),
    [
        (["--extcap-interface", "swtpm-nosuchvm"], 1, "no interface swtpm-nosuchvm"),
        (["--extcap-interface", "swtpm-demo", "--mode", "sideways"], 2, "--mode 'sideways'"),
        (["--extcap-interface", "swtpm-demo", "--pace-ms", "-5"], 2, "--pace-ms"),
        (["--extcap-interface", "swtpm-demo", "--start", "new", "--mode", "replay"], 2, "nothing"),
        (["--extcap-interface", "swtpm-demo", "--extcap-capture-filter", "Frobnicate"], 2,
         "Frobnicate"),
        (["--extcap-interface", "swtpm-demo", "--log-level", "loud"], 2, "--log-level"),
        (["--extcap-interface", "swtpm-demo", "--log-file", "/nonexistent/dir/x.log"], 2,
         "/nonexistent/dir/x.log"),
    ],
    ids=["unknown-interface", "bad-mode", "bad-pace", "new-replay", "bad-filter", "bad-level",
         "bad-log-file"],
)
def test_capture_errors_are_one_line_and_close_the_fifo(
    tmp_path: Path, options: list[str], code: int, words: str
) -> None:
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)
    proc = start_extcap(["--capture", "--fifo", str(fifo), *options], extcap_env())
    out, err = proc.communicate(timeout=DEADLINE_S)
    line = _assert_failed_cleanly(
        subprocess.CompletedProcess(proc.args, proc.returncode, out, err), reader.finish(), code
    )
    assert line.startswith("swtpm-extcap: ") and words in line


def test_log_file_gets_the_debug_messages(tmp_path: Path) -> None:
    logfile = tmp_path / "extcap.log"
    pcap, proc = capture(
        tmp_path, "swtpm-demo", "--mode", "replay", "--pace-ms", "0",
        "--log-level", "debug", "--log-file", str(logfile),
    )
    assert (proc.returncode, proc.stderr) == (0, b"")
    text = logfile.read_text()
    assert "backlog read" in text and "(153 commands, 153 responses)" in text


# ------------------------------- hostile names, settings, disks, descriptors


def one_line(stderr: bytes) -> str:
    """The one line a failure writes to stderr (no traceback, nothing else)."""
    lines = stderr.decode("utf-8").splitlines()  # strict: valid UTF-8 too
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (needs root and mount): a disk that fills up."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("io", ["locale", "strict"], ids=["C.UTF-8", "strict-stdout"])
def test_a_log_name_that_is_not_utf8_is_listed_and_captured(tmp_path: Path, io: str) -> None:
    """A libvirt log named with the byte 0xff, under a UTF-8 locale (Python's stdio
    there may be strict, as under en_US.UTF-8: PYTHONIOENCODING says so): the listing
    is valid UTF-8 with the byte shown as ``\\xff``, and the interface captures."""
    folder = tmp_path / "libvirt"
    folder.mkdir()
    shutil.copy(os.fsencode(DEMO), os.path.join(os.fsencode(folder), b"caf\xff-swtpm.log"))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[local]\nlibvirt_dir = "{folder}"\n')
    env = extcap_env(cfg, LC_ALL="C.UTF-8")
    if io == "strict":
        env["PYTHONIOENCODING"] = "utf-8:strict"
    proc = subprocess.run([sys.executable, "-m", "swtpm_extcap", "--extcap-interfaces"],
                          capture_output=True, env=env, timeout=DEADLINE_S)
    assert (proc.returncode, proc.stderr) == (0, b"")
    lines = proc.stdout.decode("utf-8").splitlines()
    assert lines[1] == "interface {value=swtpm-caf}{display=SWTPM libvirt caf\\xff}"
    assert lines[3].startswith("interface {value=swtpm-demo}")
    fifo = make_fifo(tmp_path)
    reader = FifoReader(fifo)
    cap = subprocess.run(
        [sys.executable, "-m", "swtpm_extcap", "--capture", "--extcap-interface", "swtpm-caf",
         "--fifo", str(fifo), "--mode", "replay"],
        capture_output=True, env=env, timeout=DEADLINE_S,
    )
    assert (cap.returncode, cap.stderr) == (0, b"")
    pcap = tmp_path / "caf.pcapng"
    pcap.write_bytes(reader.finish())
    assert len(tpm_codes(pcap)) == DEMO_TPM_COMMANDS


@pytest.mark.parametrize("stdout", ["closed", "/dev/full"])
def test_listing_with_stdout_closed_or_full(stdout: str) -> None:
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "swtpm_extcap", "--extcap-interfaces"],
            stdout=full if stdout == "/dev/full" else None, stderr=subprocess.PIPE,
            env=extcap_env(), timeout=DEADLINE_S,
            preexec_fn=(lambda: os.close(1)) if stdout == "closed" else None,
        )
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert line == ("swtpm-extcap: stdout is closed: nothing can carry the answer to Wireshark"
                    if stdout == "closed" else
                    "swtpm-extcap: cannot write the answer to stdout: No space left on device")


@pytest.mark.parametrize("what", ["/dev/zero", "fifo", "huge"])
def test_listing_survives_a_settings_file_that_is_no_file(tmp_path: Path, what: str) -> None:
    """``/dev/zero``, a fifo nobody writes, a 2 MiB file: the listing answers at once,
    quietly, with the demo; the settings file is skipped."""
    if what == "fifo":
        cfg = tmp_path / "config.toml"
        os.mkfifo(cfg)
    elif what == "huge":
        cfg = tmp_path / "config.toml"
        cfg.write_bytes(b"#" * (2 << 20))
    else:
        cfg = Path(what)
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "swtpm_extcap", "--extcap-interfaces"],
                          capture_output=True, env=extcap_env(cfg), timeout=DEADLINE_S)
    assert time.monotonic() - began < 5.0
    assert (proc.returncode, proc.stderr) == (0, b"")
    lines = proc.stdout.decode().splitlines()
    assert any(line.startswith("interface {value=swtpm-demo}") for line in lines)
    assert lines[-1].startswith("interface {value=swtpm-config-error}{display=SWTPM settings error:")


def test_a_glob_over_the_whole_tree_is_bounded_and_says_so(tmp_path: Path) -> None:
    from swtpm_extcap.interfaces.local import MAX_GLOB_MATCHES, MAX_GLOB_SECONDS

    cfg = write_config(tmp_path, "/*/*/*/*/*")
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "swtpm_extcap", "--extcap-interfaces"],
                          capture_output=True, env=extcap_env(cfg), timeout=60)
    took = time.monotonic() - began
    assert (proc.returncode, proc.stderr) == (0, b"")
    lines = proc.stdout.decode().splitlines()
    assert took < MAX_GLOB_SECONDS + 5
    assert len(lines) <= MAX_GLOB_MATCHES + 3
    note = parse_fields(lines[-1])
    assert note["value"] == extcap.LISTING_NOTE
    assert "listing cut" in note["display"] and str(cfg) in note["display"]


def test_a_failed_capture_leaves_a_regular_file_as_fifo_alone(tmp_path: Path) -> None:
    """``--fifo`` a regular file (by hand): a capture that fails neither truncates
    nor creates it; one that runs writes the pcapng into it."""
    target = tmp_path / "precious.txt"
    target.write_bytes(b"do not lose me\n")
    missing = tmp_path / "absent.pcapng"
    for fifo in (target, missing):
        proc = subprocess.run(
            [sys.executable, "-m", "swtpm_extcap", "--capture", "--extcap-interface",
             "swtpm-nosuchvm", "--fifo", str(fifo)],
            capture_output=True, env=extcap_env(), timeout=DEADLINE_S,
        )
        assert proc.returncode == 1
        assert "no interface swtpm-nosuchvm" in one_line(proc.stderr)
    assert target.read_bytes() == b"do not lose me\n"
    assert not missing.exists()
    proc = subprocess.run(
        [sys.executable, "-m", "swtpm_extcap", "--capture", "--extcap-interface", "swtpm-demo",
         "--fifo", str(target), "--mode", "replay", "--pace-ms", "0"],
        capture_output=True, env=extcap_env(), timeout=DEADLINE_S,
    )
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert len(tpm_codes(target)) == DEMO_TPM_COMMANDS


def test_capture_onto_a_full_disk_is_one_line(tmp_path: Path, small_disk: Path) -> None:
    out = small_disk / "capture.pcapng"
    proc = subprocess.run(
        [sys.executable, "-m", "swtpm_extcap", "--capture", "--extcap-interface", "swtpm-demo",
         "--fifo", str(out), "--mode", "replay", "--pace-ms", "0",
         "--line-comments"],  # with comments the demo's pcapng is larger than the disk
        capture_output=True, env=extcap_env(), timeout=DEADLINE_S,
    )
    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        f"swtpm-extcap: cannot write to the fifo {out}: No space left on device;"
        " the capture is cut short"
    )


@pytest.mark.parametrize("where", ["/dev/full", "full tmpfs"])
def test_a_log_file_on_a_full_disk_neither_floods_stderr_nor_fails_the_capture(
    tmp_path: Path, small_disk: Path, where: str
) -> None:
    if where == "/dev/full":
        logfile = "/dev/full"
    else:
        filler = small_disk / "filler"
        with open(filler, "wb", buffering=0) as fh:  # fill the disk to its last byte
            with pytest.raises(OSError):
                while True:
                    fh.write(b"\0" * 512)
        logfile = str(small_disk / "extcap.log")
    pcap, proc = capture(tmp_path, "swtpm-demo", "--mode", "replay", "--pace-ms", "0",
                         "--log-level", "noisy", "--log-file", logfile)
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert len(tpm_codes(pcap)) == DEMO_TPM_COMMANDS
