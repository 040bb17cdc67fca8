"""The end-to-end harness of the benchmarks: the real extcap as a subprocess, its fifo read here.

:class:`ExtcapRun` makes, in a temporary folder, an empty log
``<tmp>/benchvm/swtpm.log``, a settings file whose ``[local] globs`` is
``<tmp>/*/swtpm.log`` (so the log is the interface ``swtpm-benchvm``) and a
fifo, checks with ``--extcap-interfaces`` that the interface is listed, then
starts, as Wireshark does::

    python -m swtpm_extcap --capture --extcap-interface swtpm-benchvm \\
        --fifo <tmp>/fifo --mode follow --ctrl

with ``SWTPM_EXTCAP_CONFIG`` set to the settings file and ``PYTHONPATH`` to
this checkout. A thread of this process reads the fifo, parses the pcapng
stream (:mod:`_pcapng_reader`) and, for every data frame (a TCP segment with
payload), keeps ``(time.perf_counter() right after the read() that completed
it, the log line N its Ethernet source address carries, payload)``. The caller appends to
the log from another thread, taking ``time.perf_counter()`` just before each
``write()``, and matches the two by log line.

How the extcap sees changes is read from ``/proc/<pid>/fd``: an
``anon_inode:inotify`` descriptor means inotify (the extcap has no option to
force polling). CPU use is ``utime + stime`` from ``/proc/<pid>/stat``.
:meth:`ExtcapRun.stop` sends SIGTERM and returns the exit code and stderr.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _pcapng_reader import EnhancedPacket, InterfaceDescription, PcapngStreamReader, SectionHeader
from _pcapng_reader import mac_line, tcp_payload

REPO = Path(__file__).resolve().parents[1]
VM = "benchvm"
INTERFACE = f"swtpm-{VM}"
READ_SIZE = 1 << 20
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class FifoReader:
    """Reads the fifo until EOF in a thread; keeps every data frame with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.arrivals: list[tuple[float, int | None, bytes]] = []  # data frames only
        self.header = threading.Event()  # SHB and IDB read
        self.eof = threading.Event()
        self.error: BaseException | None = None
        self.frames = 0  # all EPBs
        self.control_frames = 0  # EPBs without TCP payload (handshake, FIN)
        self.unlabelled = 0  # data frames without a log line in their source MAC
        self.bytes = 0
        self.reads = 0
        self._thread = threading.Thread(target=self._run, name="fifo-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)  # blocks until the extcap opens its end
            try:
                self._loop(fd)
            finally:
                os.close(fd)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc
        finally:
            self.eof.set()

    def _loop(self, fd: int) -> None:
        parser = PcapngStreamReader()
        clock = time.perf_counter
        read = os.read
        append = self.arrivals.append
        got_shb = got_idb = False
        while True:
            data = read(fd, READ_SIZE)
            t = clock()
            if not data:
                return
            self.reads += 1
            self.bytes += len(data)
            for block in parser.feed(data):
                if type(block) is EnhancedPacket:
                    self.frames += 1
                    payload = tcp_payload(block.packet)
                    if not payload:
                        self.control_frames += 1
                        continue
                    line = mac_line(block.packet)
                    if line is None:
                        self.unlabelled += 1
                    append((t, line, payload))
                elif type(block) is SectionHeader:
                    got_shb = True
                elif type(block) is InterfaceDescription:
                    got_idb = True
                if got_shb and got_idb and not self.header.is_set():
                    self.header.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def unblock(self) -> None:
        """Let a reader whose writer never came return from open()."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


class ExtcapRun:
    """One capture by the real extcap of a log that the caller appends to."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        (tmp / VM).mkdir()
        self.log = tmp / VM / "swtpm.log"
        self.log.touch()
        self.config = tmp / "swtpm-extcap.toml"
        self.config.write_text(f'[local]\nglobs = ["{tmp}/*/swtpm.log"]\n')
        self.fifo = tmp / "wireshark_extcap_fifo"
        os.mkfifo(self.fifo)
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.env["SWTPM_EXTCAP_CONFIG"] = str(self.config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: FifoReader | None = None
        self.watch = "unknown"

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "swtpm_extcap", "--capture", "--extcap-interface", INTERFACE,
                "--fifo", str(self.fifo), "--mode", "follow", "--ctrl"]

    def check_listed(self) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "swtpm_extcap", "--extcap-interfaces"],
            env=self.env, capture_output=True, check=True, timeout=60,
        ).stdout.decode()
        if f"{{value={INTERFACE}}}" not in out:
            raise SystemExit(f"{INTERFACE} is not listed by --extcap-interfaces:\n{out}")

    def start(self, timeout: float = 20.0) -> None:
        """Start the extcap, wait for the pcapng header and for the log to be watched."""
        self.check_listed()
        self.reader = FifoReader(self.fifo)
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env, cwd=self.tmp,
        )
        deadline = time.monotonic() + timeout
        while not self.reader.header.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.reader.unblock()
                rc = self.proc.wait(5) if self.proc.poll() is None else self.proc.returncode
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise SystemExit(f"the extcap never wrote the pcapng header (exit {rc}): {err.strip()}")
        # follow() opens the log and sets its inotify watch on its first step
        while time.monotonic() < deadline:
            if self._has_inotify():
                self.watch = "inotify"
                break
            time.sleep(0.01)
        else:
            self.watch = "no inotify descriptor (polling?)"
        time.sleep(0.2)

    def _has_inotify(self) -> bool:
        assert self.proc is not None
        fd_dir = f"/proc/{self.proc.pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            return False
        for name in names:
            try:
                if os.readlink(f"{fd_dir}/{name}") == "anon_inode:inotify":
                    return True
            except OSError:
                continue
        return False

    def cpu_seconds(self) -> float:
        """utime + stime of the extcap so far."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        # fields[0] is field 3 (state): utime is field 14, stime field 15
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def rss_kib(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return -1

    def drain(self, expected: int, since_cpu: float) -> tuple[float, float, int, dict[str, Any]]:
        """Wait (up to 10 s) for ``expected`` frames and 0.3 s more (a duplicate would
        show then); return the extcap's CPU seconds since ``since_cpu``, the
        ``perf_counter`` time they were read at, its peak RSS, and how it stopped
        on SIGTERM."""
        assert self.reader is not None
        deadline = time.monotonic() + 10
        while len(self.reader.arrivals) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        cpu = self.cpu_seconds() - since_cpu
        at = time.perf_counter()
        rss = self.rss_kib()
        return cpu, at, rss, self.stop()

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """SIGTERM; wait for the exit and the fifo's EOF. Exit code, stderr, how long it took."""
        assert self.proc is not None and self.reader is not None
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
            rc: int | str = self.proc.returncode
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            rc = f"did not exit within {timeout:g} s of SIGTERM (killed)"
        stop_s = time.perf_counter() - t0
        if not self.reader.join(timeout):
            self.reader.unblock()
            self.reader.join(1)
        if self.reader.error is not None:
            raise SystemExit(f"fifo reader: {type(self.reader.error).__name__}: {self.reader.error}")
        return {
            "extcap_exit_code": rc,
            "extcap_stderr": err.decode(errors="replace"),
            "extcap_stdout_bytes": len(out),
            "extcap_stop_ms": round(stop_s * 1000, 1),
            "fifo_eof": self.reader.eof.is_set(),
        }

    def kill(self) -> None:
        """Clean-up after an error: end our extcap (by its pid) and the reader."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.reader is not None and not self.reader.eof.is_set():
            self.reader.unblock()
