"""Fuzz the edges: settings files, a host's files, and a followed log path (issue 16).

The log fuzzer (``fuzzlog.py``, ``test_fuzz.py``) mutates log *contents*; this
one mutates what sits around them, where the hostile cases of issue 16 were:

* settings files: deep nesting (arrays, inline tables, table headers, dotted
  keys; 1 to 6000 levels), giant keys and values, 4000-6000 digit numbers, NUL
  bytes, invalid UTF-8, byte flips, a cut end, wrong types, duplicated tables,
  on top of a valid file. Each case: :func:`load_config` never raises, an error
  is one bounded line naming the file, and the real listing code answers with
  bounded lines, ``swtpm-demo``, and a ``swtpm-config-error`` entry exactly
  when the file was skipped.
* a host's files: Proxmox logs and ``<vmid>.conf`` files replaced at random by
  ``/dev/zero``, ``/dev/urandom``, a fifo, a directory, a symlink loop, a huge
  file, non-ASCII digit names. The listing returns (bounded wait) and lists
  exactly the VMs whose log is a regular file named by ASCII digits.
* a followed log path: appends, rotations to a device, a fifo, a directory or
  a symlink loop, deletions and re-creations, in random order; what the follow
  yields is exactly what was written into regular files, in order.

``SWTPM_FUZZ_EDGE_CASES`` sets the number of settings cases (default 160; an
eighth of that host cases, a thirtieth follow cases), ``SWTPM_FUZZ_SEED`` the
first seed; a failure names its seed.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_follow import LINES

from swtpm_extcap.errors import MAX_MESSAGE
from swtpm_extcap.extcap.protocol import CONFIG_ERROR, MAX_DISPLAY, list_interfaces
from swtpm_extcap.interfaces.local import discover
from swtpm_extcap.interfaces.settings import Config, load_config
from swtpm_extcap.sources.base import Notice
from swtpm_extcap.sources.follow import follow_chunks

CASES = int(os.environ.get("SWTPM_FUZZ_EDGE_CASES", "160"))
HOST_CASES = max(1, CASES // 8)
FOLLOW_CASES = max(1, CASES // 30)
SEED = int(os.environ.get("SWTPM_FUZZ_SEED", "0"))
MAX_LINE = MAX_DISPLAY + 200
DEADLINE = 20.0

BASE = """\
# a valid settings file
[local]
globs = ["{root}/vms/*/swtpm.log", "~/vms/*.log"]
proxmox_dir = "{root}/run"
pve_conf_dir = "{root}/conf"

[other]
ignored = true
"""

Mutator = Callable[[random.Random, str], str]


def _depth(rng: random.Random) -> int:
    return rng.choice([1, 2, 10, 100, 500, 900, 1000, 1100, 2000, 6000])


def deep_array(rng: random.Random, text: str) -> str:
    n = _depth(rng)
    where = rng.choice(["globs", "ignored", "fresh"])
    value = "[" * n + ('"x"' if rng.random() < 0.5 else "") + "]" * n
    if where == "fresh":
        return text + f"\n[deep]\nv = {value}\n"
    return text.replace(f"{where} = ", f"{where} = {value} #", 1)


def deep_inline(rng: random.Random, text: str) -> str:
    n = _depth(rng)
    return text + "\n[deep]\nv = " + "{a = " * n + "1" + "}" * n + "\n"


def deep_header(rng: random.Random, text: str) -> str:
    n = _depth(rng)
    top = rng.choice(["local", "other", "t", "remote"])
    return text + f"\n[{top}." + ".".join(["k"] * n) + "]\n"


def deep_dotted(rng: random.Random, text: str) -> str:
    n = _depth(rng)
    return text.replace("[other]\n", "[other]\n" + ".".join(["d"] * n) + " = 1\n", 1)


def giant_key(rng: random.Random, text: str) -> str:
    size = rng.choice([100, 10_000, 500_000, (1 << 20) - 400, 1 << 20])
    table = rng.choice(["[local]\n", "[other]\n"])
    return text.replace(table, table + "k" * size + " = 1\n", 1)


def giant_value(rng: random.Random, text: str) -> str:
    size = rng.choice([100, 10_000, 900_000])
    return text.replace('"~/vms/*.log"', '"/' + "v" * size + '"', 1)


def huge_number(rng: random.Random, text: str) -> str:
    digits = rng.choice([20, 4300, 4301, 6000])
    number = rng.choice(["", "-", "+"]) + "9" * digits + rng.choice(["", ".5", "e99999"])
    return text.replace("ignored = true", f"ignored = {number}", 1)


def wrong_type(rng: random.Random, text: str) -> str:
    key = rng.choice(["globs", "proxmox_dir", "pve_conf_dir"])
    value = rng.choice(["1", "true", "1979-05-27", "{a = 1}", "[1, 2]", '""', '"relative"',
                        "[[]]", '["", "x"]', "inf", "nan"])
    return text.replace(f"{key} = ", f"{key} = {value} #", 1)


def duplicate(rng: random.Random, text: str) -> str:
    return text + rng.choice(["\n[local]\n", '\n[other]\nignored = 1\n', "\nlocal = 1\n"])


def remote_entry(rng: random.Random, text: str) -> str:
    value = rng.choice(['"x"', "1", "[]", "{}", '"' + "h" * rng.choice([5, 5000]) + '"'])
    return text + f"\n[[remote]]\nname = {value}\nhost = {value}\n"


def nul_bytes(rng: random.Random, text: str) -> str:
    at = rng.randrange(len(text) + 1)
    return text[:at] + "\0" * rng.randint(1, 3) + text[at:]


def byte_flips(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(chars))
        chars[i] = chr(rng.randrange(1, 0x800))
    return "".join(chars)


def cut_end(rng: random.Random, text: str) -> str:
    return text[: rng.randrange(len(text) + 1)]


MUTATORS: tuple[Mutator, ...] = (
    deep_array, deep_inline, deep_header, deep_dotted, giant_key, giant_value, huge_number,
    wrong_type, duplicate, remote_entry, nul_bytes, byte_flips, cut_end,
)


def settings_case(seed: int, root: Path) -> tuple[bytes, list[str]]:
    """One settings file's bytes and the mutations that made it."""
    rng = random.Random(seed)
    text = BASE.format(root=root)
    names = []
    for mutator in rng.sample(MUTATORS, rng.randint(1, 3)):
        text = mutator(rng, text)
        names.append(mutator.__name__)
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:  # invalid UTF-8
        at = rng.randrange(len(data) + 1)
        data = data[:at] + bytes([0xFF, 0xC0, 0x80]) + data[at:]
        names.append("invalid_utf8")
    return data, names


def check_settings(path: Path, monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    config = load_config(path)  # never raises
    if config.error is not None:
        assert "\n" not in config.error, what
        assert str(path) in config.error, what
    if config.remotes:  # no SSH host to ask in a fuzz run: the file's check is enough
        return
    monkeypatch.setenv("SWTPM_EXTCAP_CONFIG", str(path))
    lines = list_interfaces()
    for line in lines:
        assert len(line) <= MAX_LINE and "\n" not in line, f"{what}: {len(line)} characters"
    assert sum("{value=swtpm-demo}" in line for line in lines) == 1, what
    errors = [line for line in lines if f"{{value={CONFIG_ERROR}}}" in line]
    assert len(errors) == (config.error is not None), f"{what}: {errors}"


def test_mutated_settings_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    skipped = 0
    for seed in range(SEED, SEED + CASES):
        data, names = settings_case(seed, tmp_path)
        path.write_bytes(data)
        what = f"seed {seed} ({', '.join(names)})"
        try:
            check_settings(path, monkeypatch, what)
        except AssertionError:
            raise
        except BaseException as exc:  # the case, in the failure
            raise AssertionError(f"{what}: {type(exc).__name__}: {exc}") from exc
        skipped += load_config(path).error is not None
    assert 0 < skipped < CASES  # both kinds happened
    print(f"\n[fuzz-edges] {CASES} settings files: {skipped} skipped with one line, the rest read")


# ------------------------------------------------------------ a host's files

Hostile = Callable[[Path], None]


def _symlink(target: str) -> Hostile:
    return lambda path: path.symlink_to(target)


def _loop(path: Path) -> None:
    other = path.with_name(path.name + ".loop")
    other.symlink_to(path.name)
    path.symlink_to(other.name)


def _huge(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.write(b"name: huge\n")
        fh.truncate(50 << 20)  # sparse: 50 MB of NUL bytes without writing them


HOSTILE: dict[str, Hostile] = {
    "dev-zero": _symlink("/dev/zero"),
    "dev-urandom": _symlink("/dev/urandom"),
    "dev-null": _symlink("/dev/null"),
    "fifo": os.mkfifo,
    "directory": lambda path: path.mkdir(),
    "loop": _loop,
    "huge": _huge,
    "dangling": _symlink("/nonexistent/x"),
}
VMIDS = ["100", "101", "103", "2000", "0103", "\u0661\u0660\u0663", "\uff11\uff10\uff15", "abc"]


def host_case(seed: int, root: Path) -> set[str]:
    """A Proxmox host with some logs and confs replaced; the names that must be listed."""
    rng = random.Random(seed)
    run, conf = root / "run", root / "conf"
    for folder in (run, conf):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    expect = set()
    for vmid in rng.sample(VMIDS, rng.randint(1, len(VMIDS))):
        log, cfg = run / f"{vmid}-swtpm.log", conf / f"{vmid}.conf"
        if rng.random() < 0.4:
            kind = rng.choice(list(HOSTILE))
            HOSTILE[kind](log)
            if kind == "huge" and vmid.isascii() and vmid.isdigit():
                expect.add(f"swtpm-{vmid}")  # a regular file all the same
        else:
            log.write_bytes(b"".join(LINES[:20]))
            if vmid.isascii() and vmid.isdigit():
                expect.add(f"swtpm-{vmid}")
        if rng.random() < 0.6:
            HOSTILE[rng.choice(list(HOSTILE))](cfg)
        else:
            cfg.write_text(f"name: vm{rng.randrange(1000)}\n")
    return expect


def _bounded(call: Callable[[], object], what: str) -> object:
    """``call()`` in a thread; fails if it has not returned within the deadline."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), f"{what}: no answer after {DEADLINE} s"
    assert result, f"{what}: raised (see the thread's traceback above)"
    return result[0]


def test_hosts_with_devices_fifos_and_loops_for_files(tmp_path: Path) -> None:
    config = Config(proxmox_dir=str(tmp_path / "run"), pve_conf_dir=str(tmp_path / "conf"))
    for seed in range(SEED, SEED + HOST_CASES):
        expect = host_case(seed, tmp_path)
        found = _bounded(lambda: discover(config, libvirt_dir=tmp_path / "none"), f"seed {seed}")
        assert isinstance(found, list)
        names = {i.name for i in found} - {"swtpm-demo"}
        assert names == expect, f"seed {seed}: listed {names}, expected {expect}"
        assert all(len(i.display) < 200 for i in found)


# ---------------------------------------------------------------- a followed path


def _chunks_of(path: Path, stop: threading.Event, out: list[object]) -> Iterator[None]:
    for chunk in follow_chunks(path, stop, use_inotify=True, poll_interval=0.01,
                               on_event=lambda line: None):
        out.append(chunk)
        yield None


def follow_case(seed: int, folder: Path) -> None:
    """Random appends and replacements of the log path; the follow yields exactly the
    bytes written into regular files, in order."""
    rng = random.Random(seed)
    path = folder / "swtpm.log"
    written = bytearray()
    got: list[object] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in _chunks_of(path, stop, got):
                pass
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    def received() -> bytes:
        return b"".join(c for c in got if isinstance(c, bytes))

    def caught_up() -> None:
        deadline = time.monotonic() + DEADLINE
        while received() != bytes(written):
            assert not errors, errors
            assert time.monotonic() < deadline, f"seed {seed}: follow behind"
            time.sleep(0.005)

    path.write_bytes(b"")
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    lines = iter(LINES * 10)
    for step in range(rng.randint(3, 12)):
        op = rng.choice(["append", "append", "hostile", "delete"])
        if op == "append" and path.is_file() and not path.is_symlink():
            chunk = b"".join(next(lines) for _ in range(rng.randint(1, 30)))
            with open(path, "ab") as fh:
                fh.write(chunk)
            written += chunk
        elif op in ("hostile", "delete"):
            if path.is_symlink() or path.is_file() or path.is_fifo():
                path.rename(folder / f"old-{step}")
            elif path.is_dir():
                shutil.rmtree(path)
            loop = path.with_name(path.name + ".loop")
            if loop.is_symlink():
                loop.unlink()
            if op == "hostile":
                HOSTILE[rng.choice(["dev-zero", "dev-urandom", "fifo", "directory", "loop"])](path)
            time.sleep(rng.choice([0, 0.02, 0.1]))
            if rng.random() < 0.5:  # the VM starts again: a regular log
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.is_symlink() or path.exists():
                    path.unlink()
                if loop.is_symlink():
                    loop.unlink()
                chunk = b"".join(next(lines) for _ in range(rng.randint(1, 30)))
                path.write_bytes(chunk)
                written += chunk
        caught_up()
    stop.set()
    thread.join(DEADLINE)
    assert not thread.is_alive() and not errors, errors
    assert received() == bytes(written)
    assert all(c in (Notice.RECREATED, Notice.ROTATED, Notice.TRUNCATED)
               for c in got if not isinstance(c, bytes))


def test_a_followed_path_replaced_at_random(tmp_path: Path) -> None:
    for seed in range(SEED, SEED + FOLLOW_CASES):
        folder = tmp_path / f"case{seed}"
        folder.mkdir()
        follow_case(seed, folder)
