"""``swtpm-extcap convert``: swtpm logs -> pcapng files (the file I/O edge)."""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from ..errors import UserError, printable, reason
from ..pcapng.clock import backlog_start_us, now_us
from ..pcapng.pipeline import Pipeline, Summary

CHUNK = 1 << 20
PROGRESS_MIN_BYTES = 16 << 20


@dataclass(frozen=True)
class ConvertSettings:
    logs: tuple[str, ...]
    output: str | None
    ctrl: bool = True
    start_time: float | None = None
    strict: bool = False
    #: "swtpm log line N: ..." on every frame: on, since a file may be opened in a
    #: Wireshark without the swtpm plugin (``--no-line-comments``: only notable ones)
    line_comments: bool = True


def default_output(log: str) -> str:
    """``/x/103-swtpm.log`` -> ``/x/103-swtpm.pcapng``; ``-`` (stdin) -> ``-`` (stdout)."""
    if log == "-":
        return "-"
    path = Path(log)
    return str(path.with_suffix(".pcapng") if path.suffix == ".log" else Path(log + ".pcapng"))


FileId = tuple[int, int]  # (st_dev, st_ino): the same file, whatever its name


def check_inputs(logs: Sequence[str]) -> dict[FileId, str]:
    """Fail before writing anything when an input cannot be read; returns the
    inputs that are files, by identity (to refuse writing over one)."""
    idents: dict[FileId, str] = {}
    for log in logs:
        if log == "-":
            continue
        try:
            with open(log, "rb") as fh:
                st = os.fstat(fh.fileno())
        except IsADirectoryError:
            raise UserError(f"{log} is a directory; give the swtpm log file inside it") from None
        except FileNotFoundError:
            raise UserError(f"{log}: no such file; check the path of the swtpm log") from None
        except PermissionError:
            raise UserError(
                f"{log}: permission denied; run as root or copy the log somewhere readable"
            ) from None
        except OSError as exc:
            raise UserError(f"{log}: cannot read: {reason(exc)}") from None
        idents.setdefault((st.st_dev, st.st_ino), log)
    return idents


def check_outputs(dests: Sequence[str], inputs: dict[FileId, str], stdout: BinaryIO | None) -> None:
    """Fail before writing anything when an output cannot be written or is an input.

    Files are compared by device and inode, so a symlink or a hard link to an
    input is refused like the input's own name."""
    for dest in dict.fromkeys(dests):
        if dest == "-":
            if stdout is None:
                raise UserError("stdout is closed; give -o FILE for the pcapng")
            st = _fstat(stdout)
        else:
            try:
                st = os.stat(dest)
            except FileNotFoundError:
                folder = os.path.dirname(os.path.abspath(dest))
                if not os.path.isdir(folder):
                    raise UserError(
                        f"cannot write {dest}: the folder {folder} does not exist; create it"
                        " or give -o a path in an existing folder"
                    ) from None
                continue
            except OSError as exc:
                raise UserError(f"cannot write {dest}: {reason(exc)}") from None
            if stat.S_ISDIR(st.st_mode):
                raise UserError(
                    f"{dest} is a folder; give -o a file name, e.g. {os.path.join(dest, 'out.pcapng')}"
                )
        if st is not None and (st.st_dev, st.st_ino) in inputs and stat.S_ISREG(st.st_mode):
            where = "stdout" if dest == "-" else dest
            raise UserError(
                f"refusing to write over the input {inputs[(st.st_dev, st.st_ino)]}:"
                f" {where} is the same file; give -o another file"
            )


def _fstat(stream: BinaryIO) -> os.stat_result | None:
    try:
        return os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # BytesIO and the like
        return None


def convert_stream(
    src: BinaryIO,
    out: BinaryIO,
    *,
    name: str,
    start_us: int,
    ctrl: bool = True,
    size: int = 0,
    progress: TextIO | None = None,
    line_comments: bool = True,
) -> Summary:
    """Convert one log stream into one pcapng section written to ``out``."""
    name = printable(name)  # a file name that is not UTF-8
    pipe = Pipeline(
        out,
        live=_is_stream(out),
        name=f"swtpm:{name}",
        description=f"swtpm log {name}",
        start_us=start_us,
        ctrl=ctrl,
        comment=f"converted from swtpm log {name}",
        line_comments=line_comments,
    )
    done = 0
    shown = 0.0
    began = time.monotonic()
    # read1: what a pipe has now, so `tail -F log | swtpm-extcap convert - -o -`
    # streams; on a file it reads CHUNK bytes all the same
    read = getattr(src, "read1", src.read)
    while chunk := _read(read, name):
        pipe.feed(chunk)
        if progress is not None:
            done += len(chunk)
            now = time.monotonic()
            if now - shown >= 0.2:
                shown = now
                _show_progress(progress, name, done, size, now - began)
    if progress is not None:
        progress.write("\r\033[K")
        progress.flush()
    return pipe.close()


def _read(read: Callable[[int], bytes], name: str) -> bytes:
    """The next chunk of the log; a failed read is a :class:`UserError` that names it."""
    try:
        return read(CHUNK)
    except OSError as exc:
        raise UserError(f"{name}: cannot read: {reason(exc)}") from None


def _is_stream(out: BinaryIO) -> bool:
    """A pipe, fifo or socket: flush after every batch so a reader sees frames at once."""
    try:
        mode = os.fstat(out.fileno()).st_mode
    except (OSError, ValueError, AttributeError):  # BytesIO and the like
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _show_progress(stream: TextIO, name: str, done: int, size: int, secs: float) -> None:
    frac = min(done / size, 1.0) if size else 0.0
    bar = "#" * int(frac * 30)
    rate = done / secs / 1e6 if secs > 0 else 0.0
    stream.write(
        f"\r{name} [{bar:<30}] {frac:4.0%} {done / 1e6:.0f}/{size / 1e6:.0f} MB {rate:.0f} MB/s"
    )
    stream.flush()


def run_convert(
    settings: ConvertSettings, stdin: BinaryIO | None, stdout: BinaryIO | None, stderr: TextIO
) -> int:
    """Convert every log; all checks come before the first byte is written.

    A failed write (a full disk, ``/dev/full``) is one :class:`UserError`; a
    regular output file it left cut short is removed first, so no pcapng that
    looks complete is left behind."""
    inputs = check_inputs(settings.logs)
    if "-" in settings.logs and stdin is None:
        raise UserError("stdin is closed; give the swtpm log as a file")
    shared = settings.output
    dests = [shared or default_output(log) for log in settings.logs]
    check_outputs(dests, inputs, stdout)
    if "-" in dests and stdout is not None and stdout.isatty():
        raise UserError("refusing to write pcapng to a terminal; use -o FILE or a pipe")
    defects = 0
    opened: dict[str, BinaryIO] = {}
    dest = ""
    try:
        for log, dest in zip(settings.logs, dests):
            if dest == "-":
                assert stdout is not None  # check_outputs
                out = stdout
            elif dest in opened:  # -o with several logs: one section each
                out = opened[dest]
            else:
                out = opened[dest] = _open_output(dest)
            summary = _convert_one(log, out, settings, stdin, stderr)
            out.flush()
            defects += summary.defect_count
            for line in summary.report(f"{log} -> {'stdout' if dest == '-' else dest}"):
                stderr.write(printable(line) + "\n")
            if dest != "-" and shared is None:
                opened.pop(dest).close()
        for out in opened.values():
            out.close()
        opened.clear()
    except BrokenPipeError:
        raise  # the reader of stdout went away: a clean stop
    except OSError as exc:  # reading is mapped in convert_stream: this is a write
        raise UserError(_write_failed(dest, exc, opened)) from None
    finally:
        for out in opened.values():
            _close_quietly(out)
    return 3 if settings.strict and defects else 0


def _open_output(dest: str) -> BinaryIO:
    try:
        return open(dest, "wb")
    except PermissionError:
        folder = os.path.dirname(os.path.abspath(dest))
        raise UserError(
            f"cannot write {dest}: permission denied; give -o a path in a folder you may"
            f" write to (not {folder})"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot write {dest}: {reason(exc)}") from None


def _write_failed(dest: str, exc: OSError, opened: dict[str, BinaryIO]) -> str:
    """The line for a write that failed; removes the partial file it leaves."""
    where = "stdout" if dest == "-" else dest
    message = f"cannot write {where}: {reason(exc)}"
    if dest in opened:
        _close_quietly(opened.pop(dest))
        try:
            if stat.S_ISREG(os.stat(dest).st_mode):
                os.unlink(dest)
                return f"{message}; removed the partial {dest}"
        except OSError:
            pass
    if dest == "-":
        return f"{message}; the pcapng on stdout is cut short"
    return message


def _close_quietly(out: BinaryIO) -> None:
    try:
        out.close()
    except OSError:
        pass


def _convert_one(
    log: str, out: BinaryIO, settings: ConvertSettings, stdin: BinaryIO | None, stderr: TextIO
) -> Summary:
    start = settings.start_time
    if log == "-":
        assert stdin is not None  # run_convert checked
        start_us = now_us() if start is None else int(start * 1e6)
        return convert_stream(
            stdin, out, name="stdin", start_us=start_us, ctrl=settings.ctrl,
            line_comments=settings.line_comments,
        )
    try:
        src = open(log, "rb")
    except OSError as exc:
        raise UserError(f"{log}: cannot read: {reason(exc)}") from None
    with src:
        st = os.fstat(src.fileno())
        start_us = backlog_start_us(st.st_mtime, st.st_size) if start is None else int(start * 1e6)
        progress = stderr if st.st_size >= PROGRESS_MIN_BYTES and stderr.isatty() else None
        return convert_stream(
            src,
            out,
            name=os.path.basename(log),
            start_us=start_us,
            ctrl=settings.ctrl,
            size=st.st_size,
            progress=progress,
            line_comments=settings.line_comments,
        )


def convert_main(settings: ConvertSettings) -> int:
    """The command's streams; a closed stdin or stdout is None (Python's own rule)."""
    stdin = sys.stdin.buffer if sys.stdin is not None else None
    stdout = sys.stdout.buffer if sys.stdout is not None else None
    if sys.stderr is None:  # closed: the summary goes nowhere
        with open(os.devnull, "w") as devnull:
            return run_convert(settings, stdin, stdout, devnull)
    return run_convert(settings, stdin, stdout, sys.stderr)
