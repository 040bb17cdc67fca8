"""Drive REAL parts for tests: a real ``swtpm``, real tpm2-tools, real ``tshark``.

Plain functions and classes, no pytest fixtures (wrap them in ``conftest.py``).

* :func:`start_swtpm` starts ``swtpm socket`` on free 127.0.0.1 TCP ports,
  logging to ``<workdir>/swtpm.log`` (swtpm *appends*, so starting it again on
  the same workdir simulates a VM restart: same log, same TPM state).
* :func:`run_tpm2` runs one tpm2-tools command against it, optionally through
  the ``pcap`` TCTI of libtss2-tcti-pcap0, so that the *client* writes its own
  pcapng of every TPM command and response: an oracle that does not come from
  swtpm's log.
* :func:`read_oracle_payloads` turns such pcap(s) into an ordered list of
  ``("command" | "response", bytes)`` with ``tshark``.
* :data:`WORKLOAD` is a short firmware/boot + disk-unlock like tpm2-tools flow.

Facts about the pcap TCTI (tpm2-tss 3.2.1, ``src/tss2-tcti/tcti-pcap*.c``):

* TCTI string ``pcap:<child-tcti>:<child-conf>``, here
  ``pcap:swtpm:host=127.0.0.1,port=P`` (the swtpm TCTI itself uses P+1 as
  its control port; it sends one ``CMD_SET_LOCALITY 0`` there per tool run,
  which is in swtpm's log but, being control channel, never in the pcap).
* The output file is named by the environment variable ``TCTI_PCAP_FILE``
  (default ``tpm2_log.pcap`` in the current directory; ``-``/``stdout`` and
  ``stderr`` are accepted too). It is opened ``O_WRONLY|O_APPEND|O_CREAT``:
  every TCTI instance (= every tool run) *appends* a new pcapng section
  (SHB + IDB) followed by its packets, so many runs can share one file and
  tshark reads all sections in order.
* Link type 228 (raw IPv4). One enhanced packet block per TPM message (the
  whole command buffer at transmit, the whole response at receive) wrapped in
  fake IPv4/TCP: the host is port 50000, the TPM is port 2321 (the port of
  Wireshark's TPM 2.0 dissector); host and TPM IPv4 addresses are random per
  TCTI instance. Command = ``tcp.dstport == 2321``, response =
  ``tcp.srcport == 2321``.
* A command is written to the pcap *before* it is handed to the child TCTI,
  so a command whose transmission fails is still in the pcap; a failed
  receive writes nothing.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

__all__ = [
    "HOST",
    "PCAP_TPM_PORT",
    "WORKLOAD",
    "OracleError",
    "Swtpm",
    "SwtpmStartError",
    "Tpm2ToolError",
    "count_log_commands",
    "missing_tools",
    "read_oracle_payloads",
    "run_tpm2",
    "run_workload",
    "start_swtpm",
]

#: everything stays on loopback
HOST = "127.0.0.1"
#: the TCP port the pcap TCTI gives the TPM side of its fake connection
PCAP_TPM_PORT = 2321
#: the TCP port the pcap TCTI gives the host side of its fake connection
PCAP_HOST_PORT = 50000

Direction = Literal["command", "response"]

#: NV index used by WORKLOAD (owner hierarchy, ordinary index range)
_NV_INDEX = "0x1500016"

#: A firmware/boot + disk-unlock like flow for a fresh swtpm without a
#: resource manager. Run each entry with ``run_tpm2(entry, swtpm, cwd=...)``;
#: files (``primary.ctx``, ``secret.bin``, ``nv.bin``) are created in cwd.
#: About 35 TPM commands, well under a second against swtpm. It leaves no
#: NV index and no transient object behind, so it can run again on the same
#: TPM state (e.g. after a simulated VM restart).
WORKLOAD: list[list[str]] = [
    # firmware: TPM2_Startup(CLEAR) (TPM_RC_INITIALIZE with startup-clear; rc 0)
    ["tpm2_startup", "-c"],
    ["tpm2_getcap", "properties-fixed"],
    # firmware measurements
    ["tpm2_pcrextend",
     "0:sha256=" + "11" * 32 + ",sha1=" + "22" * 20],
    ["tpm2_pcrextend", "7:sha256=" + "33" * 32],
    ["tpm2_pcrread", "sha256:0,7+sha1:0"],
    # OS / disk unlock
    ["tpm2_getrandom", "-o", "secret.bin", "32"],
    ["tpm2_createprimary", "-C", "o", "-G", "ecc256", "-c", "primary.ctx"],
    ["tpm2_flushcontext", "-t"],
    ["tpm2_nvdefine", _NV_INDEX, "-C", "o", "-s", "32", "-a", "ownerread|ownerwrite"],
    ["tpm2_nvwrite", _NV_INDEX, "-C", "o", "-i", "secret.bin"],
    ["tpm2_nvread", _NV_INDEX, "-C", "o", "-s", "32", "-o", "nv.bin"],
    ["tpm2_nvundefine", _NV_INDEX, "-C", "o"],
    ["tpm2_getrandom", "--hex", "8"],
    # OS shutdown
    ["tpm2_shutdown", "-c"],
]


class SwtpmStartError(RuntimeError):
    """swtpm did not come up."""


class Tpm2ToolError(RuntimeError):
    """A tpm2-tools command exited non-zero (with ``check=True``)."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.proc = proc
        super().__init__(
            f"{' '.join(map(str, proc.args))} exited {proc.returncode}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )


class OracleError(ValueError):
    """The client-side pcap does not contain well-formed TPM messages."""


def missing_tools(*names: str) -> list[str]:
    """The names (default: swtpm, tpm2_startup, tshark) not found on PATH."""
    return [n for n in (names or ("swtpm", "tpm2_startup", "tshark")) if shutil.which(n) is None]


# --------------------------------------------------------------------- swtpm

_LIVE: set[Swtpm] = set()


@atexit.register
def _stop_leftovers() -> None:
    for sw in list(_LIVE):
        sw.stop()


@dataclass(eq=False)
class Swtpm:
    """A running ``swtpm socket`` (child process of this Python process)."""

    workdir: Path
    log_path: Path
    state_dir: Path
    pid_path: Path
    stderr_path: Path
    port: int
    ctrl_port: int
    args: list[str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tcti(self, *, pcap: bool = False) -> str:
        """The TPM2TOOLS_TCTI / -T string for this swtpm."""
        conf = f"swtpm:host={HOST},port={self.port}"
        return "pcap:" + conf if pcap else conf

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM swtpm (it saves its state and exits), SIGKILL after
        ``timeout`` s; wait for it. Returns its exit status; idempotent."""
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            return proc.returncode
        finally:
            _LIVE.discard(self)

    def __enter__(self) -> Swtpm:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _pick_port_pair(rng: random.Random) -> int:
    """A port P with P and P+1 free on 127.0.0.1. Chosen outside the kernel's
    ephemeral range, so that outgoing connections (which take their source
    port from that range) cannot grab P or P+1 before swtpm binds them."""
    lo, hi = _ephemeral_range()
    ranges = [(r0, r1) for r0, r1 in ((10000, lo - 2), (hi + 1, 65533)) if r1 - r0 > 100]
    if not ranges:
        ranges = [(1025, 65533)]
    for _ in range(500):
        r0, r1 = rng.choice(ranges)
        p = rng.randrange(r0, r1)
        if _port_free(p) and _port_free(p + 1):
            return p
    raise SwtpmStartError("found no free pair of TCP ports on 127.0.0.1")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_bytes()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def start_swtpm(
    workdir: Path,
    *,
    prefix: str | None = None,
    level: int = 20,
    tpm2: bool = True,
    startup_clear: bool = True,
    timeout: float = 10.0,
    attempts: int = 5,
) -> Swtpm:
    """Start ``swtpm socket`` (data port P, ctrl port P+1 on 127.0.0.1),
    state in ``<workdir>/state``, log appended to ``<workdir>/swtpm.log``.

    ``startup_clear`` adds ``startup-clear`` to ``--flags not-need-init`` so
    that swtpm itself sends TPM2_Startup(CLEAR) and tpm2-tools work at once
    (``tpm2_startup -c`` then gets TPM_RC_INITIALIZE and still exits 0).
    Starting again on the same workdir reuses log and state (VM restart);
    the previous instance must be stopped first (swtpm locks its state dir;
    this raises at once if a tracked instance still runs there). The ports
    are picked afresh each time, outside the ephemeral port range. Returns
    once both ports accept connections (the probe connections leave no
    trace in the log). If swtpm loses a race for a port it logs
    ``Could not open TCP socket: Address already in use`` into the log and
    exits; then other ports are tried (up to ``attempts``). Any other
    failure raises :class:`SwtpmStartError` with swtpm's new log lines.
    The process is a child of this process (no ``--daemon``); a leftover
    one is stopped at interpreter exit.
    """
    workdir = Path(workdir).resolve()
    state_dir = workdir / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "swtpm.log"
    pid_path = workdir / "swtpm.pid"
    stderr_path = workdir / "swtpm.stderr"
    logopt = f"file={log_path},level={level}"
    if prefix is not None:
        if "," in prefix:
            raise ValueError("swtpm cannot take a ',' in the log prefix")
        logopt += f",prefix={prefix}"
    flags = "not-need-init" + (",startup-clear" if startup_clear else "")
    for other in list(_LIVE):
        if other.state_dir == state_dir and other.running:
            raise SwtpmStartError(f"swtpm (pid {other.pid}) still runs on {state_dir}; stop() it first")
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    last_err = ""
    for _ in range(attempts):
        log_size = log_path.stat().st_size if log_path.exists() else 0
        port = _pick_port_pair(rng)
        args = ["swtpm", "socket"] + (["--tpm2"] if tpm2 else []) + [
            "--tpmstate", f"dir={state_dir}",
            "--server", f"type=tcp,port={port},bindaddr={HOST}",
            "--ctrl", f"type=tcp,port={port + 1},bindaddr={HOST}",
            "--flags", flags,
            "--log", logopt,
            "--pid", f"file={pid_path}",
        ]
        pid_path.unlink(missing_ok=True)
        with open(stderr_path, "ab") as err:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        sw = Swtpm(workdir, log_path, state_dir, pid_path, stderr_path, port, port + 1, args, proc)
        _LIVE.add(sw)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _accepts(port) and _accepts(port + 1) and proc.poll() is None:
                return sw
            time.sleep(0.02)
        rc = sw.stop()
        new_log = _read_from(log_path, log_size)
        last_err = (f"swtpm {'exited ' + str(rc) if rc is not None else 'timed out'}; "
                    f"args: {args}\nstderr: {_tail(stderr_path)}\nnew log lines: {new_log[-2000:]}")
        if "Address already in use" not in new_log:
            break
        # lost a race for the ports (swtpm logged one line about it): try other ports
    raise SwtpmStartError(last_err)


# ----------------------------------------------------------------- tpm2-tools

def run_tpm2(
    args: Sequence[str],
    swtpm: Swtpm,
    *,
    pcap: Path | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run one tpm2-tools command against ``swtpm`` (text output captured).

    With ``pcap``, go through the pcap TCTI, which appends this run's TPM
    traffic to that pcapng file (new section per run; see module docstring).
    Raises :class:`Tpm2ToolError` on a non-zero exit if ``check``.
    """
    env = dict(os.environ)
    for k in ("TPM2TOOLS_TCTI", "TCTI_PCAP_FILE", "TPM2TOOLS_ENABLE_ERRATA"):
        env.pop(k, None)
    env["TPM2TOOLS_TCTI"] = swtpm.tcti(pcap=pcap is not None)
    if pcap is not None:
        env["TCTI_PCAP_FILE"] = str(Path(pcap).resolve())
    proc = subprocess.run(
        list(args), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise Tpm2ToolError(proc)
    return proc


def run_workload(
    swtpm: Swtpm,
    cwd: Path,
    *,
    pcap: Path | None = None,
    workload: Iterable[Sequence[str]] = WORKLOAD,
) -> list[subprocess.CompletedProcess[str]]:
    """Run every command of ``workload`` in order (check=True)."""
    return [run_tpm2(cmd, swtpm, pcap=pcap, cwd=cwd) for cmd in workload]


# ------------------------------------------------------------------- oracle

_CMD_TAGS = (0x8001, 0x8002)
_RSP_TAGS = (0x8001, 0x8002, 0x00C4)  # 0x00C4: TPM 1.2 style error for a bad tag


def _check(direction: Direction, msg: bytes, where: str) -> None:
    if len(msg) < 10:
        raise OracleError(f"{where}: {direction} of {len(msg)} bytes: {msg.hex()}")
    tag, size = struct.unpack(">HI", msg[:6])
    if tag not in (_CMD_TAGS if direction == "command" else _RSP_TAGS):
        raise OracleError(f"{where}: {direction} with tag 0x{tag:04x}: {msg[:16].hex()}")
    if size != len(msg):
        raise OracleError(f"{where}: {direction} header size {size} but {len(msg)} bytes")


def read_oracle_payloads(pcap: Path | Sequence[Path]) -> list[tuple[Direction, bytes]]:
    """TPM commands and responses, in order, from pcap TCTI output file(s).

    tshark runs with TCP reassembly off (``tcp.desegment_tcp_streams:FALSE``),
    so ``tcp.payload`` is exactly what each packet carries; the pcap TCTI
    writes one packet per whole message. As a safety net the payloads are
    still reassembled here per fake connection and direction by the TPM
    header's size field, so a message split over packets also comes out
    whole. Every message is checked: at least 10 bytes, a command tag 80 01
    / 80 02 (responses also 00 C4), header size == byte length.
    """
    files = [Path(pcap)] if isinstance(pcap, (str, os.PathLike)) else [Path(p) for p in pcap]
    out: list[tuple[Direction, bytes]] = []
    for f in files:
        out.extend(_read_one(f))
    return out


def _read_one(pcap: Path) -> list[tuple[Direction, bytes]]:
    proc = subprocess.run(
        ["tshark", "-n", "-r", str(pcap),
         "-o", "tcp.desegment_tcp_streams:FALSE",
         "-o", "tcp.analyze_sequence_numbers:FALSE",
         "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f",
         "-e", "frame.number", "-e", "frame.section_number",
         "-e", "ip.src", "-e", "ip.dst",
         "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.payload"],
        capture_output=True, text=True, timeout=120,
    )
    if proc.returncode != 0:
        raise OracleError(f"tshark failed on {pcap} ({proc.returncode}): {proc.stderr}")
    out: list[tuple[Direction, bytes]] = []
    pending: dict[tuple[str, ...], bytearray] = {}
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        cols = line.split("\t")
        cols += [""] * (7 - len(cols))
        frame, section, src, dst, sport, dport, payload = cols[:7]
        if not payload:
            continue
        if dport == str(PCAP_TPM_PORT):
            direction: Direction = "command"
        elif sport == str(PCAP_TPM_PORT):
            direction = "response"
        else:
            raise OracleError(f"{pcap} frame {frame}: TCP {sport}->{dport} is not TPM traffic")
        key = (section, src, dst, sport, dport)
        buf = pending.setdefault(key, bytearray())
        buf += bytes.fromhex(payload.replace(":", ""))
        while len(buf) >= 6:
            size = struct.unpack(">I", buf[2:6])[0]
            if size < 10:
                raise OracleError(f"{pcap} frame {frame}: {direction} header size {size}")
            if len(buf) < size:
                break
            msg = bytes(buf[:size])
            del buf[:size]
            _check(direction, msg, f"{pcap} frame {frame}")
            out.append((direction, msg))
    left = {k: v for k, v in pending.items() if v}
    if left:
        raise OracleError(f"{pcap}: incomplete TPM message(s) at the end: "
                          + "; ".join(f"{k}: {bytes(v[:16]).hex()}" for k, v in left.items()))
    return out


def count_log_commands(log_path: Path) -> int:
    """How many ``SWTPM_IO_Read: length`` headers (TPM commands) a swtpm log
    has: a plain substring count, prefixes allowed."""
    with open(log_path, "rb") as f:
        return sum(1 for line in f if b" SWTPM_IO_Read: length" in line)
