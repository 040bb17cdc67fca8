"""The product, end to end, with real parts only.

A real swtpm logs at level 20 into a temporary folder named by a settings file;
swtpm-extcap is installed by the real ``install.sh`` into a temporary ``$HOME``;
``tshark -i swtpm-<name>`` runs the installed launcher while tpm2-tools drive
swtpm, and the TPM command codes tshark decodes, live, are the ones tpm2-tools
sent (as their pcap TCTI recorded them: an oracle that does not come from the
log). Plus the pyshark recipe of the README.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import realtpm
from conftest import REPO
from test_extcap import DEADLINE_S, DEMO, convert_codes, write_config

pytestmark = pytest.mark.skipif(
    bool(realtpm.missing_tools("swtpm", "tpm2_startup", "tshark")),
    reason="needs swtpm, tpm2-tools and tshark on PATH",
)


@dataclass(frozen=True)
class Installed:
    home: Path
    launcher: Path
    config: Path
    vms: Path

    def env(self) -> dict[str, str]:
        """The user's environment: their $HOME (with the extcap) and settings file."""
        env = dict(os.environ)
        env.update(HOME=str(self.home), SWTPM_EXTCAP_CONFIG=str(self.config))
        env.pop("PYTHONPATH", None)  # the installed copy runs, not this checkout
        return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """``HOME=tmp bash install.sh --venv tmp/venv`` (the real installer), once per module."""
    root = tmp_path_factory.mktemp("e2e")
    home = root / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("XDG_DATA_HOME", None)
    proc = subprocess.run(
        ["bash", str(REPO / "install.sh"), "--personal", "--venv", str(root / "venv")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"install.sh failed:\n{proc.stdout}\n{proc.stderr}"
    launcher = home / ".config" / "wireshark" / "extcap" / "swtpm-extcap"  # tshark 4.0
    assert launcher.is_file() and os.access(launcher, os.X_OK), proc.stdout
    vms = root / "vms"
    vms.mkdir()
    config = write_config(root, f"{vms}/*/swtpm.log")
    return Installed(home, launcher, config, vms)


@dataclass
class LiveTshark:
    """``tshark -i IFACE -l -T fields``: one line per decoded TPM command, timestamped
    on arrival."""

    proc: subprocess.Popen[str]
    lines: list[tuple[float, list[str]]] = field(default_factory=list)
    capturing: threading.Event = field(default_factory=threading.Event)
    stderr: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, interface: str, env: dict[str, str], *extra: str) -> LiveTshark:
        proc = subprocess.Popen(
            ["tshark", "-n", "-l", "-i", interface, *extra, "-Y", "tpm.req.cc",
             "-T", "fields", "-e", "frame.time_epoch", "-e", "tpm.req.cc"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )
        live = cls(proc)
        threading.Thread(target=live._read_out, daemon=True).start()
        threading.Thread(target=live._read_err, daemon=True).start()
        return live

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.time(), line.split()))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            if line.startswith("Capturing on"):
                self.capturing.set()

    def codes(self) -> list[int]:
        return [int(cols[1], 16) for _, cols in self.lines]

    def wait_for(self, count: int, timeout: float = DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            assert self.proc.poll() is None, f"tshark ended: {''.join(self.stderr)}"
            assert time.monotonic() < deadline, (
                f"tshark decoded {len(self.lines)} of {count} commands; {''.join(self.stderr)}"
            )
            time.sleep(0.02)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(DEADLINE_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def wait_until_opened(path: Path, *, besides: int | None, timeout: float = DEADLINE_S) -> None:
    """Wait until a process other than ``besides`` (swtpm, the log's writer) holds
    ``path`` open (Linux /proc): the extcap's follow."""
    target = str(path.resolve())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for fd_dir in Path("/proc").glob("[0-9]*/fd"):
            if fd_dir.parent.name == str(besides):
                continue
            try:
                if any(os.readlink(fd) == target for fd in fd_dir.iterdir()):
                    time.sleep(0.2)  # past the open: follow() reads from there
                    return
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError(f"nobody opened {path}")


def _command_codes(oracle: Sequence[tuple[str, bytes]]) -> list[int]:
    return [int.from_bytes(msg[6:10], "big") for d, msg in oracle if d == "command"]


def test_tshark_lists_the_installed_interfaces(installed: Installed) -> None:
    (installed.vms / "web0").mkdir(exist_ok=True)
    (installed.vms / "web0" / "swtpm.log").write_bytes(b"")
    out = subprocess.run(["tshark", "-D"], env=installed.env(), capture_output=True, text=True,
                         timeout=60).stdout
    assert "swtpm-web0 (SWTPM web0" in out and "swtpm-demo (SWTPM demo" in out


def test_tshark_decodes_a_real_swtpm_live(installed: Installed, tmp_path: Path) -> None:
    """tpm2-tools drive a real swtpm (Proxmox-style prefix, level 20) while
    ``tshark -i swtpm-web1`` runs: each half of the workload is decoded before the
    next starts, with wall-clock timestamps, and the command codes are exactly
    what tpm2-tools sent."""
    vm = installed.vms / "web1"
    oracle_pcap = tmp_path / "oracle.pcapng"
    epoch = int(time.time())  # records logged before the capture opened the log run on this clock
    with realtpm.start_swtpm(vm, prefix=f"[id={epoch}] ") as sw:
        tshark = LiveTshark.start("swtpm-web1", installed.env())
        try:
            assert tshark.capturing.wait(DEADLINE_S), "".join(tshark.stderr)
            wait_until_opened(sw.log_path, besides=sw.pid)  # the extcap follows the log: what comes is live
            half = len(realtpm.WORKLOAD) // 2
            began = time.time()
            sent = 0
            for part in (realtpm.WORKLOAD[:half], realtpm.WORKLOAD[half:]):
                realtpm.run_workload(sw, tmp_path, pcap=oracle_pcap, workload=part)
                sent = len(_command_codes(realtpm.read_oracle_payloads(oracle_pcap)))
                tshark.wait_for(sent, timeout=5)  # decoded live, before the next part runs
            ended = time.time()
            time.sleep(0.3)  # nothing more is coming
        finally:
            rc = tshark.stop()
    assert rc == 0, "".join(tshark.stderr)
    oracle = realtpm.read_oracle_payloads(oracle_pcap)
    assert tshark.codes() == _command_codes(oracle)
    assert len(tshark.codes()) == sent > 20
    stamps = [float(cols[0]) for _, cols in tshark.lines]
    assert all(epoch <= t <= ended + 1 for t in stamps), (epoch, ended, stamps)
    live = [t for t in stamps if t >= began - 1]
    assert len(live) >= len(stamps) - 4, (began, stamps)  # at most the start-up frames are backlog


def test_tshark_replays_the_demo_and_ends(installed: Installed, tmp_path: Path) -> None:
    """The demo with the replay pace set to 0 through a tshark preference: tshark ends
    by itself at the end of the log, with the codes of `convert`."""
    out = tmp_path / "demo.pcapng"
    proc = subprocess.run(
        ["tshark", "-i", "swtpm-demo", "-o", "extcap.swtpm_demo.pacems:0", "-w", str(out)],
        env=installed.env(), capture_output=True, text=True, timeout=DEADLINE_S,
    )
    assert proc.returncode == 0, proc.stderr
    got = subprocess.run(
        ["tshark", "-n", "-r", str(out), "-Y", "tpm.req.cc", "-T", "fields", "-e", "tpm.req.cc"],
        capture_output=True, text=True, timeout=60,
    ).stdout.split()
    assert [int(c, 16) for c in got] == convert_codes(tmp_path, DEMO)


# ------------------------------------------------------------- pyshark recipe


def tpm_commands_live(interface: str, count: int, *tshark_options: str) -> Iterator[str]:
    """Yield the names of the next ``count`` TPM commands on an swtpm-extcap interface,
    as Wireshark decodes them, live.

    pyshark's LiveCapture cannot start an extcap, so tshark captures (it runs the
    extcap) and writes pcapng to a pipe, and pyshark decodes that pipe.
    """
    from pyshark.capture.pipe_capture import PipeCapture

    capture_proc = subprocess.Popen(
        ["tshark", "-i", interface, *tshark_options, "-w", "-", "-Q"],
        stdout=subprocess.PIPE,
    )
    assert capture_proc.stdout is not None
    decoder = PipeCapture(
        pipe=os.dup(capture_proc.stdout.fileno()),  # pyshark closes the one it gets
        display_filter="tpm2.commandCode",
        use_json=False,  # PDML: the field names below are the same for every tshark
    )
    try:
        for seen, packet in enumerate(decoder, start=1):
            # the plugin's TPM 2.0 layer (install.sh installs it)
            yield packet.tpm2.get_field("commandCode").showname_value  # "TPM_CC_Startup (0x00000144)"
            if seen == count:
                break
    finally:
        capture_proc.terminate()
        capture_proc.wait()
        capture_proc.stdout.close()
        decoder.close()


def test_pyshark_recipe(
    installed: Installed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pyshark_loop: object
) -> None:
    pytest.importorskip("pyshark")
    from importlib.metadata import version

    assert version("pyshark") == "0.6"
    for key, value in installed.env().items():
        monkeypatch.setenv(key, value)
    began = time.monotonic()
    names = list(tpm_commands_live("swtpm-demo", 12, "-o", "extcap.swtpm_demo.pacems:5"))
    assert time.monotonic() - began < DEADLINE_S
    expected = convert_codes(tmp_path, DEMO)[:12]
    assert [int(n.rsplit("(", 1)[1].rstrip(")"), 16) for n in names] == expected
    assert names[0].startswith("TPM_CC_Startup")
