"""convert / cli: ``swtpm-extcap convert`` on real logs, in process and as a command."""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    CTRL_PORT,
    REPO,
    TPM_PORT,
    CorpusLog,
    corpus_log_paths,
    frame_numbers,
    load_corpus_log,
    read_frames,
    require_tshark,
    run_cli,
    tpm_payloads,
)
from swtpm_extcap.cli import main
from test_extcap import one_line, small_disk, without_dac_override  # noqa: F401  (small_disk: a fixture, a real 64 KiB tmpfs)
from swtpm_extcap.swtpmlog.parser import LogParser, Record


def _prefixed_multirun() -> CorpusLog:
    for path in corpus_log_paths():
        log = load_corpus_log(path)
        if log.run_count > 1 and all(e is not None for e in log.epochs):
            return log
    pytest.fail("no corpus log with several [id=<epoch>] runs")


def _unprefixed() -> CorpusLog:
    for path in corpus_log_paths():
        log = load_corpus_log(path)
        if all(e is None for e in log.epochs):
            return log
    pytest.fail("no corpus log without a prefix")


def _damaged(log: CorpusLog) -> tuple[bytes, dict[int, str]]:
    """The real log with one TPM record cut short and one stray hex line;
    returns it with {defect line: defect kind}."""
    parser = LogParser()
    recs = [e for e in parser.feed(log.data) + parser.close() if isinstance(e, Record)]
    multi = [r for r in recs if r.kind.is_tpm and r.last_line - r.line >= 2]
    short, stray = multi[2], multi[6]
    lines = list(log.lines)
    lines.insert(stray.last_line, lines[stray.line])  # a copy of a real hex line
    del lines[short.last_line - 1]
    return b"\n".join(lines) + b"\n", {short.line: "short", stray.last_line: "stray"}


# ------------------------------------------------------------- outputs


def test_default_output_name(tmp_path: Path, corpus_log: CorpusLog, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / corpus_log.name
    shutil.copyfile(corpus_log.path, log)
    assert main(["convert", str(log)]) == 0
    out = log.with_suffix(".pcapng")
    assert out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([log.name, out.name])
    require_tshark()
    assert tpm_payloads(read_frames(out)) == corpus_log.tpm_messages()


def test_default_output_name_without_log_suffix(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "swtpm.txt"
    shutil.copyfile(corpus_log_paths()[0], log)
    assert main(["convert", str(log)]) == 0
    assert (tmp_path / "swtpm.txt.pcapng").is_file()


def test_output_option(tmp_path: Path, corpus_log: CorpusLog, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.pcapng"
    assert main(["convert", str(corpus_log.path), "-o", str(out)]) == 0
    require_tshark()
    frames = read_frames(out)
    assert tpm_payloads(frames) == corpus_log.tpm_messages()
    ctrl = [f for f in frames if f.port == CTRL_PORT and f.payload]
    assert len(ctrl) == corpus_log.truth["ctrl_message_count"]


def test_stdin_to_stdout(tmp_path: Path, corpus: Path) -> None:
    log = _prefixed_multirun()
    proc = run_cli(["convert", "-"], stdin=log.data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout[:4] == b"\x0a\x0d\x0d\x0a"  # a pcapng section header block
    out = tmp_path / "stdout.pcapng"
    out.write_bytes(proc.stdout)
    require_tshark()
    frames = read_frames(out)
    assert tpm_payloads(frames) == log.tpm_messages()
    assert len({f.stream for f in frames if f.port == TPM_PORT}) == log.run_count
    err = proc.stderr.decode()
    assert "stdout" in err  # the summary names where the capture went
    assert _number(r"(\d+) TPM records?\b", err) == 2 * log.truth["tpm_exchange_count"]


def test_a_pipe_streams_before_its_end(corpus: Path) -> None:
    """`tail -F log | swtpm-extcap convert - -o -` is a live capture: each record
    reaches stdout while stdin is still open (no waiting for a full buffer)."""
    log = _prefixed_multirun()
    records = [e for e in LogParser().feed(log.data) if isinstance(e, Record) and e.kind.is_tpm]
    first = records[0]
    head = b"\n".join(log.lines[: first.last_line]) + b"\n"  # up to the first TPM command
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "swtpm_extcap", "convert", "-", "-o", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(head)
        proc.stdin.flush()
        seen = b""
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        deadline = time.monotonic() + 10
        while first.data not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(fd, 65536) or b""
            except BlockingIOError:
                time.sleep(0.02)
        assert first.data in seen, "the first TPM command did not come out while stdin was open"
        assert proc.poll() is None
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == 0


def test_file_to_stdout(tmp_path: Path, corpus: Path) -> None:
    log = _unprefixed()
    proc = run_cli(["convert", str(log.path), "-o", "-"])
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "stdout.pcapng"
    out.write_bytes(proc.stdout)
    require_tshark()
    assert tpm_payloads(read_frames(out)) == log.tpm_messages()
    assert not list(tmp_path.glob("*.log"))


def test_several_logs_into_one_file(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = [load_corpus_log(p) for p in corpus_log_paths()]
    out = tmp_path / "all.pcapng"
    assert main(["convert", *[str(log.path) for log in logs], "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data.count(b"\x4d\x3c\x2b\x1a") == len(logs)  # one byte-order magic per SHB
    require_tshark()
    frames = read_frames(out)
    sections = sorted({f.section for f in frames})
    assert sections == list(range(1, len(logs) + 1))
    for section, log in zip(sections, logs):
        mine = [f for f in frames if f.section == section]
        assert tpm_payloads(mine) == log.tpm_messages(), log.name
    # one summary per log on stderr
    err = capsys.readouterr().err
    for log in logs:
        assert log.name in err


def test_no_ctrl(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _prefixed_multirun()
    out = tmp_path / "out.pcapng"
    assert main(["convert", "--no-ctrl", str(log.path), "-o", str(out)]) == 0
    require_tshark()
    frames = read_frames(out)
    assert frames and all(f.port == TPM_PORT for f in frames)
    assert not [f for f in frames if CTRL_PORT in (f.sport, f.dport)]
    assert tpm_payloads(frames) == log.tpm_messages()


def test_start_time(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unprefixed, prefixed = _unprefixed(), _prefixed_multirun()
    require_tshark()
    for log in (unprefixed, prefixed):
        out = tmp_path / f"{log.name}.pcapng"
        assert main(["convert", "--start-time", "1234567890.5", str(log.path), "-o", str(out)]) == 0
        first = read_frames(out)[0].ts_us
        epoch = log.epochs[0]
        # a log's own [id=<epoch>] wins; else the given start time
        assert first == (1_234_567_890_500_000 if epoch is None else epoch * 1_000_000), log.name


@pytest.mark.parametrize("text", ["yesterday", "nan", "inf", "-inf", "1e20", "-1"])
def test_bad_start_time_is_one_usage_line(tmp_path: Path, text: str) -> None:
    log = tmp_path / "vm-swtpm.log"
    shutil.copyfile(corpus_log_paths()[0], log)
    proc = run_cli(["convert", f"--start-time={text}", str(log), "-o", str(tmp_path / "x")])
    assert proc.returncode == 2
    assert one_line(proc.stderr).startswith(f"swtpm-extcap: argument --start-time: {text!r}")
    assert not (tmp_path / "x").exists()


# -------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope-swtpm.log"
    assert main(["convert", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n")
    assert str(missing) in err
    assert list(tmp_path.iterdir()) == []


def test_missing_file_among_good_ones_writes_nothing(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.log"
    shutil.copyfile(corpus_log_paths()[0], good)
    missing = tmp_path / "missing.log"
    out = tmp_path / "out.pcapng"
    assert main(["convert", str(good), str(missing), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err
    assert not out.exists()


def test_directory_instead_of_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err


def test_missing_file_from_the_command_line(tmp_path: Path) -> None:
    missing = tmp_path / "gone.log"
    proc = run_cli(["convert", str(missing)])
    assert proc.returncode == 1
    assert proc.stderr.count(b"\n") == 1 and str(missing).encode() in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_hex_without_headers_longer_than_an_ip_packet(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log whose record headers were lost (say, filtered out): all its hex lines
    are stray data, here the data lines of an unprefixed real log three times
    over (> 64 KiB in one run of hex lines)."""
    log = _unprefixed()
    hexlines = [line for line in log.lines if re.fullmatch(rb" (?:[0-9A-F]{2} )+", line)]
    damaged = tmp_path / "headerless.log"
    damaged.write_bytes(b"\n".join(hexlines * 3) + b"\n")
    assert sum(len(line) // 3 for line in hexlines) * 3 > 65535
    out = tmp_path / "o.pcapng"
    assert main(["convert", str(damaged), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"\bstray\b", err)
    require_tshark()
    frames = read_frames(out, "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE")
    # every byte arrives, in order, over segments that fit an IPv4 packet
    sent = b"".join(f.payload for f in frames)
    assert sent == b"".join(bytes.fromhex(line.decode()) for line in hexlines * 3)
    assert all(len(f.payload) <= 65535 - 40 for f in frames)
    assert all((f.ip_checksum, f.tcp_checksum) == ("1", "1") for f in frames)
    assert frame_numbers(out, "tcp.analysis.flags") == []


# ------------------------------------------------------------- summary


def _number(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in {text!r}"
    return int(m.group(1))


def test_summary_counts_equal_truth(
    tmp_path: Path, corpus_log: CorpusLog, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["convert", str(corpus_log.path), "-o", str(tmp_path / "o.pcapng")]) == 0
    err = capsys.readouterr().err
    assert corpus_log.name in err
    assert _number(r"(\d+) TPM records?\b", err) == 2 * corpus_log.truth["tpm_exchange_count"]
    assert _number(r"(\d+) commands?\b", err) == corpus_log.truth["tpm_command_count"]
    assert _number(r"(\d+) responses?\b", err) == corpus_log.truth["tpm_response_count"]
    assert _number(r"in (\d+) runs?\b", err) == corpus_log.run_count
    assert _number(r"(\d+) control messages?\b", err) == corpus_log.truth["ctrl_message_count"]
    assert _number(r"(\d+) defects?\b", err) == 0
    assert _number(r"(\d+) lines? read", err) == len(corpus_log.lines)


def test_summary_names_defects_by_line(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _prefixed_multirun()
    data, defects = _damaged(log)
    damaged = tmp_path / "damaged.log"
    damaged.write_bytes(data)
    assert main(["convert", str(damaged), "-o", str(tmp_path / "o.pcapng")]) == 0
    err = capsys.readouterr().err
    assert _number(r"(\d+) defects?\b", err) == len(defects)
    for line, kind in defects.items():
        assert re.search(rf"line {line}\b.*\b{kind}\b", err), f"line {line} ({kind}) not in {err!r}"
    # the damage costs one TPM message; counts still follow the truth otherwise
    assert _number(r"(\d+) control messages?\b", err) == log.truth["ctrl_message_count"]


def test_strict(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _prefixed_multirun()
    data, _ = _damaged(log)
    damaged = tmp_path / "damaged.log"
    damaged.write_bytes(data)
    assert main(["convert", "--strict", str(damaged), "-o", str(tmp_path / "d.pcapng")]) == 3
    assert (tmp_path / "d.pcapng").stat().st_size > 0  # still written
    assert main(["convert", "--strict", str(log.path), "-o", str(tmp_path / "c.pcapng")]) == 0
    assert main(["convert", str(damaged), "-o", str(tmp_path / "e.pcapng")]) == 0


def test_strict_from_the_command_line(tmp_path: Path, corpus: Path) -> None:
    log = _prefixed_multirun()
    data, defects = _damaged(log)
    proc = run_cli(["convert", "--strict", "-", "-o", str(tmp_path / "d.pcapng")], stdin=data)
    assert proc.returncode == 3
    for line in defects:
        assert f"line {line}".encode() in proc.stderr


# ------------------------------------------------------ stdout edge cases


def test_reader_closing_the_pipe_early_is_a_clean_exit(tmp_path: Path, corpus: Path) -> None:
    """``convert LOG -o - | head -c 100``: exit 0, nothing on stderr."""
    log = tmp_path / "long.log"
    log.write_bytes(load_corpus_log(corpus_log_paths()[0]).data * 20)  # MBs of pcapng
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "swtpm_extcap", "convert", str(log), "-o", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    head = proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert head[:4] == b"\x0a\x0d\x0d\x0a"
    assert err == b""


@pytest.mark.parametrize("to_stdout", [["-o", "-"], ["-"]], ids=["-o -", "stdin among logs"])
def test_refuses_to_write_pcapng_to_a_terminal(tmp_path: Path, corpus: Path, to_stdout: list[str]) -> None:
    """Whether stdout is named by -o or is where the stdin log goes by default;
    refused before anything is written."""
    log = tmp_path / "vm-swtpm.log"
    shutil.copyfile(corpus_log_paths()[0], log)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "swtpm_extcap", "convert", str(log), *to_stdout],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=tmp_path, timeout=60,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 1
    assert proc.stderr.count(b"\n") == 1 and b"Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [log.name]


# ------------------------------------- hostile names, disks and descriptors


NON_UTF8 = os.fsdecode(b"caf\xff-swtpm.log")  # a libvirt-style log name that is no UTF-8


def test_a_file_name_that_is_not_utf8_converts(tmp_path: Path) -> None:
    """Under a UTF-8 locale the name reaches Python as a lone surrogate: the log
    converts, and the summary shows the byte escaped."""
    log = tmp_path / NON_UTF8
    shutil.copyfile(corpus_log_paths()[0], log)
    env = dict(os.environ, PYTHONPATH=str(REPO), LC_ALL="C.UTF-8")
    proc = subprocess.run(
        [sys.executable, "-m", "swtpm_extcap", "convert", os.fsencode(log)],
        capture_output=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "caf\\xff-swtpm.log -> " in proc.stderr.decode("utf-8")
    out = tmp_path / os.fsdecode(b"caf\xff-swtpm.pcapng")
    assert len(read_frames(out)) > 0


def _copy(tmp_path: Path, name: str = "a.log") -> Path:
    log = tmp_path / name
    shutil.copyfile(corpus_log_paths()[0], log)
    return log


@pytest.mark.parametrize("how", ["same name", "symlink", "hard link", "second input", "stdout append"])
def test_refuses_to_write_over_an_input(tmp_path: Path, how: str) -> None:
    """Compared by device and inode: names do not matter. Nothing is written."""
    a, b = _copy(tmp_path, "a.log"), _copy(tmp_path, "b.log")
    before = {p.name: p.read_bytes() for p in (a, b)}
    if how == "same name":
        args = [str(a), "-o", str(a)]
    elif how == "symlink":
        (tmp_path / "link.pcapng").symlink_to(a)
        args = [str(a), "-o", str(tmp_path / "link.pcapng")]
    elif how == "hard link":
        os.link(b, tmp_path / "hard.pcapng")
        args = [str(a), str(b), "-o", str(tmp_path / "hard.pcapng")]
    elif how == "second input":  # a's default output would be b's twin: b named as a.pcapng
        os.link(b, tmp_path / "a.pcapng")
        args = [str(a), str(tmp_path / "a.pcapng")]
    else:
        args = [str(a), "-o", "-"]
    if how == "stdout append":
        with open(a, "ab") as out:
            proc = subprocess.run(
                [sys.executable, "-m", "swtpm_extcap", "convert", *args], stdout=out,
                stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60,
            )
    else:
        proc = run_cli(["convert", *args])
    assert proc.returncode == 1
    assert "refusing to write over the input" in one_line(proc.stderr)
    assert {p.name: p.read_bytes() for p in (a, b)} == before


def test_output_that_is_a_folder_or_in_a_missing_folder(tmp_path: Path) -> None:
    log = _copy(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    proc = run_cli(["convert", str(log), "-o", str(folder)])
    assert proc.returncode == 1 and "is a folder" in one_line(proc.stderr)
    proc = run_cli(["convert", str(log), "-o", str(tmp_path / "missing" / "x.pcapng")])
    assert proc.returncode == 1 and "does not exist" in one_line(proc.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log", "out"]
    assert list(folder.iterdir()) == []


def test_unwritable_default_folder(tmp_path: Path) -> None:
    """The default output sits beside the log, in a folder we may not write to
    (root without CAP_DAC_OVERRIDE, so that the folder's mode applies)."""
    prefix = without_dac_override()
    log = _copy(tmp_path)
    tmp_path.chmod(0o555)
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "swtpm_extcap", "convert", str(log)],
            capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60,
        )
    finally:
        tmp_path.chmod(0o755)
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert "permission denied" in line and str(tmp_path) in line
    assert [p.name for p in tmp_path.iterdir()] == ["a.log"]


def test_dev_full(tmp_path: Path) -> None:
    log = _copy(tmp_path)
    proc = run_cli(["convert", str(log), "-o", "/dev/full"])
    assert proc.returncode == 1
    assert one_line(proc.stderr) == "swtpm-extcap: cannot write /dev/full: No space left on device"


def test_full_disk_removes_the_partial_output(tmp_path: Path, small_disk: Path) -> None:
    log = _copy(tmp_path)  # its pcapng is far larger than 64 KiB
    out = small_disk / "a.pcapng"
    proc = run_cli(["convert", str(log), "-o", str(out)])
    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        f"swtpm-extcap: cannot write {out}: No space left on device; removed the partial {out}"
    )
    assert list(small_disk.iterdir()) == []
    assert log.read_bytes() == load_corpus_log(corpus_log_paths()[0]).data


@pytest.mark.parametrize("closed", ["stdout", "stdin"])
def test_closed_descriptors(tmp_path: Path, closed: str) -> None:
    """``convert LOG -o - >&-`` and ``convert - -o OUT <&-``: one line, nothing written."""
    log = _copy(tmp_path)
    out = tmp_path / "x.pcapng"
    args = [str(log), "-o", "-"] if closed == "stdout" else ["-", "-o", str(out)]
    fd = 1 if closed == "stdout" else 0
    proc = subprocess.run(
        [sys.executable, "-m", "swtpm_extcap", "convert", *args],
        stdin=subprocess.DEVNULL if fd == 1 else None, stdout=None if fd == 1 else subprocess.DEVNULL,
        stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60,
        preexec_fn=lambda: os.close(fd),
    )
    assert proc.returncode == 1
    assert f"{closed} is closed" in one_line(proc.stderr)
    assert not out.exists()
