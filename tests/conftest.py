"""Shared test fixtures: the real swtpm log corpus, a tshark reader, a real swtpm.

* ``corpus``: the folder of real swtpm logs with client-side truth
  (``NAME.log`` + ``NAME.log.expected.json``); ``$SWTPM_CORPUS`` overrides
  the default ``tests/data/corpus`` (part of the repository). A missing corpus
  fails the tests that need it; it never turns into a silent skip.
* ``corpus_log``: parametrizes a test over every log in the corpus (ids =
  file names) and hands it a :class:`CorpusLog` (bytes, lines, truth).
* :func:`read_frames`: reads a pcapng back with ``tshark -T fields``, TCP
  reassembly off, so each frame's TCP payload is reported exactly as written.
* ``swtpm`` / ``swtpm_factory``: a real ``swtpm`` (see ``realtpm.py``) in
  ``tmp_path``, stopped at teardown.
* The user's folders stay out (:func:`isolate`, at start-up): the whole session
  runs with a ``$HOME`` of its own, without ``XDG_*``, ``WIRESHARK_*`` or
  ``SWTPM_EXTCAP_*`` variables, so every tshark, pyshark, swtpm-extcap and SSH
  client a test starts sees no personal Wireshark plugin, profile or extcap,
  settings file or ``~/.ssh`` of the machine's user. That Wireshark
  configuration also turns off this project's Lua plugin should Wireshark load
  it from its *global* folder (a root or ``--system`` install): its protocols
  are disabled and TCP port 2321 goes to Wireshark's own TPM dissector, which
  gives exactly the dissection of a Wireshark without the plugin. Tests that
  want the plugin load it themselves (``-X lua_script:``, or an install into a
  ``$HOME`` of their own).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the package is used from the checkout, not installed
    sys.path.insert(0, str(REPO))

import realtpm  # noqa: E402  (tests/ is on sys.path: no __init__.py)

CORPUS_ENV = "SWTPM_CORPUS"
#: the real swtpm logs with client-side truth, part of the repository (provenance: its README.md)
DEFAULT_CORPUS = REPO / "tests" / "data" / "corpus"
TRUTH_SUFFIX = ".expected.json"

TPM_PORT = 2321  # Wireshark's TPM 2.0 dissector port (what the framer targets)
CTRL_PORT = 2323  # the framer's control channel port: no dissector claims it


# ------------------------------------------------------------------ corpus


def corpus_dir() -> Path:
    return Path(os.environ.get(CORPUS_ENV) or DEFAULT_CORPUS)


def corpus_log_paths() -> list[Path]:
    """Every ``*.log`` of the corpus that has a truth sidecar (sorted by name)."""
    folder = corpus_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob("*.log") if p.with_name(p.name + TRUTH_SUFFIX).is_file()
    )


def _missing_corpus() -> str:
    return (
        f"swtpm log corpus not found at {corpus_dir()}"
        f" (set ${CORPUS_ENV} to a folder with NAME.log + NAME.log{TRUTH_SUFFIX})"
    )


_ID_EPOCH = re.compile(r"\[id=(\d+)\]")


class CorpusLog:
    """One real swtpm log and its client-side truth (loaded lazily, cached)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name

    def __repr__(self) -> str:
        return f"CorpusLog({self.name})"

    @functools.cached_property
    def data(self) -> bytes:
        return self.path.read_bytes()

    @functools.cached_property
    def lines(self) -> list[bytes]:
        """The log's lines without their line endings (1-based line N = lines[N-1])."""
        return self.data.split(b"\n")[:-1] if self.data.endswith(b"\n") else self.data.split(b"\n")

    @functools.cached_property
    def truth(self) -> dict[str, Any]:
        return json.loads(self.path.with_name(self.name + TRUTH_SUFFIX).read_text())

    @property
    def run_count(self) -> int:
        return int(self.truth["run_count"])

    @property
    def epochs(self) -> list[int | None]:
        """Per run: the ``[id=<epoch>]`` of the truth's prefix, or None."""
        out: list[int | None] = []
        for run in self.truth["runs"]:
            m = _ID_EPOCH.search(run["prefix"] or "")
            out.append(int(m.group(1)) if m else None)
        return out

    def exchanges(self) -> list[dict[str, Any]]:
        """The truth's exchanges in the order swtpm served them: by run, then by
        the client's shared per-run counter (``command_seq``)."""
        return sorted(self.truth["events"], key=lambda e: (e["run"], e["command_seq"]))

    def messages(self, channel: str | None = None) -> list[tuple[str, str, int, bytes]]:
        """``(channel, "command"|"response", run, bytes)`` in log order."""
        out = []
        for e in self.exchanges():
            if channel is None or e["channel"] == channel:
                out.append((e["channel"], "command", e["run"], bytes.fromhex(e["command"])))
                out.append((e["channel"], "response", e["run"], bytes.fromhex(e["response"])))
        return out

    def tpm_messages(self) -> list[tuple[str, bytes]]:
        """TPM ``("command"|"response", bytes)`` in order: what the client sent and got."""
        return [(d, b) for _, d, _, b in self.messages("tpm")]

    def tpm_command_codes(self) -> list[int]:
        return [int(e["command_code"], 16) for e in self.exchanges() if e["channel"] == "tpm"]


@functools.lru_cache(maxsize=None)
def load_corpus_log(path: Path) -> CorpusLog:
    return CorpusLog(path)


#: the fast tier, ``pytest -m fast``: the pure parser and the capture engine in
#: process, no tool started (seconds); the whole suite stays the CI command
FAST_MODULES = frozenset(
    {"test_logparse", "test_capture", "test_config", "test_options", "test_capture_filter"}
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fast: the fast tier (pure core, in-process capture)")
    global SESSION_HOME
    if SESSION_HOME is None:
        SESSION_HOME = Path(tempfile.mkdtemp(prefix="swtpm-extcap-tests-home-"))
        isolate(os.environ, SESSION_HOME)


def pytest_unconfigure(config: pytest.Config) -> None:
    global SESSION_HOME
    if SESSION_HOME is not None:
        shutil.rmtree(SESSION_HOME, ignore_errors=True)
        SESSION_HOME = None


# ---------------------------------------------------- the user's folders stay out

#: environment variables that would lead a tool to the user's folders or settings
FOREIGN_ENV = ("XDG_", "WIRESHARK_", "SWTPM_EXTCAP_")
#: the session's own $HOME (made at start-up, removed at the end)
SESSION_HOME: Path | None = None
#: the Lua plugin files this checkout ships
PLUGIN_DIR = REPO / "swtpm_extcap" / "wireshark"
#: the plugin: swtpm.lua and its parts in swtpm/ (installed side by side, as here)
PLUGIN_FILES = tuple(sorted([*PLUGIN_DIR.glob("*.lua"), *PLUGIN_DIR.glob("swtpm/*.lua")]))
_PROTO = re.compile(r"""\bProto\s*\(\s*["']([A-Za-z0-9_.]+)["']""")


def plugin_protocols() -> list[str]:
    """The protocols (filter names) the shipped Lua plugin registers."""
    names: set[str] = set()
    for path in PLUGIN_FILES:
        names.update(_PROTO.findall(path.read_text(encoding="utf-8")))
    return sorted(names)


@functools.lru_cache(maxsize=None)
def foreign_plugin_copies() -> tuple[Path, ...]:
    """Copies of the plugin in Wireshark's global Lua folder that differ from this
    checkout's: Wireshark loads them first, and the plugin registers once, so a
    test that loads the checkout's copy with ``-X lua_script:`` would see them."""
    if shutil.which("tshark") is None:
        return ()
    out = subprocess.run(["tshark", "-G", "folders"], capture_output=True, text=True,
                         timeout=60).stdout
    folders = [line.partition("\t")[2].strip() for line in out.splitlines()
               if line.partition("\t")[0].strip().rstrip(":") == "Global Lua Plugins"]
    shipped = {p.relative_to(PLUGIN_DIR): p.read_bytes() for p in PLUGIN_FILES}
    found = []
    for folder in folders:
        for name, data in shipped.items():
            path = Path(folder) / name
            if path.is_file() and path.read_bytes() != data:
                found.append(path)
    return tuple(found)


def isolate(env: MutableMapping[str, str], home: Path) -> None:
    """Point ``env`` at ``home``, a fresh $HOME whose Wireshark has the plugin off.

    ``disabled_protos`` turns off the plugin's protocols, ``decode_as_entries``
    gives TCP port 2321 back to Wireshark's TPM 2.0 dissector (the plugin puts
    its TPM 1.2 dissector there): with both, a Wireshark that loads the plugin
    from its global folder dissects as one without it."""
    for key in [k for k in env if k.startswith(FOREIGN_ENV)]:
        del env[key]
    env["HOME"] = str(home)
    config = home / ".config" / "wireshark"
    config.mkdir(parents=True, exist_ok=True)
    (config / "disabled_protos").write_text("".join(f"{p}\n" for p in plugin_protocols()))
    (config / "decode_as_entries").write_text(
        "# tests/conftest.py: Wireshark's own TPM 2.0 dissector, even with a global swtpm.lua\n"
        f"decode_as_entry: tcp.port,{TPM_PORT},(none),TPM2.0\n"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__ in FAST_MODULES:  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.fast)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "corpus_log" in metafunc.fixturenames:
        paths = corpus_log_paths()
        if paths:
            metafunc.parametrize(
                "corpus_log", paths, ids=[p.name for p in paths], indirect=True
            )
        else:
            metafunc.parametrize(
                "corpus_log",
                [None],
                ids=["no-corpus"],
                indirect=True,
            )


@pytest.fixture
def corpus_log(request: pytest.FixtureRequest) -> CorpusLog:
    """One corpus log (the test runs once per log)."""
    if request.param is None:
        pytest.fail(_missing_corpus())
    return load_corpus_log(request.param)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The corpus folder; a missing corpus is a failure, never a silent skip."""
    folder = corpus_dir()
    if not corpus_log_paths():
        pytest.fail(_missing_corpus())
    return folder


def named_log(corpus: Path, name: str) -> CorpusLog:
    """A specific corpus log; fails when this corpus does not have it."""
    path = corpus / name
    if not path.is_file() or not path.with_name(name + TRUTH_SUFFIX).is_file():
        pytest.fail(f"{name} (and its truth) not in the corpus at {corpus}")
    return load_corpus_log(path)


@pytest.fixture
def pyshark_loop() -> Iterator[Any]:
    """An event loop of the test's own for pyshark, closed after it.

    pyshark 0.6 runs tshark on the thread's current loop (there is none after an
    earlier test's ``asyncio.run``: "There is no current event loop") and puts a
    SIGCHLD handler on it that it never takes away: its wake-up socket then fills
    with every later child's exit ("Exception ignored ... BlockingIOError" in
    other tests). Closing the loop removes the handler."""
    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        loop.close()
        asyncio.set_event_loop(None)


# ------------------------------------------------------------- conversion


def write_pcapng(
    log: bytes, out: Path, *, start_us: int = 0, ctrl: bool = True, name: str = "test"
) -> Path:
    """Convert log bytes with the package's Pipeline (parser -> framer -> pcapng)."""
    from swtpm_extcap.pcapng.pipeline import Pipeline

    with open(out, "wb") as f:
        pipe = Pipeline(
            f, name=f"swtpm:{name}", description=f"swtpm log {name}", start_us=start_us, ctrl=ctrl
        )
        pipe.feed(log)
        pipe.close()
    return out


#: clock start handed to the framer for logs without an [id=<epoch>] prefix
START_US = 1_600_000_000_123_000


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``converted(corpus_log, ctrl=True)`` -> pcapng path (converted once per session)."""
    folder = tmp_path_factory.mktemp("converted")
    cache: dict[tuple[str, bool], Path] = {}

    def convert(log: CorpusLog, ctrl: bool = True) -> Path:
        key = (log.name, ctrl)
        if key not in cache:
            out = folder / f"{log.name}{'' if ctrl else '.noctrl'}.pcapng"
            cache[key] = write_pcapng(log.data, out, start_us=START_US, ctrl=ctrl, name=log.name)
        return cache[key]

    return convert


# ------------------------------------------------------------------ tshark


def missing_tool(message: str) -> None:
    """A tool the test needs is not here: a skip on a developer's machine, a
    failure in CI (``$CI`` set), where ./run-tests installs every tool."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI installs it through ./run-tests: check its package list)")
    pytest.skip(message)


def require_tshark() -> None:
    if shutil.which("tshark") is None:
        missing_tool("tshark not on PATH")


#: each TCP segment is reported as-is: no reassembly across segments, no
#: heuristic re-dissection, no name lookups
TSHARK_RAW = (
    "-n",
    "-o", "tcp.desegment_tcp_streams:FALSE",
    "-o", "tcp.reassemble_out_of_order:FALSE",
    "-o", "tcp.try_heuristic_first:FALSE",
    "-o", "ip.defragment:FALSE",
)

_FIELDS = (
    "frame.number",
    "frame.section_number",
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.stream",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.payload",
    "frame.protocols",
    "ip.checksum.status",
    "tcp.checksum.status",
    "tpm.req.cc",
    "tpm.resp.rc",
    "frame.comment",
)


@dataclass(frozen=True)
class TsharkFrame:
    number: int
    section: int
    ts_us: int
    src: str
    dst: str
    sport: int
    dport: int
    flags: int
    stream: int
    seq: int
    ack: int
    payload: bytes
    protocols: str
    ip_checksum: str
    tcp_checksum: str
    tpm_cc: int | None
    tpm_rc: int | None
    comment: str

    @property
    def port(self) -> int:
        """The server port of this frame's conversation (2321 TPM, 2323 ctrl)."""
        return min(self.sport, self.dport)

    @property
    def to_server(self) -> bool:
        return self.dport < self.sport


def _unescape(text: str) -> str:
    """Undo tshark's escaping of control characters in -T fields strings."""
    table = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"'}
    return re.sub(
        r"\\(x[0-9a-fA-F]{2}|.)",
        lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x" and len(m.group(1)) == 3
        else table.get(m.group(1), m.group(0)),
        text,
    )


def _int(text: str, base: int = 10) -> int | None:
    return int(text, base) if text else None


def tshark(args: Sequence[str], timeout: float = 120) -> str:
    require_tshark()
    proc = subprocess.run(
        ["tshark", *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"tshark {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout


def read_frames(pcap: Path, *extra: str, display_filter: str | None = None) -> list[TsharkFrame]:
    """Every frame of ``pcap`` as tshark decodes it (TCP segments as-is)."""
    args = [*TSHARK_RAW, *extra, "-r", str(pcap), "-T", "fields",
            "-E", "separator=/t", "-E", "occurrence=f", "-E", "quote=n"]
    if display_filter:
        args += ["-Y", display_filter]
    for f in _FIELDS:
        args += ["-e", f]
    out = []
    for line in tshark(args).splitlines():
        cols = line.split("\t")
        assert len(cols) == len(_FIELDS), f"unexpected tshark line: {line!r}"
        v = dict(zip(_FIELDS, cols))
        ts = Decimal(v["frame.time_epoch"])
        out.append(
            TsharkFrame(
                number=int(v["frame.number"]),
                section=int(v["frame.section_number"] or 1),
                ts_us=int(ts * 1_000_000),
                src=v["ip.src"],
                dst=v["ip.dst"],
                sport=int(v["tcp.srcport"]),
                dport=int(v["tcp.dstport"]),
                flags=int(v["tcp.flags"], 16),
                stream=int(v["tcp.stream"]),
                seq=int(v["tcp.seq_raw"]),
                ack=int(v["tcp.ack_raw"]),
                payload=bytes.fromhex(v["tcp.payload"].replace(":", "")),
                protocols=v["frame.protocols"],
                ip_checksum=v["ip.checksum.status"],
                tcp_checksum=v["tcp.checksum.status"],
                tpm_cc=_int(v["tpm.req.cc"], 16),
                tpm_rc=_int(v["tpm.resp.rc"], 16),
                comment=_unescape(v["frame.comment"]),
            )
        )
    return out


_FRAMES: dict[Path, list[TsharkFrame]] = {}


def cached_frames(pcap: Path) -> list[TsharkFrame]:
    """:func:`read_frames` with IP and TCP checksum validation on, once per file
    per session (the converted corpus files do not change during a run)."""
    if pcap not in _FRAMES:
        _FRAMES[pcap] = read_frames(
            pcap, "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"
        )
    return _FRAMES[pcap]


def frame_numbers(pcap: Path, display_filter: str, *extra: str) -> list[int]:
    """Numbers of the frames that match ``display_filter``."""
    args = [*TSHARK_RAW, *extra, "-r", str(pcap), "-Y", display_filter,
            "-T", "fields", "-e", "frame.number"]
    return [int(x) for x in tshark(args).split()]


def tpm_payloads(frames: Sequence[TsharkFrame]) -> list[tuple[str, bytes]]:
    """``("command"|"response", payload)`` of the data frames to/from port 2321."""
    out = []
    for f in frames:
        if f.payload and f.dport == TPM_PORT:
            out.append(("command", f.payload))
        elif f.payload and f.sport == TPM_PORT:
            out.append(("response", f.payload))
    return out


# ------------------------------------------------------------ the CLI


def run_cli(
    args: Sequence[str], *, stdin: bytes | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """``python -m swtpm_extcap ARGS`` in a subprocess (package from this checkout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "swtpm_extcap", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


# ------------------------------------------------------- a real swtpm


def _require_real_tpm() -> None:
    missing = realtpm.missing_tools("swtpm", "tpm2_startup", "tshark")
    if missing:
        missing_tool(f"needs {', '.join(missing)} on PATH")


@pytest.fixture
def swtpm_factory(tmp_path: Path) -> Iterator[Callable[..., realtpm.Swtpm]]:
    """``start(prefix=None, workdir=tmp_path/"tpm")`` starts a real swtpm (stop
    it to simulate a VM stop; start again on the same workdir for a restart).
    Everything still running is stopped at teardown."""
    _require_real_tpm()
    started: list[realtpm.Swtpm] = []

    def start(prefix: str | None = None, workdir: Path | None = None) -> realtpm.Swtpm:
        sw = realtpm.start_swtpm(workdir or tmp_path / "tpm", prefix=prefix)
        started.append(sw)
        return sw

    yield start
    for sw in started:
        sw.stop()


@pytest.fixture
def swtpm(swtpm_factory: Callable[..., realtpm.Swtpm]) -> realtpm.Swtpm:
    """A real swtpm (level 20, no prefix) in tmp_path; stopped at teardown."""
    return swtpm_factory()
